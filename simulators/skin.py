"""Newborn skin optics: reflectance at the jaundice meter's two detectors for each LED.

Model. Two layers. The epidermis (thickness d_epi, melanin volume fraction f_mel) acts as a
thin absorbing filter crossed on the way in and on the way out. The dermis is a semi-infinite
turbid medium holding blood (volume fraction, haematocrit, oxygen saturation) and
extravascular bilirubin; its spatially resolved diffuse reflectance R(rho) at source-detector
distance rho comes from the diffusion-theory dipole solution (Farrell, Patterson, Wilson, Med
Phys 1992;19:879-888). Each LED is a Gaussian emission line with a real FWHM; the measured
value is the emission-weighted reflectance divided by the same quantity on the reference
phantom, so 1.0 means "as bright as the reference", as in the calibration file.

The optical constants, the chromophore spectra, the diffusion-theory reflectance and the
two-layer skin are in dsp/tissue_optics.py (cited there), which the TcB unit correction shares;
this module draws newborns from them.

The population ranges (POPULATION) and the probe constants (PROBE) are fitted to the summary
statistics of the calibration population by scripts/fit_skin_model.py (docs/jaundice.md); the
blood ranges only within the physiological bounds cited beside POPULATION.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from dsp.tissue_optics import (  # noqa: F401  (re-exported: the simulator's public names)
    BILI_MOLAR_MASS_G_PER_MOL,
    BILI_PEAK_EPSILON,
    DETECTOR_DISTANCE_MM,
    HB_MOLAR_MASS_G_PER_MOL,
    MCHC_G_PER_L,
    NOMINAL_FWHM_NM,
    NOMINAL_LED_NM,
    SKIN_FIELDS,
    TISSUE_REFRACTIVE_INDEX,
    WAVELENGTH_GRID_NM,
    ProbeOptics,
    baseline_mua_per_mm,
    bilirubin_mua_per_mm,
    blood_mua_per_mm,
    diffuse_reflectance,
    hb_extinction,
    led_band_weights,
    melanin_mua_per_mm,
    skin_spectra,
    vessel_packaging,
)

LED_NM = tuple(int(x) for x in NOMINAL_LED_NM)
DEFAULT_LED_FWHM_NM = NOMINAL_FWHM_NM
SKIN_GROUPS = ("light", "medium", "dark")


@dataclass(frozen=True)
class Newborn:
    """Optical state of one newborn's skin under the probe.

    bilirubin_mg_dl: serum bilirubin; tissue_serum_ratio scales it to the dermal
    extravascular concentration (skin/serum equilibrium varies baby to baby).
    melanin_fraction: melanosome volume fraction of the epidermis (0.01 light - 0.4 dark).
    blood_fraction: dermal blood volume fraction before probe pressure.
    so2: oxygen saturation of dermal blood (mixed arterial/venous).
    haematocrit: volume fraction of red cells (newborns 0.42-0.65).
    pressure_blanching: fraction of the dermal blood the probe's pressure squeezes out (0-1).
    vessel_radius_mm: mean radius of the dermal vessels holding the blood (packaging).
    """

    bilirubin_mg_dl: float
    melanin_fraction: float
    blood_fraction: float
    so2: float
    haematocrit: float = 0.52
    pressure_blanching: float = 0.4
    epidermis_mm: float = 0.06
    scatter_a_per_mm: float = 4.6
    scatter_b: float = 1.42
    tissue_serum_ratio: float = 0.12
    vessel_radius_mm: float = 0.01


def population_reflectance(
    p: dict[str, np.ndarray],
    led_nm: tuple[float, ...] | np.ndarray = LED_NM,
    fwhm_nm: tuple[float, ...] | np.ndarray = DEFAULT_LED_FWHM_NM,
    optics: ProbeOptics | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(near, far), each (n babies, n LEDs), for babies given as arrays of Newborn fields."""
    weights = led_band_weights(led_nm, fwhm_nm)
    near_s, far_s = skin_spectra(p, WAVELENGTH_GRID_NM, PROBE if optics is None else optics)
    return near_s @ weights.T, far_s @ weights.T


def skin_reflectance(
    newborn: Newborn,
    led_nm: tuple[float, ...] | np.ndarray = LED_NM,
    fwhm_nm: tuple[float, ...] | np.ndarray = DEFAULT_LED_FWHM_NM,
) -> tuple[np.ndarray, np.ndarray]:
    """(near[6], far[6]) reflectance relative to the reference phantom, LED-band weighted.

    Pass a device's true (drifted) LED centres and widths to see what that unit measures.
    """
    p = {k: np.array([v], float) for k, v in asdict(newborn).items()}
    near, far = population_reflectance(p, led_nm, fwhm_nm)
    return near[0], far[0]


@dataclass(frozen=True)
class Population:
    """Ranges of the newborn population (uniform between lo and hi unless stated).

    Fitted to the calibration population by scripts/fit_skin_model.py (see docs/jaundice.md).
    """

    melanin: dict[str, tuple[float, float]]
    blood_fraction: tuple[float, float]
    so2: tuple[float, float]
    haematocrit: tuple[float, float]
    pressure_blanching: tuple[float, float]
    epidermis_mm: tuple[float, float]
    scatter_a_per_mm: tuple[float, float]
    scatter_b: tuple[float, float]
    tissue_serum_ratio: tuple[float, float]  # mean, SD (normal)
    vessel_radius_mm: tuple[float, float] = (0.005, 0.02)


# Order of the uniform draws that make one baby (see population_params).
DRAW_ORDER = tuple(f for f in SKIN_FIELDS if f != "bilirubin_mg_dl")  # bilirubin is given

# Blood under the probe: physiological ranges and their sources. scripts/fit_skin_model.py fits
# each range only inside these bounds, with its lower end at or below and its upper end at or
# above a middle value, so every range keeps a spread.
# * blood_fraction (dermal blood volume fraction before pressure): 0.3-4 %. Jacques 2013 (Phys
#   Med Biol 58:R37, skin section) gives 0.2-7 % for dermis; Meglinski & Matcher 2002 (Physiol
#   Meas 23:741) 4 % papillary / 2-4 % reticular dermis in adults. Neonatal values: not found.
# * haematocrit: 0.42-0.65, the 5th-95th centile range in the first days of life at >= 35
#   weeks (Jopling J, Henry E, Wiedmeier SE, Christensen RD. Pediatrics 2009;123:e333-e337).
# * so2 (mixed capillary/venous dermal blood): 0.5-0.97, between venous (~0.7) and arterial
#   (0.95-1.0 in healthy term newborns after transition). Skin-blood SO2 of newborns under a
#   pressed probe: not found; adult diffuse-reflectance fits fall in this range.
# * pressure_blanching (fraction of the blood pressed out): 0.5-0.995. Pressing blanches skin
#   (the clinical blanch test and the capillary refill test rely on it; pressure-triggered TcB
#   meters are pressed for this reason), and adult probe-pressure studies show blood volume
#   falling steeply with contact pressure (Reif et al., J Biomed Opt 2008;13:010502; Ti & Lin,
#   Opt Express 2008;16:4250). Neonatal forehead/sternum data: not found. The calibration
#   spectra show almost no haemoglobin bands at 550/590 nm, and the fit puts 95-97 % here.
# * vessel_radius_mm (packaging, see vessel_packaging): 2.5-30 um, the capillary loops and
#   the subpapillary venules (Braverman, J Investig Dermatol Symp Proc 2000;5:3-9); adult
#   diffuse-reflectance fits give 5-50 um (van Veen et al. 2002).
# The other ranges (melanin, epidermis, scattering, tissue/serum ratio) are effective values
# of this model fitted to the calibration population (docs/jaundice.md).
POPULATION = Population(
    melanin={"light": (0.0034, 0.0223), "medium": (0.0172, 0.0664), "dark": (0.0362, 0.1512)},
    blood_fraction=(0.0094, 0.0147),
    so2=(0.775, 0.956),
    haematocrit=(0.43, 0.64),
    pressure_blanching=(0.95, 0.97),
    epidermis_mm=(0.0910, 0.0910),
    scatter_a_per_mm=(1.616, 5.068),
    scatter_b=(0.800, 0.800),
    tissue_serum_ratio=(0.2087, 0.0050),
    vessel_radius_mm=(0.0089, 0.0206),
)
PROBE = ProbeOptics(
    epi_path_near=3.537,
    epi_path_far=3.490,
    coupling_near=0.8339,
    coupling_far=0.7774,
    bili_epsilon_scale=1.000,
    bili_band_shift_nm=-5.17,
)


def population_params(
    u: np.ndarray,
    skin_group: str,
    bilirubin_mg_dl: np.ndarray,
    population: Population | None = None,
) -> dict[str, np.ndarray]:
    """Newborn fields as arrays from uniform draws u (n, len(DRAW_ORDER)) in [0, 1)."""
    from scipy.special import ndtri

    population = POPULATION if population is None else population
    u = np.atleast_2d(np.asarray(u, float))
    out: dict[str, np.ndarray] = {"bilirubin_mg_dl": np.asarray(bilirubin_mg_dl, float)}
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


def random_newborn(
    rng: np.random.Generator,
    skin_group: str | None = None,
    bilirubin_mg_dl: float | None = None,
) -> Newborn:
    """One plausible newborn; skin_group None draws light/medium/dark with equal odds."""
    if skin_group is None:
        skin_group = SKIN_GROUPS[int(rng.integers(0, 3))]
    if skin_group not in POPULATION.melanin:
        raise ValueError(f"skin_group must be one of {SKIN_GROUPS}, got {skin_group!r}")
    if bilirubin_mg_dl is None:
        bilirubin_mg_dl = float(rng.uniform(0.0, 25.0))
    if not 0.0 <= bilirubin_mg_dl <= 40.0:
        raise ValueError("bilirubin_mg_dl must be between 0 and 40")
    p = population_params(rng.random((1, len(DRAW_ORDER))), skin_group, np.array([bilirubin_mg_dl]))
    return Newborn(**{k: float(v[0]) for k, v in p.items()})


def with_bilirubin(newborn: Newborn, bilirubin_mg_dl: float) -> Newborn:
    """The same skin at another bilirubin level."""
    return replace(newborn, bilirubin_mg_dl=bilirubin_mg_dl)
