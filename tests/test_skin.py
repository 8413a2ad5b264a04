"""The skin optical model behaves like skin: chromophores absorb where they should."""

import dataclasses

import numpy as np
import pytest

from simulators.skin import (
    LED_NM,
    Newborn,
    bilirubin_mua_per_mm,
    blood_mua_per_mm,
    melanin_mua_per_mm,
    random_newborn,
    skin_reflectance,
    with_bilirubin,
)

pytestmark = pytest.mark.unit

BABY = Newborn(bilirubin_mg_dl=5.0, melanin_fraction=0.05, blood_fraction=0.01, so2=0.75)


def test_bilirubin_darkens_blue_not_red():
    n0, f0 = skin_reflectance(with_bilirubin(BABY, 0.0))
    n1, f1 = skin_reflectance(with_bilirubin(BABY, 20.0))
    assert n1[0] < 0.8 * n0[0] and n1[1] < 0.8 * n0[1]
    assert n1[5] == pytest.approx(n0[5], rel=1e-3)
    assert f1[0] < f0[0]


def test_melanin_darkens_everything_most_in_blue():
    light, _ = skin_reflectance(BABY)
    dark, _ = skin_reflectance(dataclasses.replace(BABY, melanin_fraction=0.3))
    ratio = dark / light
    assert np.all(ratio < 1)
    assert ratio[0] < ratio[5]


def test_far_detector_gets_less_light_and_blanching_brightens_green():
    near, far = skin_reflectance(BABY)
    assert np.all(far < near)
    pressed, _ = skin_reflectance(dataclasses.replace(BABY, pressure_blanching=0.9))
    loose, _ = skin_reflectance(dataclasses.replace(BABY, pressure_blanching=0.0))
    assert pressed[3] > loose[3]


def test_absorption_spectra_have_their_known_shapes():
    wl = np.array(LED_NM, float)
    assert np.all(np.diff(melanin_mua_per_mm(wl)) < 0)
    bili = bilirubin_mua_per_mm(wl, 10.0)
    assert bili[1] > bili[2] > bili[3] and bili[5] == 0
    blood = blood_mua_per_mm(wl, 0.75, 0.5)
    assert blood[3] > blood[2] and blood[3] > 10 * blood[5]


def test_led_width_and_centre_change_the_reading():
    a, _ = skin_reflectance(BABY)
    b, _ = skin_reflectance(BABY, led_nm=np.array(LED_NM) + 4.0)
    c, _ = skin_reflectance(BABY, fwhm_nm=(30.0,) * 6)
    assert not np.allclose(a, b) and not np.allclose(a, c)


def test_random_population_is_in_range_and_validates():
    rng = np.random.default_rng(5)
    for group in ("light", "medium", "dark"):
        near, far = skin_reflectance(random_newborn(rng, group, 12.0))
        assert np.all((near > 0) & (near < 1.2)) and np.all((far > 0) & (far < 1.2))
    with pytest.raises(ValueError):
        random_newborn(rng, "purple")
    with pytest.raises(ValueError):
        skin_reflectance(BABY, led_nm=(450, 470), fwhm_nm=(20.0,))


@pytest.mark.parametrize("group", ["light", "medium", "dark"])
def test_simulated_babies_get_unflagged_estimates_with_small_bias(group):
    """The fitted simulator looks like the calibration population to the shipped estimator."""
    from dsp.tcb import estimate_tcb

    rng = np.random.default_rng(21)
    errors, flagged = [], 0
    for _ in range(60):
        bili = float(rng.uniform(0.0, 20.0))
        est = estimate_tcb(*skin_reflectance(random_newborn(rng, group, bili)))
        if est.tcb_mg_dl is None:
            flagged += 1
        else:
            errors.append(est.tcb_mg_dl - bili)
    assert flagged <= (3 if group != "dark" else 9)
    assert abs(np.mean(errors)) < 1.0
    assert np.std(errors) < 2.5


def test_vessel_packaging_flattens_strong_bands_only():
    from simulators.skin import vessel_packaging

    wl = np.array(LED_NM, float)
    mua = blood_mua_per_mm(wl, 0.8, 0.55)
    c = vessel_packaging(mua, 0.015)
    assert np.all((c > 0) & (c <= 1))
    assert c[3] < c[5]  # 550 nm (strong haemoglobin band) flattened more than 650 nm
    assert c[5] > 0.95
    assert vessel_packaging(np.array([0.0]), 0.015)[0] == 1.0
    more_blood, _ = skin_reflectance(dataclasses.replace(BABY, vessel_radius_mm=0.001))
    packed, _ = skin_reflectance(dataclasses.replace(BABY, vessel_radius_mm=0.03))
    assert packed[3] > more_blood[3]  # packaged blood absorbs less green


def test_population_blood_terms_span_physiological_ranges():
    from simulators.skin import POPULATION

    lo, hi = POPULATION.blood_fraction
    assert 0.002 <= lo < hi <= 0.07  # Jacques 2013: dermis 0.2-7 %
    lo, hi = POPULATION.haematocrit
    assert 0.42 <= lo < hi <= 0.65  # Jopling et al. 2009, newborns >= 35 weeks
    lo, hi = POPULATION.so2
    assert 0.5 <= lo < hi <= 0.97
    lo, hi = POPULATION.pressure_blanching
    assert 0.5 <= lo < hi < 1.0
    lo, hi = POPULATION.vessel_radius_mm
    assert 0.0025 <= lo < hi <= 0.03
