"""Newborn skin optics: reflectance at the jaundice meter's two detectors for each LED.

Model. Two layers. The epidermis (thickness d_epi, melanin volume fraction f_mel) acts as a
thin absorbing filter crossed on the way in and on the way out. The dermis is a semi-infinite
turbid medium holding blood (volume fraction, haematocrit, oxygen saturation) and
extravascular bilirubin; its spatially resolved diffuse reflectance R(rho) at source-detector
distance rho comes from the diffusion-theory dipole solution (Farrell, Patterson, Wilson, Med
Phys 1992;19:879-888). Each LED is a Gaussian emission line with a real FWHM; the measured
value is the emission-weighted reflectance divided by the same quantity on the reference
phantom, so 1.0 means "as bright as the reference", as in the calibration file.

Optical constants (cited beside each table below):
* haemoglobin: Prahl's tabulated molar extinction (Gratzer/Kollias data, omlc.org/spectra);
* melanin: mu_a = 6.6e11 * lambda^-3.33 /cm inside melanosomes (Jacques, "Optical properties
  of biological tissues: a review", Phys Med Biol 2013;58:R37-R61, eq. 8);
* baseline skin absorption: 0.244 + 85.3 exp(-(lambda-154)/66.2) /cm (Jacques 1998/2013);
* dermal scattering: mu_s' = a (lambda/500 nm)^-b with a ~ 46 /cm and b ~ 1.42 for skin
  (Jacques 2013, Table 2); varied per baby;
* blood sits in vessels, not spread evenly: its absorption is reduced by the packaging factor
  of Verkruysse et al. 1997 / van Veen et al. 2002 for the mean vessel radius (vessel_packaging);
* newborn blood: haemoglobin = haematocrit x MCHC (340 g/L), haematocrit 0.42-0.65 (Jopling
  et al. 2009); the probe presses most of the dermal blood out (pressure_blanching);
* bilirubin: albumin-bound bilirubin absorption band, peak ~460 nm, peak molar extinction
  ~4.7e4 /cm/M (Prahl's bilirubin data give 5.5e4 at 453 nm in chloroform; the albumin-bound
  band is red-shifted and slightly lower, Agati & Fusi, J Photochem Photobiol B 1990). The
  relative band shape below is a smoothed transcription at 10 nm steps.

The population ranges (POPULATION) and the probe constants (PROBE) are fitted to the summary
statistics of the calibration population by scripts/fit_skin_model.py (docs/jaundice.md); the
blood ranges only within the physiological bounds cited beside POPULATION.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

LED_NM = (450, 470, 505, 550, 590, 650)
DETECTOR_DISTANCE_MM = (0.7, 2.0)  # near, far
DEFAULT_LED_FWHM_NM = (20.0, 25.0, 30.0, 28.0, 18.0, 18.0)
SKIN_GROUPS = ("light", "medium", "dark")

# Prahl, "Tabulated molar extinction coefficient for hemoglobin in water" (omlc.org),
# columns: wavelength nm, HbO2 and Hb in cm^-1/(mol/L). Every 4 nm, 420-700 nm.
_HB_TABLE = np.array(
    [
        (420, 480360, 407560), (424, 376236, 461200), (428, 283112, 500840),
        (432, 214120, 552160), (436, 132820, 547040), (440, 102580, 413280),
        (444, 81444, 282724), (448, 67044, 173320), (452, 58864, 62640),
        (456, 49496, 30698.8), (460, 44480, 23388.8), (464, 39807.2, 19260.8),
        (468, 34870.8, 17025.6), (472, 31620, 15310), (476, 28850.8, 14792.8),
        (480, 26629.2, 14550), (484, 25180.4, 15212.4), (488, 24174.8, 15898),
        (492, 23086.8, 17469.6), (496, 21850.4, 19041.2), (500, 20932.8, 20862),
        (504, 20418, 22803.6), (508, 19996, 24745.2), (512, 20150.4, 26936.8),
        (516, 21001.6, 29263.2), (520, 24202.4, 31589.6), (524, 29269.2, 34397.6),
        (528, 35990, 37490), (532, 43876, 40584), (536, 49752, 43592), (540, 53236, 46592),
        (544, 52096, 49708), (548, 46660, 52496), (552, 39675.2, 54080),
        (556, 34476.8, 54540), (560, 32613.2, 53788), (564, 33915.6, 50572),
        (568, 40172, 46948), (572, 49172, 43340), (576, 55540, 40092), (580, 50104, 37020),
        (584, 34639.6, 34332.8), (588, 19763.2, 31075.2), (592, 10468.4, 25470),
        (596, 5683.6, 19800), (600, 3200, 14677.2), (604, 2128, 12567.6),
        (608, 1647.6, 10477.6), (612, 1364.4, 8591.2), (616, 1110, 7344.8),
        (620, 942, 6509.6), (624, 774, 5906.8), (628, 658.8, 5366.8), (632, 561.2, 4930.8),
        (636, 478.8, 4602.4), (640, 442, 4345.2), (644, 405.2, 4088.4), (648, 379.2, 3857.6),
        (652, 356.8, 3642.64), (656, 335.2, 3427.68), (660, 319.6, 3226.56),
        (664, 308.4, 3053.96), (668, 298, 2881.4), (672, 290, 2708.84),
        (676, 282, 2554.4), (680, 277.6, 2407.92), (684, 274.4, 2261.48),
        (688, 274.4, 2115), (692, 277.6, 2000.48), (696, 282, 1897.56), (700, 290, 1794.28),
    ]
)  # fmt: skip
HB_MOLAR_MASS_G_PER_MOL = 64500.0  # Prahl's convention
MCHC_G_PER_L = 340.0  # haemoglobin per litre of red cells: Hb (g/L) = haematocrit * MCHC

# Albumin-bound bilirubin, relative absorption band (peak = 1 at 460 nm), every 10 nm.
# Shape after Agati & Fusi 1990 and Prahl's bilirubin spectrum (omlc.org/spectra/PhotochemCAD).
_BILI_TABLE = np.array(
    [
        (400, 0.33), (410, 0.42), (420, 0.55), (430, 0.70), (440, 0.84), (450, 0.95),
        (460, 1.00), (470, 0.96), (480, 0.84), (490, 0.63), (500, 0.40), (510, 0.21),
        (520, 0.09), (530, 0.035), (540, 0.012), (550, 0.004), (560, 0.0), (700, 0.0),
    ]
)  # fmt: skip
BILI_PEAK_EPSILON = 4.7e4  # cm^-1 / (mol/L), albumin-bound, ~460 nm
BILI_MOLAR_MASS_G_PER_MOL = 584.66
WAVELENGTH_GRID_NM = np.arange(400.0, 700.5, 2.0)

TISSUE_REFRACTIVE_INDEX = 1.4


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


def _hb_extinction(wavelength_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hbo2 = np.interp(wavelength_nm, _HB_TABLE[:, 0], _HB_TABLE[:, 1])
    hb = np.interp(wavelength_nm, _HB_TABLE[:, 0], _HB_TABLE[:, 2])
    return hbo2, hb


def melanin_mua_per_mm(wavelength_nm: np.ndarray) -> np.ndarray:
    """Jacques 2013 eq. 8: mu_a of melanosome interior, converted from /cm to /mm."""
    return 6.6e11 * np.asarray(wavelength_nm, float) ** -3.33 / 10.0


def baseline_mua_per_mm(wavelength_nm: np.ndarray) -> np.ndarray:
    """Bloodless skin background absorption (Jacques 1998), /mm."""
    return (0.244 + 85.3 * np.exp(-(np.asarray(wavelength_nm, float) - 154.0) / 66.2)) / 10.0


def vessel_packaging(mua_blood_per_mm: np.ndarray, vessel_radius_mm: np.ndarray) -> np.ndarray:
    """Fraction of its homogeneous absorption that blood confined to vessels still absorbs.

    C = (1 - exp(-2 mu_a,bl R)) / (2 mu_a,bl R) for vessels of radius R (Verkruysse et al., Phys
    Med Biol 1997;42:51-65; van Veen, Verkruysse, Sterenborg, Opt Lett 2002;27:246-248). Light
    in the middle of a vessel is shadowed by the blood around it, so strong haemoglobin bands
    (420, 540, 576 nm) are flattened much more than the weak red absorption: C -> 1 where
    blood absorbs little, C ~ 1/(2 mu_a,bl R) where it absorbs strongly.
    """
    x = 2.0 * np.asarray(mua_blood_per_mm, float) * np.asarray(vessel_radius_mm, float)
    return np.where(x > 1e-9, -np.expm1(-x) / np.where(x > 1e-9, x, 1.0), 1.0)


def blood_mua_per_mm(wavelength_nm: np.ndarray, so2: float, haematocrit: float) -> np.ndarray:
    """Whole-blood mu_a from Prahl's extinction: 2.303 * eps * (Hb g/L) / 64500, /mm."""
    hbo2, hb = _hb_extinction(np.asarray(wavelength_nm, float))
    hb_g_per_l = haematocrit * MCHC_G_PER_L
    eps = so2 * hbo2 + (1.0 - so2) * hb
    return 2.303 * eps * hb_g_per_l / HB_MOLAR_MASS_G_PER_MOL / 10.0


def bilirubin_mua_per_mm(wavelength_nm: np.ndarray, bilirubin_mg_dl: float) -> np.ndarray:
    """mu_a of bilirubin at a concentration given in mg/dL, /mm."""
    rel = np.interp(np.asarray(wavelength_nm, float), _BILI_TABLE[:, 0], _BILI_TABLE[:, 1])
    molar = bilirubin_mg_dl * 0.01 / BILI_MOLAR_MASS_G_PER_MOL  # mg/dL -> g/L -> mol/L
    return 2.303 * BILI_PEAK_EPSILON * rel * molar / 10.0


def diffuse_reflectance(
    mua_per_mm: np.ndarray, musp_per_mm: np.ndarray, rho_mm: float
) -> np.ndarray:
    """Farrell 1992 dipole solution for spatially resolved reflectance R(rho), per mm^2."""
    mua = np.asarray(mua_per_mm, float)
    musp = np.asarray(musp_per_mm, float)
    n = TISSUE_REFRACTIVE_INDEX
    r_id = -1.440 / n**2 + 0.710 / n + 0.668 + 0.0636 * n  # Groenhuis internal reflection
    a_coef = (1.0 + r_id) / (1.0 - r_id)
    mut = mua + musp
    z0 = 1.0 / mut
    diff = 1.0 / (3.0 * mut)
    zb = 2.0 * a_coef * diff
    mueff = np.sqrt(3.0 * mua * mut)
    r1 = np.sqrt(z0**2 + rho_mm**2)
    r2 = np.sqrt((z0 + 2.0 * zb) ** 2 + rho_mm**2)
    term1 = z0 * (mueff + 1.0 / r1) * np.exp(-mueff * r1) / r1**2
    term2 = (z0 + 2.0 * zb) * (mueff + 1.0 / r2) * np.exp(-mueff * r2) / r2**2
    return (term1 + term2) / (4.0 * np.pi)


@dataclass(frozen=True)
class ProbeOptics:
    """Constants of the probe and its reference phantom (fitted by scripts/fit_skin_model.py).

    phantom_mua_per_mm, phantom_musp_per_mm: the factory white reference, a near-white
      diffuser with flat mu_a and mu_s' over the visible; every reading is relative to it.
    epi_path_near, epi_path_far: epidermal path-length factors (light crosses the epidermis
      in and out; the near detector collects more oblique paths, so its factor is larger).
    coupling_near, coupling_far: skin/phantom collection ratio at each detector (contact,
      index matching and the detector's finite aperture differ between skin and phantom).
    bili_epsilon_scale: multiplies BILI_PEAK_EPSILON (the in-vivo band strength of
      albumin-bound bilirubin, bounded by the published 4.7e4-5.5e4 /cm/M within ~30 %).
    bili_band_shift_nm: shift of the bilirubin band from the 460 nm albumin-bound peak
      (the in-vivo band sits between the free, ~440-453 nm, and albumin-bound positions).
    """

    phantom_mua_per_mm: float = 0.002
    phantom_musp_per_mm: float = 2.0
    epi_path_near: float = 2.3
    epi_path_far: float = 2.1
    coupling_near: float = 1.0
    coupling_far: float = 1.0
    bili_epsilon_scale: float = 1.0
    bili_band_shift_nm: float = 0.0


def _spectra(
    p: dict[str, np.ndarray], wl: np.ndarray, optics: ProbeOptics | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Spectral reflectance relative to the phantom at (near, far), shape (n babies, n wl).

    p holds one array (n,) per Newborn field; everything broadcasts over babies x wavelength.
    """
    optics = PROBE if optics is None else optics
    col = {k: np.asarray(v, float).reshape(-1, 1) for k, v in p.items()}
    f_mel = col["melanin_fraction"]
    base = baseline_mua_per_mm(wl)[None, :]
    mua_epi = f_mel * melanin_mua_per_mm(wl)[None, :] + (1.0 - f_mel) * base
    blood = col["blood_fraction"] * (1.0 - col["pressure_blanching"])
    hct = col["haematocrit"]
    so2 = col["so2"]
    hbo2, hb = _hb_extinction(wl)
    eps_blood = so2 * hbo2[None, :] + (1.0 - so2) * hb[None, :]
    mua_blood = 2.303 * eps_blood * hct * MCHC_G_PER_L / HB_MOLAR_MASS_G_PER_MOL / 10.0
    serum = col["bilirubin_mg_dl"]
    # extravascular (albumin-bound) bilirubin + bilirubin in the plasma inside the vessels
    bili_mg_dl = serum * col["tissue_serum_ratio"] + blood * (1.0 - hct) * serum
    mua_bili = (
        optics.bili_epsilon_scale
        * bilirubin_mua_per_mm(wl - optics.bili_band_shift_nm, 1.0)
        * bili_mg_dl
    )
    packed = vessel_packaging(mua_blood, col["vessel_radius_mm"])
    mua_derm = blood * packed * mua_blood + (1.0 - blood) * base + mua_bili
    musp = col["scatter_a_per_mm"] * (wl[None, :] / 500.0) ** -col["scatter_b"]
    flat = np.ones_like(wl)
    out = []
    for rho, path, coupling in (
        (DETECTOR_DISTANCE_MM[0], optics.epi_path_near, optics.coupling_near),
        (DETECTOR_DISTANCE_MM[1], optics.epi_path_far, optics.coupling_far),
    ):
        t_epi = np.exp(-path * mua_epi * col["epidermis_mm"])
        r_skin = coupling * t_epi * diffuse_reflectance(mua_derm, musp, rho)
        r_ref = diffuse_reflectance(
            optics.phantom_mua_per_mm * flat, optics.phantom_musp_per_mm * flat, rho
        )
        out.append(r_skin / r_ref[None, :])
    return out[0], out[1]


def led_band_weights(
    led_nm: tuple[float, ...] | np.ndarray, fwhm_nm: tuple[float, ...] | np.ndarray
) -> np.ndarray:
    """(n LEDs, n wl) normalised Gaussian emission weights on WAVELENGTH_GRID_NM."""
    centres = np.asarray(led_nm, float)
    widths = np.asarray(fwhm_nm, float)
    if centres.shape != widths.shape or centres.ndim != 1:
        raise ValueError("led_nm and fwhm_nm must have the same length")
    sigma = widths[:, None] / 2.3548
    w = np.exp(-0.5 * ((WAVELENGTH_GRID_NM[None, :] - centres[:, None]) / sigma) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def population_reflectance(
    p: dict[str, np.ndarray],
    led_nm: tuple[float, ...] | np.ndarray = LED_NM,
    fwhm_nm: tuple[float, ...] | np.ndarray = DEFAULT_LED_FWHM_NM,
    optics: ProbeOptics | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(near, far), each (n babies, n LEDs), for babies given as arrays of Newborn fields."""
    weights = led_band_weights(led_nm, fwhm_nm)
    near_s, far_s = _spectra(p, WAVELENGTH_GRID_NM, optics)
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
DRAW_ORDER = (
    "melanin_fraction",
    "blood_fraction",
    "so2",
    "haematocrit",
    "pressure_blanching",
    "epidermis_mm",
    "scatter_a_per_mm",
    "scatter_b",
    "tissue_serum_ratio",
    "vessel_radius_mm",
)

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
