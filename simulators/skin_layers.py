"""A second newborn-skin optics model, built independently of simulators/skin.py.

Its purpose is to test what is fitted or calibrated on the first model (the TcB estimator, the
per-unit LED correction) against skin that the first model did not generate. Where the first
model makes one choice, this one makes another that is also published:

| | simulators/skin.py | this model |
|---|---|---|
| light transport | semi-infinite dermis, Farrell et al. 1992 dipole, fluence-based reflectance | two scattering layers (epidermis over dermis), the two-layer diffusion solution of Kienle et al., Appl Opt 1998;37:779-791, by Hankel transform; reflectance from fluence and flux (Kienle & Patterson, JOSA A 1997;14:246-254) |
| epidermis | a non-scattering filter crossed twice, fitted path factors | a scattering layer whose melanin the light meets as often as diffusion says |
| melanin | 6.6e11 lambda^-3.33 /cm (Jacques 2013) | 1.70e12 lambda^-3.48 /cm (Jacques & McAuliffe, Photochem Photobiol 1991;53:769-775) |
| scattering | mu_s' = a (lambda/500)^-b, b fitted | Mie + Rayleigh: a' (f_Ray (lambda/500)^-4 + (1 - f_Ray)(lambda/500)^-b_Mie), f_Ray 0.409, b_Mie 0.562 (Jacques 2013, Table 2, skin) |
| blood in vessels | van Veen 2002 packaging formula | mean transmission of straight chords through a cylinder (the exact chord average that van Veen's formula approximates) |
| bilirubin band | a 10 nm table after Agati & Fusi 1990 | a two-sided Gaussian band through the albumin-bound maximum (460 nm, Agati & Fusi, J Photochem Photobiol B 1990;7:1-13), half-widths 38 nm (blue side) and 27 nm (red side): an approximation of the published band, not a transcription |
| blood pressed out by the probe | a fraction of the resting blood | the blood left under the probe drawn directly |

Shared with the first model, because there is one standard source: haemoglobin's molar
extinction (Prahl, omlc.org, after Gratzer and Kollias) and the bloodless-skin baseline
absorption (Jacques 1998/2013). The population ranges (POPULATION) and probe couplings (PROBE)
are fitted to the calibration population's summary statistics by scripts/fit_skin_layers.py, as
the first model's are, inside the bounds written there.

Reflectance is relative to the factory white phantom (a homogeneous diffuser, mu_a 0.002 /mm,
mu_s' 2.0 /mm, flat), computed by the same transport, so 1.0 means "as bright as the
reference".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import j0, j1, jn_zeros, ndtri, y0

from dsp.tissue_optics import (
    DETECTOR_DISTANCE_MM,
    HB_MOLAR_MASS_G_PER_MOL,
    MCHC_G_PER_L,
    NOMINAL_FWHM_NM,
    NOMINAL_LED_NM,
    WAVELENGTH_GRID_NM,
    baseline_mua_per_mm,
    hb_extinction,
    led_band_weights,
)
from simulators.skin import SKIN_GROUPS

Floats = NDArray[np.float64]

TISSUE_REFRACTIVE_INDEX = 1.4
# Kienle & Patterson 1997 (JOSA A 14:246), Table 1 for n = 1.4 against air: reflectance =
# C1 * fluence + C2 * flux at the surface (partial-current boundary).
_C1 = 0.118
_C2 = 0.306
# Extrapolated boundary z_b = 2 A D with A from Groenhuis et al. (Appl Opt 1983) for n = 1.4,
# as in Kienle & Patterson 1997.
_R_ID = (
    -1.440 / TISSUE_REFRACTIVE_INDEX**2 + 0.710 / TISSUE_REFRACTIVE_INDEX + 0.668
    + 0.0636 * TISSUE_REFRACTIVE_INDEX
)  # fmt: skip
_A = (1.0 + _R_ID) / (1.0 - _R_ID)

# Melanin: Jacques & McAuliffe 1991, mu_a of the melanosome interior, /cm -> /mm.
_MEL_COEF_PER_CM = 1.70e12
_MEL_POWER = 3.48
# Scattering (Jacques 2013, Phys Med Biol 58:R37, Table 2, "skin"): a' = 46.0 /cm at 500 nm.
SKIN_A_PRIME_PER_MM = 4.60
F_RAYLEIGH = 0.409
B_MIE = 0.562
# Albumin-bound bilirubin: peak 460 nm (Agati & Fusi 1990), molar extinction at the peak
# ~4.7e4 /cm/M (the value simulators/skin.py also uses; Prahl's 5.5e4 in chloroform at 453 nm).
BILI_PEAK_NM = 460.0
BILI_PEAK_EPSILON = 4.7e4
BILI_HALF_WIDTH_BLUE_NM = 38.0
BILI_HALF_WIDTH_RED_NM = 27.0
BILI_MOLAR_MASS_G_PER_MOL = 584.66

PHANTOM_MUA_PER_MM = 0.002
PHANTOM_MUSP_PER_MM = 2.0

# Hankel transform by Ogata's quadrature (H. Ogata, Publ RIMS Kyoto Univ 2005;41:949-970):
# nodes near the zeros of J0 after a double-exponential change of variable, so the oscillating
# tail of the integral converges quickly. int_0^inf f(s) J0(s rho) s ds ~= sum w_k f(x_k/rho)
# x_k / rho^2.
_OGATA_H = 0.02
_OGATA_N = 500


def _ogata_nodes(h: float, n: int) -> tuple[Floats, Floats]:
    xi = jn_zeros(0, n) / np.pi
    t = h * xi
    y = np.minimum(np.pi * np.sinh(t), 700.0)
    psi = t * np.tanh(y / 2.0)
    dpsi = np.tanh(y / 2.0) + np.pi * t * np.cosh(t) / (1.0 + np.cosh(y))
    x = np.pi * psi / h
    w = np.pi * y0(np.pi * xi) / j1(np.pi * xi) * j0(x) * dpsi
    return x, w * x


_X, _XW = _ogata_nodes(_OGATA_H, _OGATA_N)


def melanin_mua_per_mm(wavelength_nm: Floats) -> Floats:
    return _MEL_COEF_PER_CM * np.asarray(wavelength_nm, float) ** -_MEL_POWER / 10.0


def bilirubin_mua_per_mm(wavelength_nm: Floats, bilirubin_mg_dl: Floats | float) -> Floats:
    wl = np.asarray(wavelength_nm, float)
    half = np.where(wl < BILI_PEAK_NM, BILI_HALF_WIDTH_BLUE_NM, BILI_HALF_WIDTH_RED_NM)
    sigma = half / np.sqrt(2.0 * np.log(2.0))
    rel = np.exp(-0.5 * ((wl - BILI_PEAK_NM) / sigma) ** 2)
    molar = np.asarray(bilirubin_mg_dl, float) * 0.01 / BILI_MOLAR_MASS_G_PER_MOL
    return 2.303 * BILI_PEAK_EPSILON * rel * molar / 10.0


def scattering_musp_per_mm(wavelength_nm: Floats, scale: Floats | float) -> Floats:
    x = np.asarray(wavelength_nm, float) / 500.0
    return scale * SKIN_A_PRIME_PER_MM * (F_RAYLEIGH * x**-4 + (1.0 - F_RAYLEIGH) * x**-B_MIE)


_CHORD_Y = (np.arange(64) + 0.5) / 64.0  # midpoints for the chord average


def cylinder_packaging(mua_blood_per_mm: Floats, radius_mm: Floats | float) -> Floats:
    """Fraction of its homogeneous absorption that blood in cylinders of radius R absorbs.

    A ray crossing a cylinder at offset y R has chord L = 2 R sqrt(1 - y^2) (y uniform on
    0..1, mean chord pi R / 2); the vessel absorbs 1 - <exp(-mu L)> where homogeneous blood of
    the same volume would absorb mu <L> (to first order): C = (1 - <exp(-mu L)>) / (mu <L>).
    """
    mu, r = np.broadcast_arrays(np.asarray(mua_blood_per_mm, float), np.asarray(radius_mm, float))
    chord = 2.0 * r[..., None] * np.sqrt(1.0 - _CHORD_Y**2)
    absorbed = 1.0 - np.exp(-mu[..., None] * chord).mean(axis=-1)
    x = mu * chord.mean(axis=-1)  # the quadrature's own mean chord (pi R / 2 to 1e-4)
    return np.where(x > 1e-9, absorbed / np.where(x > 1e-9, x, 1.0), 1.0)


def two_layer_reflectance(
    mua1: Floats, musp1: Floats, thickness_mm: Floats, mua2: Floats, musp2: Floats
) -> Floats:
    """Spatially resolved reflectance at DETECTOR_DISTANCE_MM of a layer over a half-space.

    Arrays broadcast together (any shape); returns shape (2, *shape). Steady-state diffusion
    with a point source at one transport mean free path (1/mu_t' of the top layer), extrapolated
    boundary, fluence and flux continuous at the interface (matched refractive index); the
    Hankel transform's kernel for a source below or above the interface is solved in closed form
    and integrated numerically.
    """
    mua1, musp1, thick, mua2, musp2 = np.broadcast_arrays(mua1, musp1, thickness_mm, mua2, musp2)
    shape = mua1.shape
    d1 = 1.0 / (3.0 * (mua1 + musp1))
    d2 = 1.0 / (3.0 * (mua2 + musp2))
    z0 = 1.0 / (mua1 + musp1)
    zb = 2.0 * _A * d1
    flat = [np.ravel(a) for a in (mua1, d1, thick, mua2, d2, z0, zb)]
    res = np.concatenate(
        [
            _two_layer_rows(*(a[i : i + _CHUNK] for a in flat))
            for i in range(0, flat[0].size, _CHUNK)
        ],
        axis=1,
    )
    return res.reshape((2, *shape))


_CHUNK = 1024  # rows per block: a block's arrays are rows x Ogata nodes


def _two_layer_rows(
    m1: Floats, D1: Floats, L: Floats, m2: Floats, D2: Floats, Z0: Floats, ZB: Floats
) -> Floats:
    """two_layer_reflectance for 1-D rows of parameters (D: diffusion coefficients, Z0: source
    depth, ZB: extrapolation length): shape (2, rows)."""
    res = np.empty((2, m1.size))
    m1, D1, L, m2, D2, Z0, ZB = (a[:, None] for a in (m1, D1, L, m2, D2, Z0, ZB))
    # every term of the kernel decays at least as exp(-s z0): nodes beyond s z0 = 46 add
    # less than 1e-20 of the first ones
    z0_min = float(Z0.min())
    for k, rho in enumerate(DETECTOR_DISTANCE_MM):
        keep = _X / rho * z0_min < 46.0
        x, xw = _X[keep], _XW[keep]
        s2 = (x[None, :] / rho) ** 2
        a1 = np.sqrt(s2 + m1 / D1)
        a2 = np.sqrt(s2 + m2 / D2)
        # phi_hat(s, z) in the top layer is K sinh(a1 (z + zb)); K depends on whether the
        # source lies below or above the interface (docs/jaundice.md, "Second skin model").
        # Hyperbolic functions are written with their growing exponential factored out, so
        # every exponent below is <= 0.
        e_zb = np.exp(-2.0 * a1 * ZB)
        e_l = np.exp(-2.0 * a1 * (L + ZB))
        den = D2 * a2 * (1.0 - e_l) + D1 * a1 * (1.0 + e_l)
        below = Z0 >= L
        e_g = np.exp(-2.0 * a1 * np.abs(L - Z0))
        up = D1 * a1 * (1.0 + e_g) + D2 * a2 * (1.0 - e_g)
        # source below: exp(-a2 (z0 - l) - a1 l) / den; above: exp(-a1 z0) up / (2 D1 a1 den)
        kern = np.where(
            below,
            np.exp(-a2 * np.where(below, Z0 - L, 0.0) - a1 * L) / den,
            np.exp(-a1 * Z0) * up / (2.0 * D1 * a1 * den),
        )
        fluence = kern * (1.0 - e_zb)
        flux = D1 * a1 * kern * (1.0 + e_zb)
        # minus the same source in a half-space of the lower layer, whose transform is known
        # in closed form (added back below): the sum then carries only the difference
        e_s = np.exp(-a2 * Z0)
        e_i = np.exp(-a2 * (Z0 + 2.0 * ZB))
        fluence -= (e_s - e_i) / (2.0 * D2 * a2)
        flux -= 0.5 * (e_s + e_i)
        res[k] = ((_C1 * fluence + _C2 * flux) @ xw) / (2.0 * np.pi * rho**2)
    m2, D2, Z0, ZB = (a[:, 0] for a in (m2, D2, Z0, ZB))
    for k, rho in enumerate(DETECTOR_DISTANCE_MM):
        mu = np.sqrt(m2 / D2)
        r1 = np.sqrt(Z0**2 + rho**2)
        r2 = np.sqrt((Z0 + 2.0 * ZB) ** 2 + rho**2)
        fluence_h = (np.exp(-mu * r1) / r1 - np.exp(-mu * r2) / r2) / (4.0 * np.pi * D2)
        flux_h = (
            Z0 * (mu + 1.0 / r1) * np.exp(-mu * r1) / r1**2
            + (Z0 + 2.0 * ZB) * (mu + 1.0 / r2) * np.exp(-mu * r2) / r2**2
        ) / (4.0 * np.pi)
        res[k] += _C1 * fluence_h + _C2 * flux_h
    return res


@dataclass(frozen=True)
class Population:
    """Ranges of the population (uniform lo..hi; tissue_serum_ratio: mean, SD)."""

    melanin: dict[str, tuple[float, float]]
    epidermis_mm: tuple[float, float]
    blood_fraction: tuple[float, float]  # left under the pressed probe
    so2: tuple[float, float]
    haematocrit: tuple[float, float]
    vessel_radius_mm: tuple[float, float]
    scatter_scale: tuple[float, float]  # multiplies SKIN_A_PRIME_PER_MM (dermis)
    tissue_serum_ratio: tuple[float, float]
    epidermis_scatter_factor: float = 1.5  # epidermal mu_s' / dermal (keratinocytes scatter more)


@dataclass(frozen=True)
class Probe:
    """Skin/phantom collection ratio at each detector (contact, index matching)."""

    coupling_near: float = 1.0
    coupling_far: float = 1.0


DRAW_ORDER = (
    "melanin_fraction",
    "epidermis_mm",
    "blood_fraction",
    "so2",
    "haematocrit",
    "vessel_radius_mm",
    "scatter_scale",
    "tissue_serum_ratio",
)

# Bounds of the search in scripts/fit_skin_layers.py, with sources:
# * epidermis 0.03-0.12 mm: full-term newborn epidermis is thinner than the adult's (Evans &
#   Rutter, Biol Neonate 1986;49:74-80: term epidermis close to adult, preterm much thinner);
#   adult forehead epidermis ~0.05-0.1 mm (Meglinski & Matcher 2002).
# * blood left under the pressed probe 0.01-0.5 %: resting dermal blood 0.3-4 % (Jacques 2013;
#   Meglinski & Matcher 2002) less the most part the probe's pressure squeezes out (see
#   simulators/skin.py beside POPULATION).
# * so2 0.5-0.97, haematocrit 0.42-0.65 (Jopling et al., Pediatrics 2009), vessel radius
#   2.5-30 um (Braverman 2000): as in simulators/skin.py.
# * scatter_scale 0.3-1.5 of the adult skin average (neonatal dermis has less mature collagen).
POPULATION = Population(
    melanin={"light": (0.0292, 0.0428), "medium": (0.0668, 0.0838), "dark": (0.1581, 0.1626)},
    epidermis_mm=(0.0300, 0.0924),
    blood_fraction=(0.00010, 0.00200),
    so2=(0.750, 0.950),
    haematocrit=(0.45, 0.62),
    vessel_radius_mm=(0.0080, 0.0200),
    scatter_scale=(0.356, 0.801),
    tissue_serum_ratio=(0.2328, 0.0052),
)
PROBE = Probe(coupling_near=0.8366, coupling_far=1.6903)


def population_params(
    u: Floats, skin_group: str, bilirubin_mg_dl: Floats, population: Population | None = None
) -> dict[str, Floats]:
    """Per-baby fields from uniform draws u (n, len(DRAW_ORDER))."""
    population = POPULATION if population is None else population
    if skin_group not in population.melanin:
        raise ValueError(f"skin_group must be one of {SKIN_GROUPS}, got {skin_group!r}")
    u = np.atleast_2d(np.asarray(u, float))
    out: dict[str, Floats] = {"bilirubin_mg_dl": np.asarray(bilirubin_mg_dl, float)}
    for j, name in enumerate(DRAW_ORDER):
        if name == "tissue_serum_ratio":
            mean, sd = population.tissue_serum_ratio
            out[name] = mean + sd * ndtri(np.clip(u[:, j], 1e-6, 1 - 1e-6))
            continue
        lo, hi = (
            population.melanin[skin_group]
            if name == "melanin_fraction"
            else getattr(population, name)
        )
        out[name] = lo + (hi - lo) * u[:, j]
    return out


def _phantom(wl: Floats) -> Floats:
    flat = np.ones_like(wl)
    return two_layer_reflectance(
        PHANTOM_MUA_PER_MM * flat, PHANTOM_MUSP_PER_MM * flat, 0.1 * flat,
        PHANTOM_MUA_PER_MM * flat, PHANTOM_MUSP_PER_MM * flat,
    )  # fmt: skip


def spectra(
    p: dict[str, Floats],
    wl: Floats = WAVELENGTH_GRID_NM,
    population: Population | None = None,
    probe: Probe | None = None,
) -> tuple[Floats, Floats]:
    """(near, far) spectral reflectance relative to the phantom, each (n babies, n wl)."""
    population = POPULATION if population is None else population
    probe = PROBE if probe is None else probe
    col = {k: np.asarray(v, float).reshape(-1, 1) for k, v in p.items()}
    w = wl[None, :]
    base = baseline_mua_per_mm(wl)[None, :]
    f_mel = col["melanin_fraction"]
    mua1 = f_mel * melanin_mua_per_mm(w) + (1.0 - f_mel) * base
    hbo2, hb = hb_extinction(wl)
    so2 = col["so2"]
    eps = so2 * hbo2[None, :] + (1.0 - so2) * hb[None, :]
    hct = col["haematocrit"]
    mua_blood = 2.303 * eps * hct * MCHC_G_PER_L / HB_MOLAR_MASS_G_PER_MOL / 10.0
    blood = col["blood_fraction"]
    packed = cylinder_packaging(mua_blood, col["vessel_radius_mm"])
    serum = col["bilirubin_mg_dl"]
    bili = serum * col["tissue_serum_ratio"] + blood * (1.0 - hct) * serum
    mua2 = blood * packed * mua_blood + (1.0 - blood) * base + bilirubin_mua_per_mm(w, bili)
    musp2 = scattering_musp_per_mm(w, col["scatter_scale"])
    musp1 = population.epidermis_scatter_factor * musp2
    r = two_layer_reflectance(mua1, musp1, col["epidermis_mm"], mua2, musp2)
    ref = _phantom(wl)
    return (
        probe.coupling_near * r[0] / ref[0][None, :],
        probe.coupling_far * r[1] / ref[1][None, :],
    )


def population_reflectance(
    p: dict[str, Floats],
    led_nm: tuple[float, ...] | Floats = NOMINAL_LED_NM,
    fwhm_nm: tuple[float, ...] | Floats = NOMINAL_FWHM_NM,
    population: Population | None = None,
    probe: Probe | None = None,
) -> tuple[Floats, Floats]:
    """(near, far), each (n babies, n LEDs): LED-band weighted reflectance."""
    weights = led_band_weights(led_nm, fwhm_nm)
    near, far = spectra(p, WAVELENGTH_GRID_NM, population, probe)
    return near @ weights.T, far @ weights.T
