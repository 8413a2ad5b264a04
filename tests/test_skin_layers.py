"""The second, independently built skin model: its transport reduces to the known solutions,
and its skin behaves like skin."""

from __future__ import annotations

import numpy as np
import pytest

from dsp.tissue_optics import DETECTOR_DISTANCE_MM
from simulators import skin_layers as s2

pytestmark = pytest.mark.unit


def _dipole(mua: float, musp: float, rho: float) -> float:
    """Fluence and flux of the extrapolated-boundary dipole, combined as the model does."""
    mut = mua + musp
    d = 1.0 / (3.0 * mut)
    z0, zb = 1.0 / mut, 2.0 * s2._A * d
    mu = np.sqrt(mua / d)
    r1, r2 = np.hypot(z0, rho), np.hypot(z0 + 2 * zb, rho)
    fluence = (np.exp(-mu * r1) / r1 - np.exp(-mu * r2) / r2) / (4 * np.pi * d)
    flux = (z0 * (mu + 1 / r1) * np.exp(-mu * r1) / r1**2
            + (z0 + 2 * zb) * (mu + 1 / r2) * np.exp(-mu * r2) / r2**2) / (4 * np.pi)  # fmt: skip
    return float(s2._C1 * fluence + s2._C2 * flux)


@pytest.mark.parametrize("mua,musp", [(0.002, 2.0), (0.05, 1.0), (0.5, 3.0), (2.0, 2.0)])
def test_two_equal_layers_are_the_half_space(mua, musp):
    r = s2.two_layer_reflectance(*(np.array([x]) for x in (mua, musp, 0.08, mua, musp)))
    want = [_dipole(mua, musp, rho) for rho in DETECTOR_DISTANCE_MM]
    assert np.allclose(r[:, 0], want, rtol=1e-9)


def test_a_thick_top_layer_is_all_the_light_sees():
    r = s2.two_layer_reflectance(*(np.array([x]) for x in (0.05, 2.0, 20.0, 1.0, 1.0)))
    want = [_dipole(0.05, 2.0, rho) for rho in DETECTOR_DISTANCE_MM]
    assert np.allclose(r[:, 0], want, rtol=1e-3)


def test_quadrature_has_converged_where_the_far_detector_sees_little():
    """Strongly absorbing epidermis over dermis: halving Ogata's step changes nothing."""
    args = [np.array([x]) for x in (15.0, 6.0, 0.07, 0.3, 3.0)]
    coarse = s2.two_layer_reflectance(*args)
    x, xw = s2._X, s2._XW
    try:
        s2._X, s2._XW = s2._ogata_nodes(s2._OGATA_H / 2, s2._OGATA_N * 2)
        fine = s2.two_layer_reflectance(*args)
    finally:
        s2._X, s2._XW = x, xw
    assert np.allclose(coarse, fine, rtol=1e-5)


def test_skin_behaves_like_skin():
    rng = np.random.default_rng(1)
    u = rng.random((1, len(s2.DRAW_ORDER)))
    base = s2.population_params(u, "medium", np.array([0.0]))
    yellow = dict(base, bilirubin_mg_dl=np.array([20.0]))
    dark = dict(base, melanin_fraction=base["melanin_fraction"] * 3)
    n0, f0 = s2.population_reflectance(base)
    n1, f1 = s2.population_reflectance(yellow)
    n2, _ = s2.population_reflectance(dark)
    assert n1[0, 0] < 0.8 * n0[0, 0] and abs(n1[0, 5] / n0[0, 5] - 1) < 0.01  # blue, not red
    assert f1[0, 0] / f0[0, 0] < n1[0, 0] / n0[0, 0]  # the far path sees more bilirubin
    assert np.all(n2 < n0) and n2[0, 0] / n0[0, 0] < n2[0, 5] / n0[0, 5]  # melanin: most in blue
    assert np.all(f0 < n0)


def test_cylinder_packaging_flattens_strong_bands_only():
    # blood's mu_a: ~0.1 /mm in the red, ~30 /mm at 540-576 nm, ~300 /mm at 420 nm
    c = s2.cylinder_packaging(np.array([0.1, 30.0, 300.0]), 0.015)
    assert c[0] > 0.99 and c[2] < 0.25 and c[0] > c[1] > c[2]
