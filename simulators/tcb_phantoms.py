"""The jaundice meter's factory phantoms: what they are made of and what they reflect.

A set a factory can make and a phantom maker can certify (docs/jaundice.md, "Factory
calibration"): every phantom is the same scattering base, a silicone elastomer with titanium
dioxide (Ayers et al., Proc SPIE 2008;6870:687007; Pogue & Patterson, J Biomed Opt
2006;11:041102), with absorbers added:

| name | absorber | peak mu_a | what it is for |
|---|---|---|---|
| W | none (the base itself: the factory white reference) | 0.002 /mm, flat | gains; every ratio is to W |
| Y1, Y2, Y3 | tartrazine (FD&C Yellow 5), max 427 nm | 0.1, 0.3, 0.9 /mm | the blue and cyan LEDs' effective peaks and widths (steep edge 440-510 nm), the bilirubin band's dose-response; Y2 is also the weekly check phantom |
| R | Allura Red AC (FD&C Red 40), max 504 nm | 1.0 /mm | the green LED (its steep red edge at 530-580 nm) |
| B | Brilliant Blue FCF (FD&C Blue 1), max 630 nm, shoulder ~585 nm | 0.8 /mm | the amber and red LEDs (edges at 570-610 and 640-680 nm) |
| G | carbon-black pigment | 1.6 /mm at 550 nm | LED droop: grey (near R ~ 0.14) is dark enough to be lit at every drive up to 102 mA without clipping |

Yellow dye alone cannot see the green, amber and red LEDs, and one phantom mixing red and blue
dyes leaves the 550 nm and 650 nm peaks uncertain by 1-2 nm (their edges partly cancel): each
LED needs a certified edge of its own under its band.

The absorption maxima are the dyes' published ones (JECFA food-additive specifications:
tartrazine 426-427 nm, Allura Red AC 504 nm, Brilliant Blue FCF 630 nm). The band shapes here are
Gaussian approximations (widths read approximately from published spectra, with Brilliant Blue's
580 nm shoulder), and carbon black's mild fall with wavelength is modelled as lambda^-1: this
module only has to give the simulated factory plausible spectra. A real set's certificate
carries the phantom maker's measured spectra, and the calibration uses nothing else.

The certificate gives each phantom's reflectance spectrum at both detector distances relative to
W, every 2 nm over 400-700 nm, as a reference spectrometer with the probe's geometry measures it.
Here it is computed from the phantom's optical properties (diffusion theory, Farrell et al.
1992, for a homogeneous medium) with the errors of such a measurement: 0.2 % (1 SD) in
reflectance, smooth over wavelength, and a wavelength-scale error of 0.15 nm (1 SD), the order of
a compact spectrometer calibrated against a mercury-argon lamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dsp.tissue_optics import DETECTOR_DISTANCE_MM, WAVELENGTH_GRID_NM, diffuse_reflectance

Floats = NDArray[np.float64]

BASE_MUA_PER_MM = 0.002  # the white reference phantom (simulators/skin.py ProbeOptics)
BASE_MUSP_PER_MM = 2.0


@dataclass(frozen=True)
class Band:
    """One Gaussian absorption band: mu_a = peak * exp(-(lambda - centre)^2 / (2 sigma^2))."""

    centre_nm: float
    fwhm_nm: float
    peak_mua_per_mm: float

    def mua(self, wl: Floats) -> Floats:
        sigma = self.fwhm_nm / 2.3548
        return self.peak_mua_per_mm * np.exp(-0.5 * ((wl - self.centre_nm) / sigma) ** 2)


def _tartrazine(peak: float) -> tuple[Band, ...]:
    return (Band(427.0, 83.0, peak),)


PHANTOMS: dict[str, tuple[Band, ...]] = {
    "W": (),
    "Y1": _tartrazine(0.1),
    "Y2": _tartrazine(0.3),
    "Y3": _tartrazine(0.9),
    "R": (Band(504.0, 92.0, 1.0),),
    "B": (Band(630.0, 66.0, 0.8), Band(585.0, 59.0, 0.24)),
    "G": (),  # carbon black: see GREY_MUA_550_PER_MM
}
GREY_MUA_550_PER_MM = 1.6
CHECK_PHANTOM = "Y2"
SPECTRAL_PHANTOMS = ("Y1", "Y2", "Y3", "R", "B")
GREY_PHANTOM = "G"
SET_NAME = "perimon-tcb-phantoms-1"


def phantom_mua_per_mm(name: str, wl: Floats = WAVELENGTH_GRID_NM) -> Floats:
    """Absorption coefficient of one phantom over wavelength (base included)."""
    wl = np.asarray(wl, float)
    mua = np.full_like(wl, BASE_MUA_PER_MM)
    for band in PHANTOMS[name]:
        mua = mua + band.mua(wl)
    if name == GREY_PHANTOM:
        mua = mua + GREY_MUA_550_PER_MM * (wl / 550.0) ** -1.0
    return mua


def phantom_reflectance(name: str, wl: Floats = WAVELENGTH_GRID_NM) -> tuple[Floats, Floats]:
    """(near, far) reflectance spectrum relative to W: what the phantom really reflects."""
    wl = np.asarray(wl, float)
    musp = np.full_like(wl, BASE_MUSP_PER_MM)
    mua = phantom_mua_per_mm(name, wl)
    base = np.full_like(wl, BASE_MUA_PER_MM)
    out = [
        diffuse_reflectance(mua, musp, rho) / diffuse_reflectance(base, musp, rho)
        for rho in DETECTOR_DISTANCE_MM
    ]
    return out[0], out[1]


def certificate(seed: int = 0) -> dict[str, object]:
    """The phantom set's certificate (JSON form), with the measurement errors of a reference
    spectrometer (module docstring); seed draws one set's errors."""
    rng = np.random.default_rng([seed, 41])
    wl = WAVELENGTH_GRID_NM
    scale_error_nm = float(rng.normal(0.0, 0.15))  # the spectrometer's wavelength scale
    phantoms: dict[str, object] = {}
    for name in PHANTOMS:
        near, far = phantom_reflectance(name, wl + scale_error_nm)
        spectra = []
        for r in (near, far):
            # smooth relative error: a few random cosines over the range, 0.2 % SD in total
            k = np.arange(1, 5)
            phase = rng.uniform(0, 2 * np.pi, len(k))
            amp = rng.normal(0.0, 0.002 / np.sqrt(len(k)), len(k))
            err = (
                amp[:, None] * np.cos(np.pi * k[:, None] * (wl - 400) / 300 + phase[:, None])
            ).sum(0)
            spectra.append(r * (1.0 + err) if name != "W" else np.ones_like(r))
        phantoms[name] = {
            "near": [round(float(x), 6) for x in spectra[0]],
            "far": [round(float(x), 6) for x in spectra[1]],
        }
    return {
        "set": SET_NAME,
        "serial": f"{SET_NAME}-{seed:04d}",
        "wavelength_nm": [float(x) for x in wl],
        "check_phantom": CHECK_PHANTOM,
        "spectral_phantoms": list(SPECTRAL_PHANTOMS),
        "grey_phantom": GREY_PHANTOM,
        "phantoms": phantoms,
    }
