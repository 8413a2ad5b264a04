"""Optics of newborn skin shared by the skin simulator and the TcB unit correction.

Absorption spectra of the skin's chromophores, the diffusion-theory reflectance of a turbid
half-space at the meter's two detector distances, a two-layer skin (an absorbing epidermis over a
dermis with blood and bilirubin) and the LEDs' emission bands. simulators/skin.py draws a
population of newborns from these; dsp/tcb_unit.py inverts the same physics for one reading to
carry it from a unit's own LED bands to the nominal ones.

Constants (cited beside each table):
* haemoglobin: Prahl's tabulated molar extinction (Gratzer/Kollias data, omlc.org/spectra);
* melanin: mu_a = 6.6e11 * lambda^-3.33 /cm inside melanosomes (Jacques, "Optical properties
  of biological tissues: a review", Phys Med Biol 2013;58:R37-R61, eq. 8);
* baseline skin absorption: 0.244 + 85.3 exp(-(lambda-154)/66.2) /cm (Jacques 1998/2013);
* dermal scattering: mu_s' = a (lambda/500 nm)^-b (Jacques 2013, Table 2);
* blood sits in vessels, not spread evenly: its absorption is reduced by the packaging factor
  of Verkruysse et al. 1997 / van Veen et al. 2002 for the mean vessel radius (vessel_packaging);
* haemoglobin = haematocrit x MCHC (340 g/L);
* bilirubin: albumin-bound bilirubin absorption band, peak ~460 nm, peak molar extinction
  ~4.7e4 /cm/M (Prahl's bilirubin data give 5.5e4 at 453 nm in chloroform; the albumin-bound
  band is red-shifted and slightly lower, Agati & Fusi, J Photochem Photobiol B 1990). The
  relative band shape below is a smoothed transcription at 10 nm steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from dsp.arrays import Floats

# The meter (docs/jaundice.md): nominal LED peaks and emission widths (FWHM), detector distances.
NOMINAL_LED_NM = (450.0, 470.0, 505.0, 550.0, 590.0, 650.0)
NOMINAL_FWHM_NM = (20.0, 25.0, 30.0, 28.0, 18.0, 18.0)
DETECTOR_DISTANCE_MM = (0.7, 2.0)  # near, far
WAVELENGTH_GRID_NM: Floats = np.arange(400.0, 700.5, 2.0)
TISSUE_REFRACTIVE_INDEX = 1.4
# The published alternatives ProbeOptics can take for a term (see its docstring).
MELANIN_JACQUES_2013 = "jacques2013"
MELANIN_JACQUES_MCAULIFFE_1991 = "jacques_mcauliffe1991"
REFLECTANCE_FLUX = "flux"
REFLECTANCE_FLUENCE_AND_FLUX = "fluence_and_flux"
# Kienle & Patterson 1997 for n = 1.4: R = 0.118 fluence + 0.306 flux at the surface
KIENLE_FLUENCE_WEIGHT = 0.118
KIENLE_FLUX_WEIGHT = 0.306

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


def hb_extinction(wavelength_nm: ArrayLike) -> tuple[Floats, Floats]:
    """Molar extinction of (HbO2, Hb), cm^-1/(mol/L) (Prahl's table, interpolated)."""
    wl = np.asarray(wavelength_nm, float)
    hbo2 = np.interp(wl, _HB_TABLE[:, 0], _HB_TABLE[:, 1])
    hb = np.interp(wl, _HB_TABLE[:, 0], _HB_TABLE[:, 2])
    return hbo2, hb


def melanin_mua_per_mm(wavelength_nm: ArrayLike, spectrum: str = "jacques2013") -> Floats:
    """Jacques 2013 eq. 8: mu_a of melanosome interior, converted from /cm to /mm; or, with
    spectrum=MELANIN_JACQUES_MCAULIFFE_1991, 1.70e12 lambda^-3.48 /cm (Jacques & McAuliffe,
    Photochem Photobiol 1991;53:769)."""
    wl = np.asarray(wavelength_nm, float)
    if spectrum == MELANIN_JACQUES_MCAULIFFE_1991:
        return np.asarray(1.70e12 * wl**-3.48 / 10.0, float)
    if spectrum != MELANIN_JACQUES_2013:
        raise ValueError(f"unknown melanin spectrum {spectrum!r}")
    return np.asarray(6.6e11 * wl**-3.33 / 10.0, float)


def baseline_mua_per_mm(wavelength_nm: ArrayLike) -> Floats:
    """Bloodless skin background absorption (Jacques 1998), /mm."""
    wl = np.asarray(wavelength_nm, float)
    return np.asarray((0.244 + 85.3 * np.exp(-(wl - 154.0) / 66.2)) / 10.0, float)


def vessel_packaging(mua_blood_per_mm: ArrayLike, vessel_radius_mm: ArrayLike) -> Floats:
    """Fraction of its homogeneous absorption that blood confined to vessels still absorbs.

    C = (1 - exp(-2 mu_a,bl R)) / (2 mu_a,bl R) for vessels of radius R (Verkruysse et al., Phys
    Med Biol 1997;42:51-65; van Veen, Verkruysse, Sterenborg, Opt Lett 2002;27:246-248). Light
    in the middle of a vessel is shadowed by the blood around it, so strong haemoglobin bands
    (420, 540, 576 nm) are flattened much more than the weak red absorption: C -> 1 where
    blood absorbs little, C ~ 1/(2 mu_a,bl R) where it absorbs strongly.
    """
    x = 2.0 * np.asarray(mua_blood_per_mm, float) * np.asarray(vessel_radius_mm, float)
    return np.asarray(np.where(x > 1e-9, -np.expm1(-x) / np.where(x > 1e-9, x, 1.0), 1.0), float)


def blood_mua_per_mm(wavelength_nm: ArrayLike, so2: float, haematocrit: float) -> Floats:
    """Whole-blood mu_a from Prahl's extinction: 2.303 * eps * (Hb g/L) / 64500, /mm."""
    hbo2, hb = hb_extinction(wavelength_nm)
    hb_g_per_l = haematocrit * MCHC_G_PER_L
    eps = so2 * hbo2 + (1.0 - so2) * hb
    return np.asarray(2.303 * eps * hb_g_per_l / HB_MOLAR_MASS_G_PER_MOL / 10.0, float)


def bilirubin_mua_per_mm(wavelength_nm: ArrayLike, bilirubin_mg_dl: ArrayLike) -> Floats:
    """mu_a of bilirubin at a concentration given in mg/dL, /mm."""
    rel = np.interp(np.asarray(wavelength_nm, float), _BILI_TABLE[:, 0], _BILI_TABLE[:, 1])
    molar = np.asarray(bilirubin_mg_dl, float) * 0.01 / BILI_MOLAR_MASS_G_PER_MOL  # -> mol/L
    return np.asarray(2.303 * BILI_PEAK_EPSILON * rel * molar / 10.0, float)


def diffuse_reflectance(mua_per_mm: ArrayLike, musp_per_mm: ArrayLike, rho_mm: float) -> Floats:
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
    return np.asarray((term1 + term2) / (4.0 * np.pi), float)


def surface_fluence(mua_per_mm: ArrayLike, musp_per_mm: ArrayLike, rho_mm: float) -> Floats:
    """The dipole's fluence at the surface at distance rho, per mm^2 (Farrell 1992's sources;
    Kienle & Patterson 1997 weigh it with the flux to give what a detector collects)."""
    mua = np.asarray(mua_per_mm, float)
    musp = np.asarray(musp_per_mm, float)
    n = TISSUE_REFRACTIVE_INDEX
    r_id = -1.440 / n**2 + 0.710 / n + 0.668 + 0.0636 * n
    a_coef = (1.0 + r_id) / (1.0 - r_id)
    mut = mua + musp
    z0 = 1.0 / mut
    diff = 1.0 / (3.0 * mut)
    zb = 2.0 * a_coef * diff
    mueff = np.sqrt(3.0 * mua * mut)
    r1 = np.sqrt(z0**2 + rho_mm**2)
    r2 = np.sqrt((z0 + 2.0 * zb) ** 2 + rho_mm**2)
    return np.asarray(
        (np.exp(-mueff * r1) / r1 - np.exp(-mueff * r2) / r2) / (4.0 * np.pi * diff), float
    )


def _collected(mua_per_mm: ArrayLike, musp_per_mm: ArrayLike, rho_mm: float, terms: str) -> Floats:
    """What a detector at rho collects: the flux (Farrell), or fluence and flux (Kienle)."""
    if terms == REFLECTANCE_FLUX:
        return diffuse_reflectance(mua_per_mm, musp_per_mm, rho_mm)
    if terms != REFLECTANCE_FLUENCE_AND_FLUX:
        raise ValueError(f"unknown reflectance terms {terms!r}")
    return np.asarray(
        KIENLE_FLUX_WEIGHT * diffuse_reflectance(mua_per_mm, musp_per_mm, rho_mm)
        + KIENLE_FLUENCE_WEIGHT * surface_fluence(mua_per_mm, musp_per_mm, rho_mm),
        float,
    )


@dataclass(frozen=True)
class ProbeOptics:
    """Constants of the probe and its reference phantom.

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

    The fields below name the other published choice for a term of this model; their defaults
    are this model's own choice (and reproduce it exactly). dsp/tcb_unit.py uses them to ask
    how much a unit's band correction depends on choices its readings cannot tell apart.
    melanin_spectrum: MELANIN_JACQUES_2013 (6.6e11 lambda^-3.33 /cm) or
      MELANIN_JACQUES_MCAULIFFE_1991 (1.70e12 lambda^-3.48 /cm).
    rayleigh_fraction: part of mu_s'(500 nm) that is Rayleigh scattering, lambda^-4, the rest
      a power law with exponent scatter_b (Jacques 2013: skin f_Ray ~0.41).
    reflectance_terms: REFLECTANCE_FLUX (Farrell 1992: the flux through the surface) or
      REFLECTANCE_FLUENCE_AND_FLUX (Kienle & Patterson, J Opt Soc Am A 1997;14:246: a
      detector's aperture collects both; 0.118 fluence + 0.306 flux for n = 1.4).
    bili_red_edge_scale: stretches the bilirubin band's long-wavelength side about its peak
      (> 1 wider; the band's red edge differs between albumin-bound, free and in-vivo spectra).
    epi_path_exponent: epidermal path factors times (lambda / 500 nm)^-exponent: a scattering
      epidermis lengthens the paths of the more scattered blue light (0: an absorbing filter).
    """

    phantom_mua_per_mm: float = 0.002
    phantom_musp_per_mm: float = 2.0
    epi_path_near: float = 2.3
    epi_path_far: float = 2.1
    coupling_near: float = 1.0
    coupling_far: float = 1.0
    bili_epsilon_scale: float = 1.0
    bili_band_shift_nm: float = 0.0
    melanin_spectrum: str = "jacques2013"
    rayleigh_fraction: float = 0.0
    reflectance_terms: str = "flux"
    bili_red_edge_scale: float = 1.0
    epi_path_exponent: float = 0.0


# Fields of one skin, as arrays (one value per skin): see simulators.skin.Newborn.
SKIN_FIELDS = (
    "bilirubin_mg_dl",
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


def skin_spectra(
    p: Mapping[str, ArrayLike],
    wl: ArrayLike = WAVELENGTH_GRID_NM,
    optics: ProbeOptics | None = None,
) -> tuple[Floats, Floats]:
    """Spectral reflectance relative to the phantom at (near, far), shape (n skins, n wl).

    The epidermis (thickness d_epi, melanin volume fraction f_mel) acts as a thin absorbing
    filter crossed on the way in and on the way out; the dermis is a semi-infinite turbid
    medium with blood (in vessels, partly pressed out by the probe) and extravascular bilirubin;
    its spatially resolved reflectance is Farrell's dipole. p holds one array (n,) per field of
    SKIN_FIELDS, and may hold "bili_band_shift_nm" per skin (else the probe's); everything
    broadcasts over skins x wavelength.
    """
    optics = ProbeOptics() if optics is None else optics
    w = np.asarray(wl, float)
    col = {k: np.asarray(p[k], float).reshape(-1, 1) for k in SKIN_FIELDS}
    f_mel = col["melanin_fraction"]
    base = baseline_mua_per_mm(w)[None, :]
    mua_epi = f_mel * melanin_mua_per_mm(w, optics.melanin_spectrum)[None, :] + (1.0 - f_mel) * base
    blood = col["blood_fraction"] * (1.0 - col["pressure_blanching"])
    hct = col["haematocrit"]
    so2 = col["so2"]
    hbo2, hb = hb_extinction(w)
    eps_blood = so2 * hbo2[None, :] + (1.0 - so2) * hb[None, :]
    mua_blood = 2.303 * eps_blood * hct * MCHC_G_PER_L / HB_MOLAR_MASS_G_PER_MOL / 10.0
    serum = col["bilirubin_mg_dl"]
    # extravascular (albumin-bound) bilirubin + bilirubin in the plasma inside the vessels
    bili_mg_dl = serum * col["tissue_serum_ratio"] + blood * (1.0 - hct) * serum
    # the band's shift: the probe's constant, or one per skin when p gives it
    shift = (
        np.asarray(p["bili_band_shift_nm"], float).reshape(-1, 1)
        if "bili_band_shift_nm" in p
        else optics.bili_band_shift_nm
    )
    band_wl = w[None, :] - shift
    if optics.bili_red_edge_scale != 1.0:  # stretch the band's red side about its peak
        peak = _BILI_TABLE[int(np.argmax(_BILI_TABLE[:, 1])), 0]
        band_wl = np.where(
            band_wl > peak, peak + (band_wl - peak) / optics.bili_red_edge_scale, band_wl
        )
    mua_bili = optics.bili_epsilon_scale * bilirubin_mua_per_mm(band_wl, 1.0) * bili_mg_dl
    packed = vessel_packaging(mua_blood, col["vessel_radius_mm"])
    mua_derm = blood * packed * mua_blood + (1.0 - blood) * base + mua_bili
    musp = col["scatter_a_per_mm"] * (w[None, :] / 500.0) ** -col["scatter_b"]
    if optics.rayleigh_fraction:
        f_ray = optics.rayleigh_fraction
        musp = col["scatter_a_per_mm"] * (
            f_ray * (w[None, :] / 500.0) ** -4.0
            + (1.0 - f_ray) * (w[None, :] / 500.0) ** -col["scatter_b"]
        )
    epi_spectral = (
        (w[None, :] / 500.0) ** -optics.epi_path_exponent if optics.epi_path_exponent else 1.0
    )
    flat = np.ones_like(w)
    out = []
    for rho, path, coupling in (
        (DETECTOR_DISTANCE_MM[0], optics.epi_path_near, optics.coupling_near),
        (DETECTOR_DISTANCE_MM[1], optics.epi_path_far, optics.coupling_far),
    ):
        t_epi = np.exp(-path * epi_spectral * mua_epi * col["epidermis_mm"])
        terms = optics.reflectance_terms
        r_skin = coupling * t_epi * _collected(mua_derm, musp, rho, terms)
        r_ref = _collected(
            optics.phantom_mua_per_mm * flat, optics.phantom_musp_per_mm * flat, rho, terms
        )
        out.append(np.asarray(r_skin / r_ref[None, :], float))
    return out[0], out[1]


def led_band_weights(
    led_nm: ArrayLike, fwhm_nm: ArrayLike, wl: ArrayLike = WAVELENGTH_GRID_NM
) -> Floats:
    """(n LEDs, n wl) normalised Gaussian emission weights on the wavelength grid."""
    centres = np.asarray(led_nm, float)
    widths = np.asarray(fwhm_nm, float)
    if centres.shape != widths.shape or centres.ndim != 1:
        raise ValueError("led_nm and fwhm_nm must have the same length")
    grid = np.asarray(wl, float)
    sigma = widths[:, None] / 2.3548
    w = np.exp(-0.5 * ((grid[None, :] - centres[:, None]) / sigma) ** 2)
    return np.asarray(w / w.sum(axis=1, keepdims=True), float)
