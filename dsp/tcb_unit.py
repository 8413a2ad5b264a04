"""Per-unit calibration of the jaundice meter: what one unit's LEDs really emit, and a reading
carried from that unit's LED bands to the nominal ones the estimator was fitted at.

Why. LEDs are binned to +-5..10 nm of their nominal peak; the factory white reference is
spectrally flat, so it cannot see where a peak sits. The estimator (dsp/tcb.py) weighs fine
differences between wavelengths (e.g. 590 nm against 550 nm, where haemoglobin's absorption
changes fast), so a unit whose LEDs sit a few nm off reads babies mg/dL off (docs/jaundice.md).

The factory procedure (docs/jaundice.md, "Factory calibration"; `perimon provision
--tcb-calibrate`) measures, at the factory drive, the white phantom W and the certified
phantoms (three yellow levels, a magenta-blue, a grey; simulators/tcb_phantoms.py describes
them), at two temperatures, and the grey at several drives. From those alone:

* each LED's effective band (peak and width of a Gaussian emission times detector response):
  the ratio phantom/W at each detector is the band-weighted certified spectrum, fitted by
  least squares (fit_led_bands);
* how each peak moves with temperature (the same fit at the second temperature);
* each LED's output temperature coefficient (W at both temperatures);
* droop: LED output P(I) = I / (1 + I / I0) (a saturating efficiency, efficiency droop and
  heating within the pulse; Piprek, Phys Status Solidi A 2010;207:2217), I0 from the grey
  phantom's counts at several drives;
* the counts on the meter's built-in white tile (the start-up self-check's reference) and the
  unit's own reading of the check phantom (the weekly check's reference).

At measurement time (nominal_reflectance) the unit's bands at the probe temperature are known,
and the reading's 12 reflectances are fitted with the skin optics of dsp/tissue_optics.py
(melanin, blood and its saturation, bilirubin and where its band sits, scattering, coupling at
each detector); the correction is the fitted skin's reflectance at the nominal bands minus at
the unit's bands, added to what was measured. The blue LEDs' correction rests on the slope of
bilirubin's band under them, and the in-vivo band sits between the free (~450 nm) and the
albumin-bound (~460 nm) positions: a fixed guess of its position leaves up to 0.5 mg/dL of a
unit's error uncorrected on simulated skin, so the position is fitted per reading (0 +- 5 nm
prior around the albumin-bound band).
Only the difference between bands comes from the model, so where the model and the skin differ
most of the error cancels. Nothing here is fitted to babies.

How far the correction can be trusted for one unit (correction_uncertainty): the 12 readings do
not pin the slope of -ln R under each LED, which the correction extrapolates with, and the
slope depends on structural choices of the optics (melanin's spectrum, the scattering
spectrum, what the detector collects at the surface, bilirubin's red edge, a scattering
epidermis) that the readings cannot tell apart. Representative skins are made under each
published alternative, read through the unit's bands, corrected, and estimated; the largest
mean error over alternatives and skin groups is the unit's uncertainty. The factory stores it
and names the LEDs that dominate it, with a warning above CORRECTION_UNCERTAINTY_LIMIT_MG_DL;
it is advisory, never a reason to refuse a unit or withhold a reading: on a second, independent
skin model it did not predict which units miss the accuracy target (docs/jaundice.md, Limits).
The alternatives are this model's own family: a skin built differently can still fall outside
them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from dsp.arrays import Floats
from dsp.tcb import load_model, tcb_features
from dsp.tissue_optics import (
    MELANIN_JACQUES_MCAULIFFE_1991,
    NOMINAL_FWHM_NM,
    NOMINAL_LED_NM,
    REFLECTANCE_FLUENCE_AND_FLUX,
    WAVELENGTH_GRID_NM,
    ProbeOptics,
    led_band_weights,
    skin_spectra,
)

N_LEDS = 6
N_DETECTORS = 2
REFERENCE_TEMPERATURE_C = 25.0
# The LED driver (firmware/jaundice/hal_*.py): codes of 0.1 mA in steps of an 8-bit DAC over
# 0-102 mA; 102 mA for ~20 ms per LED needs mid-power LEDs (docs/jaundice.md).
DRIVE_STEP_CODE = 4
DRIVE_MAX_CODE = 1020
# The factory drive puts the white phantom at 35-55 % of full scale on the near detector.
FACTORY_WHITE_COUNTS = 29500
UNIT_VERSION = 1
# Plausible ranges of a unit's fitted constants: outside them the calibration is refused.
CENTRE_TOLERANCE_NM = 15.0  # binning tolerance is +-10 nm; more means a wrong part or a bad fit
FWHM_RANGE_NM = (8.0, 45.0)
CENTRE_TEMPCO_RANGE_NM_PER_C = (-0.05, 0.3)  # InGaN ~0.03-0.05, AlInGaP ~0.1-0.15 nm/K
OUTPUT_TEMPCO_RANGE_PER_C = (-0.03, 0.005)
DROOP_RANGE_MA = (20.0, 1.0e6)  # I0: 1e6 mA is no droop at all
# Self-check against the built-in white tile: LED output within +-5 % of the factory's (after
# temperature and drive) is corrected by the check itself; beyond that the unit's response has
# changed more than slow LED ageing explains (a damaged window, a failing LED or detector) and
# only a new factory calibration is trusted. Our limit, not a published one.
SELF_CHECK_LIMIT = 0.05
# Weekly check on the check phantom: every ratio within 3 % of the unit's factory reading of it
# (the phantom's certified stability and the check's repeatability, a few 0.1 %, well inside).
PHANTOM_CHECK_LIMIT = 0.03
PHANTOM_RECOGNISE = 0.25  # a press within this (ln R) of the check phantom is the check phantom


@dataclass(frozen=True)
class UnitCalibration:
    """One unit's LEDs as the factory measured them (JSON: `to_dict`, in the device info as
    calibration["unit"]).

    led_centre_nm, led_fwhm_nm: effective band of each LED at 25 C (emission x detector).
    centre_tempco_nm_per_c: how far each peak moves per degree C.
    output_tempco_per_c: relative LED output change per degree C, per LED.
    droop_ma: I0 of P(I) = I / (1 + I / I0) per LED, mA.
    white_tile: counts (near, far) on the built-in white tile at the factory drive and 25 C.
    check_phantom: the unit's own reflectance (near, far per LED) of the check phantom at 25 C.
    phantom_set: the certificate's serial.
    correction_uncertainty_mg_dl: how far the band correction may leave this unit's TcB from
      the nominal unit's, as the factory found it (correction_uncertainty, exact); None in a
      calibration made before the factory judged it.
    """

    led_centre_nm: tuple[float, ...]
    led_fwhm_nm: tuple[float, ...]
    centre_tempco_nm_per_c: tuple[float, ...]
    output_tempco_per_c: tuple[float, ...]
    droop_ma: tuple[float, ...]
    white_tile: tuple[tuple[float, float], ...]
    check_phantom: tuple[tuple[float, float], ...]
    phantom_set: str = ""
    correction_uncertainty_mg_dl: float | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "version": UNIT_VERSION,
            "led_centre_nm": [round(x, 2) for x in self.led_centre_nm],
            "led_fwhm_nm": [round(x, 2) for x in self.led_fwhm_nm],
            "centre_tempco_nm_per_c": [round(x, 4) for x in self.centre_tempco_nm_per_c],
            "output_tempco_per_c": [round(x, 5) for x in self.output_tempco_per_c],
            "droop_ma": [round(x, 1) for x in self.droop_ma],
            "white_tile": [[round(a, 1), round(b, 1)] for a, b in self.white_tile],
            "check_phantom": [[round(a, 5), round(b, 5)] for a, b in self.check_phantom],
            "phantom_set": self.phantom_set,
        }
        if self.correction_uncertainty_mg_dl is not None:
            out["correction_uncertainty_mg_dl"] = round(self.correction_uncertainty_mg_dl, 3)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UnitCalibration:
        """The unit calibration from its JSON form; ValueError naming what is wrong."""
        try:
            if int(d.get("version", 0)) != UNIT_VERSION:
                raise ValueError(f"unknown unit calibration version {d.get('version')!r}")
            unit = cls(
                led_centre_nm=_floats(d["led_centre_nm"]),
                led_fwhm_nm=_floats(d["led_fwhm_nm"]),
                centre_tempco_nm_per_c=_floats(d["centre_tempco_nm_per_c"]),
                output_tempco_per_c=_floats(d["output_tempco_per_c"]),
                droop_ma=_floats(d["droop_ma"]),
                white_tile=_pairs(d["white_tile"]),
                check_phantom=_pairs(d["check_phantom"]),
                phantom_set=str(d.get("phantom_set", "")),
                correction_uncertainty_mg_dl=(
                    None
                    if d.get("correction_uncertainty_mg_dl") is None
                    else float(d["correction_uncertainty_mg_dl"])
                ),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad unit calibration: {exc}") from exc
        unit.check()
        return unit

    def check(self) -> None:
        """ValueError if a constant is outside what a working unit can have."""
        for name in ("led_centre_nm", "led_fwhm_nm", "centre_tempco_nm_per_c",
                     "output_tempco_per_c", "droop_ma"):  # fmt: skip
            values = getattr(self, name)
            if len(values) != N_LEDS or not all(math.isfinite(x) for x in values):
                raise ValueError(f"unit calibration {name} needs {N_LEDS} finite values")
        for name, pairs in (("white_tile", self.white_tile), ("check_phantom", self.check_phantom)):
            if len(pairs) != N_LEDS or not all(
                math.isfinite(x) and x > 0 for pair in pairs for x in pair
            ):
                raise ValueError(f"unit calibration {name} needs {N_LEDS} positive pairs")
        limits = (
            ("led_centre_nm", [c - n for c, n in zip(self.led_centre_nm, NOMINAL_LED_NM,
                                                      strict=True)],
             (-CENTRE_TOLERANCE_NM, CENTRE_TOLERANCE_NM)),
            ("led_fwhm_nm", self.led_fwhm_nm, FWHM_RANGE_NM),
            ("centre_tempco_nm_per_c", self.centre_tempco_nm_per_c,
             CENTRE_TEMPCO_RANGE_NM_PER_C),
            ("output_tempco_per_c", self.output_tempco_per_c, OUTPUT_TEMPCO_RANGE_PER_C),
            ("droop_ma", self.droop_ma, DROOP_RANGE_MA),
        )  # fmt: skip
        u = self.correction_uncertainty_mg_dl
        if u is not None and not (math.isfinite(u) and u >= 0):
            raise ValueError("unit calibration correction_uncertainty_mg_dl must be >= 0")
        for name, values, (lo, hi) in limits:
            bad = [i for i, x in enumerate(values) if not lo <= x <= hi]
            if bad:
                raise ValueError(
                    f"unit calibration {name} out of range for LED {NOMINAL_LED_NM[bad[0]]:.0f} nm"
                )

    def bands_at(self, temperature_c: float) -> tuple[Floats, Floats]:
        """(centres, widths) of the unit's LED bands at a probe temperature."""
        centre = np.asarray(self.led_centre_nm, float) + np.asarray(
            self.centre_tempco_nm_per_c, float
        ) * (temperature_c - REFERENCE_TEMPERATURE_C)
        return centre, np.asarray(self.led_fwhm_nm, float)


def _floats(v: Any) -> tuple[float, ...]:
    return tuple(float(x) for x in v)


def _pairs(v: Any) -> tuple[tuple[float, float], ...]:
    out = []
    for pair in v:
        a, b = pair
        out.append((float(a), float(b)))
    return tuple(out)


def unit_from_calibration(calibration: Mapping[str, Any]) -> UnitCalibration | None:
    """The unit calibration in a device's factory calibration, None if it has none (a unit from
    before per-unit calibration); ValueError if it is there but malformed."""
    unit = calibration.get("unit")
    if unit is None:
        return None
    if not isinstance(unit, Mapping):
        raise ValueError("calibration unit must be an object")
    return UnitCalibration.from_dict(unit)


# ---- LED output against drive and temperature -------------------------------------------


def droop_factor(drive_code: ArrayLike, factory_code: ArrayLike, droop_ma: ArrayLike) -> Floats:
    """P(I) / P(I_factory) with P(I) = I / (1 + I / I0); drive codes are 0.1 mA."""
    i = np.asarray(drive_code, float) / 10.0
    i_f = np.asarray(factory_code, float) / 10.0
    i0 = np.asarray(droop_ma, float)
    return np.asarray((i / i_f) * (1.0 + i_f / i0) / (1.0 + i / i0), float)


def output_factor(temperature_c: float, tempco_per_c: ArrayLike) -> Floats:
    """LED output relative to 25 C (linear in temperature, per LED)."""
    k = np.asarray(tempco_per_c, float)
    return np.asarray(1.0 + k * (temperature_c - REFERENCE_TEMPERATURE_C), float)


# ---- the factory procedure --------------------------------------------------------------


def quantise_drive(code: float) -> int:
    """The drive the LED driver can really set: a multiple of the DAC step, within range."""
    step = DRIVE_STEP_CODE
    return int(max(step, min(DRIVE_MAX_CODE, int(code) // step * step)))


def factory_drive(probe_drive: Sequence[int], white_counts: ArrayLike) -> tuple[int, ...]:
    """Each LED's factory drive from W read at `probe_drive`: the drive that puts W's near
    detector at FACTORY_WHITE_COUNTS (LED output taken as proportional over this small step)."""
    near = np.asarray(white_counts, float)[:, 0]
    if near.shape != (N_LEDS,) or np.any(near <= 0):
        raise ValueError("the white phantom gave no light on the near detector")
    return tuple(
        quantise_drive(d * FACTORY_WHITE_COUNTS / n) for d, n in zip(probe_drive, near, strict=True)
    )


@dataclass(frozen=True)
class TargetReading:
    """Mean dark-subtracted counts of several presses on one target at fixed drives.

    target: "W", a phantom's name, or "tile" (the built-in white tile); counts: (6, 2).
    """

    target: str
    temperature_c: float
    led_drive: tuple[int, ...]
    counts: Floats
    presses: int = 1


def reading_from_presses(target: str, presses: Sequence[Mapping[str, Any]]) -> TargetReading:
    """Average presses (the firmware's records as dicts: dark_before, dark_after, flashes,
    temperature_c, led_drive) on one target; they must share their drives."""
    if not presses:
        raise ValueError(f"no presses on {target}")
    drives = {tuple(int(x) for x in p["led_drive"]) for p in presses}
    if len(drives) != 1:
        raise ValueError(f"presses on {target} used different drives")
    counts = []
    for p in presses:
        flashes = np.asarray(p["flashes"], float)
        if flashes.shape[:2] != (N_LEDS, N_DETECTORS):
            raise ValueError(f"a press on {target} has counts of shape {flashes.shape}")
        dark = 0.5 * (np.asarray(p["dark_before"], float) + np.asarray(p["dark_after"], float))
        counts.append(flashes.mean(axis=2) - dark[None, :])
    temperature = float(np.mean([float(p["temperature_c"]) for p in presses]))
    return TargetReading(target, temperature, drives.pop(), np.mean(counts, axis=0), len(presses))


def _certificate_spectra(certificate: Mapping[str, Any]) -> tuple[Floats, dict[str, Floats]]:
    try:
        wl = np.asarray(certificate["wavelength_nm"], float)
        spectra = {
            name: np.array([np.asarray(p["near"], float), np.asarray(p["far"], float)])
            for name, p in certificate["phantoms"].items()
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a phantom certificate: {exc}") from exc
    if wl.ndim != 1 or len(wl) < 10 or np.any(np.diff(wl) <= 0):
        raise ValueError("phantom certificate wavelengths must increase")
    for name, s in spectra.items():
        if s.shape != (2, len(wl)) or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"phantom certificate spectrum of {name} is malformed")
    return wl, spectra


def fit_led_bands(
    ratios: Mapping[str, Floats], spectra: Mapping[str, Floats], wl: Floats
) -> tuple[Floats, Floats, float]:
    """(centres, FWHMs, RMS misfit of ln ratio) of the 6 LED bands from phantom/W ratios.

    ratios[name]: (6, 2) measured counts on the phantom / counts on W (same drive and
    temperature); spectra[name]: (2, n wl) certified reflectance relative to W. Each LED's
    Gaussian band (centre, FWHM) is fitted by Gauss-Newton on ln(ratio), each detector and
    phantom weighted by its ratio (the far detector's dark phantoms carry little light).
    """
    names = [n for n in ratios if n in spectra]
    if len(names) < 2:
        raise ValueError("need at least two certified phantoms to fit the LED bands")
    meas = np.array([ratios[n] for n in names])  # (p, 6, 2)
    spec = np.array([spectra[n] for n in names])  # (p, 2, wl)
    if np.any(meas <= 0) or not np.all(np.isfinite(meas)):
        raise ValueError("phantom readings must be positive counts above W's dark")
    y = np.log(meas)
    # weight: relative precision ~ counts; a ratio of 1e-3 at the far detector says little
    w = np.sqrt(np.clip(meas, 1e-4, None))
    centres = np.array(NOMINAL_LED_NM, float)
    widths = np.array(NOMINAL_FWHM_NM, float)
    misfit = np.zeros(N_LEDS)
    for led in range(N_LEDS):
        x = np.array([centres[led], widths[led]])

        def model(p: Floats, led: int = led) -> Floats:
            g = led_band_weights(p[:1], p[1:], wl)[0]
            return np.asarray(np.log(spec @ g), float)  # (p, 2)

        lam = 1e-3
        cost = float(np.sum((w[:, led] * (model(x) - y[:, led])) ** 2))
        for _ in range(60):
            r = (w[:, led] * (model(x) - y[:, led])).ravel()
            jac = np.empty((r.size, 2))
            for k, h in enumerate((0.01, 0.01)):
                xp = x.copy()
                xp[k] += h
                jac[:, k] = ((w[:, led] * (model(xp) - y[:, led])).ravel() - r) / h
            a = jac.T @ jac
            step = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), -jac.T @ r)
            trial = x + step
            trial[1] = float(np.clip(trial[1], *FWHM_RANGE_NM))
            new_cost = float(np.sum((w[:, led] * (model(trial) - y[:, led])) ** 2))
            if new_cost < cost:
                x, cost, lam = trial, new_cost, lam / 3.0
                if np.max(np.abs(step)) < 1e-4:
                    break
            else:
                lam *= 4.0
                if lam > 1e6:
                    break
        centres[led], widths[led] = x
        misfit[led] = math.sqrt(cost / float(np.sum(w[:, led] ** 2)))
    return centres, widths, float(np.max(misfit))


def fit_droop(readings: Sequence[TargetReading], factory_drive: Sequence[int]) -> Floats:
    """I0 (mA) per LED from one target read at several drives (same temperature).

    counts(I) / counts(I_f) = P(I) / P(I_f): one parameter per LED, by a scan in log I0 and a
    parabola at the best point, each detector weighted by its counts.
    """
    if len(readings) < 2:
        raise ValueError("droop needs the grey phantom at two drives or more")
    f = np.asarray(factory_drive, float)
    ref = [r for r in readings if np.allclose(r.led_drive, f)]
    if not ref:
        raise ValueError("droop needs the grey phantom at the factory drive too")
    base = ref[0].counts
    grid = np.exp(np.linspace(np.log(DROOP_RANGE_MA[0]), np.log(DROOP_RANGE_MA[1]), 400))
    out = np.empty(N_LEDS)
    for led in range(N_LEDS):
        cost = np.zeros_like(grid)
        for r in readings:
            d = float(r.led_drive[led])
            if d == f[led]:
                continue
            for det in range(N_DETECTORS):
                if base[led, det] < 50 or r.counts[led, det] < 50:
                    continue  # a few counts above dark say nothing about a few % of droop
                meas = r.counts[led, det] / base[led, det]
                model = droop_factor(d, f[led], grid)
                wgt = base[led, det]
                cost += wgt * np.log(meas / model) ** 2
        k = int(np.argmin(cost))
        if 0 < k < len(grid) - 1:  # refine on a parabola in log I0
            c0, c1, c2 = cost[k - 1], cost[k], cost[k + 1]
            den = c0 - 2 * c1 + c2
            shift = 0.5 * (c0 - c2) / den if den > 0 else 0.0
            lg = np.log(grid)
            out[led] = float(np.exp(lg[k] + shift * (lg[1] - lg[0])))
        else:
            out[led] = float(grid[k])
    return out


@dataclass(frozen=True)
class WhiteReference:
    """What the factory procedure gives the counts path (dsp/tcb_counts.py) besides the unit
    calibration: white_ref at 25 C and the factory drive, the drive, the mean tempco (kept for
    readers of the older calibration), and the worst RMS misfit of the LED band fit."""

    white_ref: tuple[tuple[int, int], ...]
    led_drive: tuple[int, ...]
    tempco_per_c: float
    band_fit_misfit: float


def calibrate_unit(
    readings: Sequence[TargetReading], certificate: Mapping[str, Any]
) -> tuple[UnitCalibration, WhiteReference]:
    """The unit calibration from the factory readings, and the factory constants the counts
    path already used (white_ref at 25 C, tempco_per_c); ValueError when a step is missing or
    the result is implausible.

    readings: W and every spectral phantom at two temperatures (both at the factory drive), the
    grey phantom at the factory drive and at least one more drive (at the lower temperature),
    and the built-in tile at the factory drive (lower temperature).
    """
    wl, spectra = _certificate_spectra(certificate)
    whites = sorted((r for r in readings if r.target == "W"), key=lambda r: r.temperature_c)
    if len(whites) < 2 or whites[-1].temperature_c - whites[0].temperature_c < 5.0:
        raise ValueError("the white phantom W is needed at two temperatures 5 C apart or more")
    w_lo, w_hi = whites[0], whites[-1]
    factory_drive = w_lo.led_drive
    if w_hi.led_drive != factory_drive:
        raise ValueError("W must be read at the same (factory) drive at both temperatures")
    # output tempco per LED: W(T) = W25 (1 + k (T - 25)), from the counts-weighted detectors
    q = np.sum(w_hi.counts, axis=1) / np.sum(w_lo.counts, axis=1)
    a = w_lo.temperature_c - REFERENCE_TEMPERATURE_C
    b = w_hi.temperature_c - REFERENCE_TEMPERATURE_C
    tempco = (q - 1.0) / (b - q * a)
    white25 = w_lo.counts / (1.0 + tempco * a)[:, None]

    spectral = [str(n) for n in certificate.get("spectral_phantoms", []) if n in spectra]
    bands = []
    for white in (w_lo, w_hi):
        ratios = {}
        for r in readings:
            if (
                r.target in spectral
                and abs(r.temperature_c - white.temperature_c) < 1.0
                and r.led_drive == factory_drive
            ):
                ratios[r.target] = r.counts / white.counts
        missing = [n for n in spectral if n not in ratios]
        if missing:
            raise ValueError(
                f"phantom {missing[0]} was not read at {white.temperature_c:.0f} C and the "
                "factory drive"
            )
        bands.append((*fit_led_bands(ratios, spectra, wl), white.temperature_c, ratios))
    (c_lo, fw_lo, mis_lo, t_lo, ratios_lo), (c_hi, fw_hi, mis_hi, t_hi, _) = bands
    centre_tempco = (c_hi - c_lo) / (t_hi - t_lo)
    centre25 = c_lo - centre_tempco * (t_lo - REFERENCE_TEMPERATURE_C)

    grey = str(certificate.get("grey_phantom", "G"))
    greys = [
        r for r in readings if r.target == grey and abs(r.temperature_c - t_lo) < 1.0
    ]  # fmt: skip
    droop = fit_droop(greys, factory_drive)

    tiles = [r for r in readings if r.target == "tile" and r.led_drive == factory_drive]
    if not tiles:
        raise ValueError("the built-in white tile was not read at the factory drive")
    tile = tiles[0]
    tile25 = tile.counts / output_factor(tile.temperature_c, tempco)[:, None]
    check = str(certificate.get("check_phantom", ""))
    if check not in ratios_lo:
        raise ValueError(f"the check phantom {check!r} is not one of the spectral phantoms")
    check_ratio = ratios_lo[check]
    unit = UnitCalibration(
        led_centre_nm=tuple(float(x) for x in centre25),
        led_fwhm_nm=tuple(float(x) for x in 0.5 * (fw_lo + fw_hi)),
        centre_tempco_nm_per_c=tuple(float(x) for x in centre_tempco),
        output_tempco_per_c=tuple(float(x) for x in tempco),
        droop_ma=tuple(float(x) for x in droop),
        white_tile=tuple((float(n), float(f)) for n, f in tile25),
        check_phantom=tuple((float(n), float(f)) for n, f in check_ratio),
        phantom_set=str(certificate.get("serial", certificate.get("set", ""))),
    )
    unit.check()
    reference = WhiteReference(
        white_ref=tuple((int(round(n)), int(round(f))) for n, f in white25),
        led_drive=factory_drive,
        tempco_per_c=round(float(np.mean(tempco)), 5),
        band_fit_misfit=max(mis_lo, mis_hi),
    )
    return unit, reference


# ---- from the unit's bands to the nominal ones ------------------------------------------

# The skin the correction fits (dsp/tissue_optics.py): free melanin, blood left under the probe,
# its saturation, dermal bilirubin, scattering amplitude and power, coupling at each detector,
# and the position of bilirubin's band.
# Fixed at typical values: haematocrit, vessel radius, epidermal thickness, path factors (light
# crosses the epidermis once in and once out).
_FIXED = {
    "haematocrit": 0.53,  # middle of 0.42-0.65 (Jopling et al., Pediatrics 2009)
    "pressure_blanching": 0.0,  # the fitted blood is what remains under the probe
    "epidermis_mm": 0.09,
    "tissue_serum_ratio": 1.0,  # the fitted bilirubin is the dermal concentration
    "vessel_radius_mm": 0.015,  # 2.5-30 um (Braverman 2000)
}
_OPTICS = ProbeOptics(epi_path_near=2.0, epi_path_far=2.0)
# parameter: start, lower bound, upper bound, prior SD (weak: keeps unconstrained terms sane)
_PARAMS = (
    ("log_melanin", math.log(0.03), math.log(1e-4), math.log(0.6), 3.0),
    ("log_blood", math.log(5e-4), math.log(1e-6), math.log(0.05), 3.0),
    ("so2", 0.85, 0.3, 1.0, 0.3),
    ("bilirubin", 2.0, 0.0, 25.0, 20.0),
    ("log_scatter", math.log(3.0), math.log(0.3), math.log(20.0), 1.5),
    ("scatter_b", 1.0, 0.1, 3.0, 1.0),
    ("log_coupling_near", 0.0, -2.5, 2.5, 1.0),
    ("log_coupling_far", 0.0, -2.5, 2.5, 1.0),
    ("bili_band_shift_nm", 0.0, -15.0, 15.0, 5.0),
)
_PRIOR_CENTRE = np.array([p[1] for p in _PARAMS])
# starts of the fit: the prior's centre, then (for readings it fits worse than _REFIT_COST,
# the sum of squared residuals in SDs over 12 values) darker skin, and more bilirubin
_REFIT_COST = 24.0
_STARTS = (
    _PRIOR_CENTRE,
    _PRIOR_CENTRE + np.array([math.log(8.0 / 3.0), 0, 0, 0, 0, 0, 0, 0, 0]),
    _PRIOR_CENTRE + np.array([0, 0, 0, 8.0, 0, 0, 0, 0, 0]),
)
_LO = np.array([p[2] for p in _PARAMS])
_HI = np.array([p[3] for p in _PARAMS])
_PRIOR_SD = np.array([p[4] for p in _PARAMS])
# reading noise for the fit's weights (ln R): relative, plus a floor in reflectance
_REL_SD = np.array([0.005] * N_LEDS + [0.01] * N_LEDS)
_FLOOR = 1e-4
_NOMINAL_BANDS = led_band_weights(NOMINAL_LED_NM, NOMINAL_FWHM_NM)
# below this difference between the unit's and the nominal bands there is nothing to correct
_BAND_EPSILON_NM = 0.02


def _params(theta: Floats) -> dict[str, Floats]:
    n = theta.shape[0]
    p = {k: np.full(n, v) for k, v in _FIXED.items()}
    p["melanin_fraction"] = np.exp(theta[:, 0])
    p["blood_fraction"] = np.exp(theta[:, 1])
    p["so2"] = theta[:, 2]
    p["bilirubin_mg_dl"] = theta[:, 3]
    p["scatter_a_per_mm"] = np.exp(theta[:, 4])
    p["scatter_b"] = theta[:, 5]
    p["bili_band_shift_nm"] = theta[:, 8]
    return p


def _model_a(theta: Floats, bands: Floats) -> Floats:
    """(n, 12) -ln R of the fitted skins through LED band weights `bands`: (6, wl) for every
    skin, or (n, 6, wl) one set per skin."""
    near, far = skin_spectra(_params(theta), WAVELENGTH_GRID_NM, _OPTICS)
    if bands.ndim == 3:
        r = np.hstack([np.einsum("nw,nlw->nl", near, bands), np.einsum("nw,nlw->nl", far, bands)])
    else:
        r = np.hstack([near @ bands.T, far @ bands.T])
    a = -np.log(np.clip(r, 1e-12, None))
    a[:, :N_LEDS] -= theta[:, 6:7]
    a[:, N_LEDS:] -= theta[:, 7:8]
    return np.asarray(a, float)


def fit_skin(a: Floats, sd: Floats, bands: Floats, iterations: int = 40) -> Floats:
    """Levenberg-Marquardt, batched over readings: theta (n, 9) whose model -ln R through
    `bands` matches a (n, 12) within sd (n, 12), with the weak priors of _PARAMS. The fit
    starts from each of _STARTS (dark, jaundiced skin can stall a start made for light skin)
    and keeps, per reading, the best."""
    best_theta, best_cost = _levenberg_marquardt(a, sd, bands, _STARTS[0], iterations)
    for start in _STARTS[1:]:
        rows = best_cost > _REFIT_COST  # only readings the first start did not fit
        if not np.any(rows):
            break
        sub = bands[rows] if bands.ndim == 3 else bands
        theta, cost = _levenberg_marquardt(a[rows], sd[rows], sub, start, iterations)
        better = cost < best_cost[rows]
        idx = np.flatnonzero(rows)[better]
        best_theta[idx] = theta[better]
        best_cost[idx] = cost[better]
    return best_theta


def _levenberg_marquardt(
    a: Floats, sd: Floats, bands: Floats, start: Floats, iterations: int
) -> tuple[Floats, Floats]:
    n = a.shape[0]
    theta = np.tile(start, (n, 1))
    k = len(_PARAMS)

    def residual(th: Floats) -> Floats:
        data = (_model_a(th, bands) - a) / sd
        prior = (th - _PRIOR_CENTRE) / _PRIOR_SD
        return np.asarray(np.hstack([data, prior]), float)

    r = residual(theta)
    cost = np.sum(r**2, axis=1)
    lam = np.full(n, 1e-2)
    h = 1e-4
    for _ in range(iterations):
        jac = np.empty((n, r.shape[1], k))
        for j in range(k):
            tp = theta.copy()
            tp[:, j] += h
            jac[:, :, j] = (residual(tp) - r) / h
        jtj = np.einsum("nij,nik->njk", jac, jac)
        g = np.einsum("nij,ni->nj", jac, r)
        diag = np.einsum("njj->nj", jtj) + 1e-9
        step = np.linalg.solve(
            jtj + lam[:, None, None] * np.eye(k) * diag[:, None, :], -g[:, :, None]
        )[:, :, 0]
        trial = np.clip(theta + step, _LO, _HI)
        r_t = residual(trial)
        cost_t = np.sum(r_t**2, axis=1)
        better = cost_t < cost
        theta = np.where(better[:, None], trial, theta)
        r = np.where(better[:, None], r_t, r)
        moved = np.max(np.abs(step), axis=1)
        cost = np.where(better, cost_t, cost)
        lam = np.where(better, lam / 3.0, lam * 4.0)
        if np.all((moved < 1e-5) | (lam > 1e8)):
            break
    return theta, cost


def fitted_skin_absorbance(
    r_near: ArrayLike, r_far: ArrayLike, fit_bands: Floats, eval_bands: Sequence[Floats]
) -> tuple[list[Floats], Floats]:
    """The correction's skin optics fitted to readings (n, 6) taken through `fit_bands` (6, wl):
    the fitted skins' -ln R (n, 12: near then far) through each of `eval_bands`, and each fit's
    cost (sum of squared residuals in reading-noise SDs over the 12 readings). For checking
    what the correction extrapolates with (benchmarks/bench_tcb.py --transfer)."""
    r = np.hstack(
        [np.atleast_2d(np.asarray(r_near, float)), np.atleast_2d(np.asarray(r_far, float))]
    )
    a = -np.log(np.clip(r, _FLOOR * 0.1, None))
    sd = np.hypot(_REL_SD[None, :], _FLOOR / np.clip(r, _FLOOR * 0.1, None))
    theta = fit_skin(a, sd, fit_bands)
    cost = np.sum(((_model_a(theta, fit_bands) - a) / sd) ** 2, axis=1)
    return [_model_a(theta, np.asarray(b, float)) for b in eval_bands], np.asarray(cost, float)


def _carried_to_nominal(r: Floats, unit_bands: Floats) -> Floats:
    """Reflectances r (n, 12: near then far) read through `unit_bands` ((6, wl), or (n, 6, wl)
    one set per reading), carried to the nominal bands (module docstring)."""
    a = -np.log(np.clip(r, _FLOOR * 0.1, None))
    sd = np.hypot(_REL_SD[None, :], _FLOOR / np.clip(r, _FLOOR * 0.1, None))
    theta = fit_skin(a, sd, unit_bands)
    delta = _model_a(theta, _NOMINAL_BANDS) - _model_a(theta, unit_bands)
    return np.asarray(r * np.exp(-delta), float)


def nominal_reflectance(
    r_near: ArrayLike, r_far: ArrayLike, unit: UnitCalibration, temperature_c: ArrayLike
) -> tuple[Floats, Floats]:
    """What a unit with the nominal LED bands would have read: reflectances (n, 6) or (6,)
    measured by `unit` at `temperature_c` (one for all, or one per reading), carried to the
    nominal bands (module docstring). NaN in, NaN out."""
    near = np.asarray(r_near, float)
    far = np.asarray(r_far, float)
    single = near.ndim == 1
    near2 = np.atleast_2d(near)
    far2 = np.atleast_2d(far)
    temps = np.broadcast_to(np.asarray(temperature_c, float), (near2.shape[0],))
    bands = [unit.bands_at(float(t)) for t in temps]
    centres = np.array([c for c, _ in bands])
    widths = np.array([w for _, w in bands])
    if np.all(np.abs(centres - np.asarray(NOMINAL_LED_NM)) < _BAND_EPSILON_NM) and np.all(
        np.abs(widths - np.asarray(NOMINAL_FWHM_NM)) < _BAND_EPSILON_NM
    ):
        return near.copy(), far.copy()
    ok = np.all(np.isfinite(near2), axis=1) & np.all(np.isfinite(far2), axis=1)
    out_near = np.full_like(near2, np.nan)
    out_far = np.full_like(far2, np.nan)
    if np.any(ok):
        r = np.hstack([near2[ok], far2[ok]])
        unit_bands = np.array(
            [led_band_weights(c, w) for c, w in zip(centres[ok], widths[ok], strict=True)]
        )
        corrected = _carried_to_nominal(r, unit_bands)
        out_near[ok] = corrected[:, :N_LEDS]
        out_far[ok] = corrected[:, N_LEDS:]
    if single:
        return out_near[0], out_far[0]
    return out_near, out_far


# ---- the checks in the field ------------------------------------------------------------


@dataclass(frozen=True)
class SelfCheck:
    """The start-up check against the built-in white tile.

    ratio: (6, 2) tile counts now / the factory's, after drive and temperature; ok: every
    ratio within SELF_CHECK_LIMIT of 1.
    """

    ratio: Floats
    ok: bool

    @property
    def max_drift(self) -> float:
        return float(np.max(np.abs(self.ratio - 1.0)))


def self_check(
    tile_counts: ArrayLike,
    led_drive: ArrayLike,
    temperature_c: float,
    factory_drive: ArrayLike,
    unit: UnitCalibration,
) -> SelfCheck:
    """Compare the tile's dark-subtracted counts (6, 2) now with the factory's."""
    counts = np.asarray(tile_counts, float)
    if counts.shape != (N_LEDS, N_DETECTORS) or not np.all(np.isfinite(counts)):
        raise ValueError("the self-check needs 6 x 2 counts")
    expected = (
        np.asarray(unit.white_tile, float)
        * droop_factor(led_drive, factory_drive, unit.droop_ma)[:, None]
        * output_factor(temperature_c, unit.output_tempco_per_c)[:, None]
    )
    ratio = np.asarray(counts / expected, float)
    ok = bool(np.all(np.abs(ratio - 1.0) <= SELF_CHECK_LIMIT))
    return SelfCheck(ratio, ok)


def is_check_phantom(r_near: ArrayLike, r_far: ArrayLike, unit: UnitCalibration) -> bool:
    """Whether a press looks like the check phantom (far brighter in red/green than skin):
    such a press is the weekly check, never a baby."""
    ref = np.asarray(unit.check_phantom, float)
    r = np.column_stack([np.asarray(r_near, float), np.asarray(r_far, float)])
    if r.shape != ref.shape or not np.all(np.isfinite(r)) or np.any(r <= 0):
        return False
    return bool(np.all(np.abs(np.log(r / ref)) < PHANTOM_RECOGNISE))


def phantom_check(r_near: ArrayLike, r_far: ArrayLike, unit: UnitCalibration) -> tuple[bool, float]:
    """(passed, largest relative deviation) of a press on the check phantom."""
    ref = np.asarray(unit.check_phantom, float)
    r = np.column_stack([np.asarray(r_near, float), np.asarray(r_far, float)])
    dev = float(np.max(np.abs(r / ref - 1.0)))
    return dev <= PHANTOM_CHECK_LIMIT, dev


# ---- how far a unit's band correction can be trusted ------------------------------------

# The accuracy a calibrated unit should keep (docs/jaundice.md, "Factory calibration"; issue
# 21's target): within +-0.3 mg/dL of the nominal unit's bias in every skin group. Our target, not
# a published one (a third of the ~1 mg/dL two repeat presses differ by, docs/jaundice.md). An
# estimate above it is a warning only: not validated on an independent skin model.
CORRECTION_UNCERTAINTY_LIMIT_MG_DL = 0.3

# Skins that stand for the population, per group, as ranges of dsp/tissue_optics.py's fields:
# the ranges docs/jaundice.md ("Skin model") reports as fitted to the calibration population's
# summary statistics (melanin per group; the blood left under the probe once 95-97 % is pressed
# out; haematocrit, SO2, scattering, vessel radius; tissue/serum bilirubin 0.21, serum 0-20
# mg/dL; the band 5 nm bluer than 460 nm; epidermis 91 um crossed with path factors 3.5).
_SKIN_GROUPS: dict[str, tuple[float, float]] = {
    "light": (0.0034, 0.0223),
    "medium": (0.0172, 0.0664),
    "dark": (0.0362, 0.1512),
}
_SKIN_RANGES: dict[str, tuple[float, float]] = {
    "blood_fraction": (0.0094 * 0.03, 0.0147 * 0.05),
    "so2": (0.775, 0.956),
    "haematocrit": (0.43, 0.64),
    "scatter_a_per_mm": (1.6, 5.1),
    "vessel_radius_mm": (0.009, 0.021),
    "bilirubin_mg_dl": (0.0, 20.0 * 0.21),
}
_SKIN_FIXED = {
    "pressure_blanching": 0.0,
    "epidermis_mm": 0.091,
    "tissue_serum_ratio": 1.0,
    "scatter_b": 0.8,
}
_SKINS_PER_GROUP = 8
_SKIN_OPTICS = ProbeOptics(epi_path_near=3.5, epi_path_far=3.5, bili_band_shift_nm=-5.0)
# The structural choices of skin optics that a unit's 12 readings cannot tell apart
# (docs/jaundice.md, Limits; benchmarks/bench_tcb.py --transfer): for each term the other
# published choice (ProbeOptics's docstring), and all of them at once. Which is right depends
# on the skin, so a unit's corrected reading is only as good as its spread over them.
_VARIANTS: tuple[tuple[str, ProbeOptics], ...] = (
    ("as the correction models skin", _SKIN_OPTICS),
    ("melanin of Jacques & McAuliffe 1991",
     replace(_SKIN_OPTICS, melanin_spectrum=MELANIN_JACQUES_MCAULIFFE_1991)),
    ("Mie + Rayleigh scattering", replace(_SKIN_OPTICS, rayleigh_fraction=0.41)),
    ("fluence and flux at the surface",
     replace(_SKIN_OPTICS, reflectance_terms=REFLECTANCE_FLUENCE_AND_FLUX)),
    ("bilirubin's red edge 15 % narrower", replace(_SKIN_OPTICS, bili_red_edge_scale=0.85)),
    ("bilirubin's red edge 15 % wider", replace(_SKIN_OPTICS, bili_red_edge_scale=1.15)),
    ("a scattering epidermis", replace(_SKIN_OPTICS, epi_path_exponent=0.5)),
    ("all of these at once", replace(
        _SKIN_OPTICS, melanin_spectrum=MELANIN_JACQUES_MCAULIFFE_1991, rayleigh_fraction=0.41,
        reflectance_terms=REFLECTANCE_FLUENCE_AND_FLUX, epi_path_exponent=0.5)),
)  # fmt: skip
_CASES = tuple((v, g) for v, _ in _VARIANTS for g in _SKIN_GROUPS)
# Secants of the sensitivity (nm): about the largest binning offsets (+-10 nm peaks; widths
# vary by a few nm). The correction's error is not linear in an LED's offset, so each LED gets
# a secant each way, from the nominal band.
_CENTRE_STEP_NM = 8.0
_WIDTH_STEP_NM = 4.0


@functools.lru_cache(maxsize=1)
def _variant_spectra() -> tuple[Floats, Floats, Floats]:
    """Spectra (near, far: (rows, wl)) of the representative skins, _SKINS_PER_GROUP rows for
    each of _CASES in order, and their TcB at the nominal bands. Cached: the same for every
    unit."""
    from scipy.stats import qmc

    draws = qmc.Halton(d=1 + len(_SKIN_RANGES), scramble=False).random(_SKINS_PER_GROUP + 1)[1:]
    skins = {}
    for group, (mel_lo, mel_hi) in _SKIN_GROUPS.items():
        p = {k: np.full(_SKINS_PER_GROUP, v) for k, v in _SKIN_FIXED.items()}
        p["melanin_fraction"] = mel_lo + (mel_hi - mel_lo) * draws[:, 0]
        for j, (name, (lo, hi)) in enumerate(_SKIN_RANGES.items()):
            p[name] = lo + (hi - lo) * draws[:, 1 + j]
        skins[group] = p
    near, far = [], []
    for _variant, optics in _VARIANTS:
        for group in _SKIN_GROUPS:
            sn, sf = skin_spectra(skins[group], WAVELENGTH_GRID_NM, optics)
            near.append(sn)
            far.append(sf)
    sn, sf = np.vstack(near), np.vstack(far)
    return sn, sf, _linear_tcb(sn @ _NOMINAL_BANDS.T, sf @ _NOMINAL_BANDS.T)


def _linear_tcb(r_near: Floats, r_far: Floats) -> Floats:
    """The shipped estimator's TcB without its flags (some representative skins sit at the
    edge of its calibration range; their error is still the correction's)."""
    return np.asarray(tcb_features(r_near, r_far) @ load_model().coef, float)


def corrected_bias(led_centre_nm: ArrayLike, led_fwhm_nm: ArrayLike) -> Floats:
    """Mean TcB error (mg/dL) of each of _CASES for a unit with these LED bands: the
    representative skins read through the bands, carried to the nominal ones by the
    correction, estimated with the shipped estimator, minus the same skins read at the nominal
    bands. Seconds of CPU (the correction's fit of every skin); correction_uncertainty uses
    its linear sensitivity instead."""
    sn, sf, tcb_nominal = _variant_spectra()
    bands = led_band_weights(led_centre_nm, led_fwhm_nm)
    r = np.hstack([sn @ bands.T, sf @ bands.T])
    corrected = _carried_to_nominal(r, bands)
    err = _linear_tcb(corrected[:, :N_LEDS], corrected[:, N_LEDS:]) - tcb_nominal
    return np.asarray(err.reshape(len(_CASES), _SKINS_PER_GROUP).mean(axis=1), float)


def correction_sensitivity() -> tuple[Floats, Floats]:
    """(rising, falling), each (len(_CASES), 12): the secant of corrected_bias for one LED's
    centre (columns 0-5), then its FWHM (6-11), moved up (rising) or down (falling) by
    _CENTRE_STEP_NM / _WIDTH_STEP_NM from the nominal bands, the others nominal; mg/dL per nm.
    Minutes of CPU: computed once and kept as _SENSITIVITY_RISING / _FALLING
    (tests/test_tcb_acceptance.py checks that they are current)."""
    centre0 = np.array(NOMINAL_LED_NM, float)
    width0 = np.array(NOMINAL_FWHM_NM, float)
    at_nominal = corrected_bias(centre0, width0)
    out = np.zeros((2, len(_CASES), 2 * N_LEDS))
    for k in range(2 * N_LEDS):
        step = _CENTRE_STEP_NM if k < N_LEDS else _WIDTH_STEP_NM
        for side, sign in enumerate((1.0, -1.0)):
            c, w = centre0.copy(), width0.copy()
            if k < N_LEDS:
                c[k] += sign * step
            else:
                w[k - N_LEDS] += sign * step
            out[side, :, k] = (corrected_bias(c, w) - at_nominal) / (sign * step)
    return out[0], out[1]


# The secants of correction_sensitivity(), mg/dL per nm, one row per entry of _CASES, columns
# the LEDs' centres then their FWHMs; kept here so the gateway can judge a unit at once
# (tests/test_tcb_acceptance.py checks that they are current).
_SENSITIVITY_RISING = np.array(
    [
        (+0.00016, +0.00002, +0.00005, -0.00025, -0.00023, -0.00046, +0.00007, +0.00021, +0.00037, +0.00012, -0.00071, -0.00002),
        (+0.00036, +0.00002, +0.00011, -0.00032, -0.00015, -0.00047, +0.00009, +0.00023, +0.00039, +0.00009, -0.00070, -0.00003),
        (+0.00029, -0.00006, +0.00066, +0.00017, -0.00044, -0.00092, +0.00011, -0.00001, +0.00053, +0.00015, -0.00075, -0.00006),
        (+0.00024, -0.00016, +0.00003, -0.00022, +0.00074, -0.00061, +0.00008, -0.00002, +0.00036, +0.00019, -0.00069, -0.00002),
        (+0.00136, -0.00043, -0.00036, -0.00141, +0.00262, +0.00174, +0.00017, +0.00040, +0.00029, -0.00014, -0.00074, +0.00004),
        (+0.00220, -0.00148, -0.00000, -0.00248, +0.00738, +0.00312, +0.00051, -0.00013, +0.00032, -0.00050, -0.00067, +0.00016),
        (-0.00337, -0.00122, -0.00289, -0.00217, +0.00522, +0.00382, +0.00073, -0.00018, -0.00110, -0.00097, -0.00165, +0.00004),
        (-0.00339, -0.00125, -0.00287, -0.00193, +0.00470, +0.00377, +0.00058, -0.00026, -0.00115, -0.00102, -0.00158, +0.00008),
        (-0.00473, -0.00158, -0.00223, -0.00040, +0.00239, +0.00342, -0.00004, -0.00032, -0.00102, -0.00069, -0.00150, +0.00015),
        (-0.00201, -0.00111, -0.00097, +0.00288, +0.00184, -0.00441, -0.00004, -0.00327, -0.00140, +0.00029, -0.00028, -0.00007),
        (-0.00008, -0.00119, +0.00073, +0.00223, -0.00282, -0.00267, -0.00006, -0.00256, -0.00101, +0.00025, -0.00042, +0.00000),
        (-0.00137, -0.00081, +0.00304, +0.00268, -0.00820, -0.00105, -0.00012, -0.00198, -0.00042, +0.00040, -0.00088, +0.00011),
        (+0.00890, -0.00350, +0.01260, +0.00100, -0.00033, -0.00280, +0.00161, -0.00119, +0.00501, +0.00493, +0.00017, +0.00006),
        (+0.00989, -0.00266, +0.01187, +0.00182, -0.00278, -0.00339, +0.00198, -0.00012, +0.00548, +0.00458, +0.00011, +0.00001),
        (+0.01147, +0.00029, +0.01132, +0.00199, -0.00468, -0.00302, +0.00359, +0.00085, +0.00651, +0.00321, -0.00090, -0.00008),
        (-0.00118, -0.00393, -0.00061, -0.00338, +0.00750, +0.00190, -0.00187, +0.00163, -0.00044, -0.00386, -0.00092, -0.00028),
        (+0.00373, -0.00352, -0.00334, -0.00475, +0.00817, +0.00202, -0.00154, +0.00145, -0.00049, -0.00427, -0.00082, -0.00023),
        (+0.00274, -0.00328, -0.00310, -0.00644, +0.01061, +0.00430, -0.00105, +0.00118, -0.00066, -0.00474, -0.00052, -0.00012),
        (+0.00070, -0.00051, +0.00014, -0.00041, +0.00160, -0.00054, +0.00010, -0.00053, +0.00022, +0.00027, -0.00070, -0.00000),
        (+0.00321, -0.00316, -0.00400, -0.00731, +0.01832, +0.00833, +0.00062, +0.00186, -0.00005, -0.00111, -0.00096, +0.00021),
        (+0.00589, -0.00707, -0.00348, -0.00857, +0.02262, +0.01339, +0.00180, -0.00081, +0.00012, -0.00192, -0.00095, +0.00068),
        (-0.01440, +0.00188, -0.00166, +0.00888, +0.00757, +0.01933, +0.00150, -0.00708, -0.00276, -0.00186, -0.00338, +0.00067),
        (-0.01322, +0.00222, -0.00391, +0.00553, +0.01393, +0.02584, +0.00061, -0.00579, -0.00325, -0.00151, -0.00300, +0.00110),
        (-0.00986, -0.00782, -0.00947, +0.00518, +0.01965, +0.03969, -0.00015, -0.00454, -0.00456, -0.00077, -0.00373, +0.00242),
    ]
)  # fmt: skip
_SENSITIVITY_FALLING = np.array(
    [
        (+0.00016, +0.00051, -0.00085, -0.00061, -0.00006, -0.00046, +0.00011, +0.00020, +0.00031, +0.00010, -0.00094, -0.00002),
        (+0.00023, -0.00025, -0.00087, -0.00065, -0.00007, -0.00046, +0.00012, +0.00021, +0.00032, +0.00006, -0.00094, -0.00002),
        (+0.00014, -0.00003, -0.00052, -0.00023, -0.00132, -0.00104, +0.00013, +0.00001, +0.00045, +0.00013, -0.00095, -0.00005),
        (+0.00020, +0.00104, -0.00087, -0.00096, -0.00055, +0.00003, +0.00011, +0.00019, +0.00028, +0.00007, -0.00092, -0.00001),
        (+0.00013, -0.00159, -0.00099, -0.00206, +0.00323, +0.00170, +0.00018, +0.00029, +0.00017, -0.00018, -0.00113, +0.00003),
        (+0.00128, -0.00351, -0.00256, -0.00267, +0.01518, +0.00325, +0.00043, -0.00018, +0.00010, -0.00056, -0.00114, +0.00013),
        (-0.00294, -0.00187, -0.00188, -0.00074, +0.00890, +0.00408, +0.00067, -0.00023, -0.00114, -0.00093, -0.00239, +0.00003),
        (-0.00299, -0.00190, -0.00188, -0.00043, +0.00890, +0.00400, +0.00052, -0.00029, -0.00122, -0.00098, -0.00227, +0.00006),
        (-0.00444, -0.00191, -0.00106, +0.00087, +0.01329, +0.00371, +0.00003, -0.00032, -0.00106, -0.00068, -0.00202, +0.00012),
        (-0.00092, +0.00708, -0.00010, +0.00240, +0.00914, -0.00500, +0.00001, -0.00275, -0.00164, +0.00034, -0.00043, -0.00005),
        (-0.00050, +0.00549, +0.00207, +0.00179, +0.00111, -0.00319, -0.00002, -0.00212, -0.00109, +0.00029, -0.00037, +0.00001),
        (-0.00076, +0.00396, +0.00519, +0.00219, -0.00696, -0.00152, -0.00007, -0.00153, -0.00021, +0.00042, -0.00066, +0.00009),
        (+0.00343, -0.00007, +0.00524, -0.00694, -0.00688, -0.00288, +0.00145, -0.00132, +0.00487, +0.00466, +0.00044, +0.00005),
        (+0.00488, -0.00126, +0.00395, -0.00558, -0.01123, -0.00338, +0.00175, -0.00053, +0.00535, +0.00448, +0.00046, +0.00001),
        (+0.00830, -0.00028, +0.00406, -0.00361, -0.01074, -0.00305, +0.00309, +0.00034, +0.00621, +0.00318, -0.00091, -0.00006),
        (+0.00595, -0.00746, -0.00376, +0.00316, +0.01300, +0.00307, -0.00163, +0.00165, -0.00057, -0.00395, -0.00197, -0.00023),
        (+0.00611, -0.00720, -0.00382, +0.00216, +0.01272, +0.00477, -0.00136, +0.00144, -0.00060, -0.00438, -0.00194, -0.00019),
        (+0.00624, -0.00719, -0.00297, -0.00012, +0.01861, +0.00730, -0.00095, +0.00113, -0.00066, -0.00490, -0.00167, -0.00010),
        (+0.00003, +0.00093, -0.00050, -0.00100, -0.00046, +0.00000, +0.00012, -0.00023, +0.00015, +0.00023, -0.00097, -0.00000),
        (+0.00219, -0.00829, -0.00662, -0.00697, +0.02261, +0.00863, +0.00050, +0.00139, -0.00038, -0.00118, -0.00207, +0.00016),
        (+0.00498, -0.01283, -0.00571, -0.00784, +0.04544, +0.01431, +0.00140, -0.00102, -0.00039, -0.00206, -0.00229, +0.00054),
        (-0.01234, +0.02178, -0.00048, +0.01433, +0.02896, +0.01926, +0.00124, -0.00648, -0.00362, -0.00198, -0.00440, +0.00054),
        (-0.01333, +0.01501, -0.00055, +0.01083, +0.03667, +0.02634, +0.00042, -0.00533, -0.00404, -0.00168, -0.00406, +0.00088),
        (-0.01202, -0.00457, -0.00416, +0.00795, +0.04678, +0.04180, -0.00034, -0.00414, -0.00466, -0.00126, -0.00517, +0.00193),
    ]
)  # fmt: skip


@dataclass(frozen=True)
class CorrectionUncertainty:
    """How far a unit's band-corrected TcB can be from the nominal unit's: the largest mean
    error (mg/dL) over the structural choices of the correction's optics and the skin groups
    (_CASES), where it is, and each LED's share (its own offset alone, from the sensitivity)."""

    mg_dl: float
    variant: str
    group: str
    per_led_mg_dl: tuple[float, ...]

    @property
    def accepted(self) -> bool:
        """Within CORRECTION_UNCERTAINTY_LIMIT_MG_DL: advisory (module docstring)."""
        return self.mg_dl <= CORRECTION_UNCERTAINTY_LIMIT_MG_DL

    def culprits(self) -> tuple[int, ...]:
        """The LEDs (indices) that dominate the estimate: those whose own share is at least half
        the limit, else the largest one."""
        half = 0.5 * CORRECTION_UNCERTAINTY_LIMIT_MG_DL
        big = tuple(i for i, x in enumerate(self.per_led_mg_dl) if x >= half)
        return big or (int(np.argmax(self.per_led_mg_dl)),)

    def message(self) -> str:
        """One line for the factory operator and the gateway's log."""
        leds = ", ".join(f"{NOMINAL_LED_NM[i]:.0f} nm" for i in self.culprits())
        verdict = "within" if self.accepted else "above"
        return (
            f"the band correction may be off by {self.mg_dl:.2f} mg/dL ({self.group} skin, "
            f"{self.variant}), {verdict} the {CORRECTION_UNCERTAINTY_LIMIT_MG_DL} mg/dL limit; "
            f"mostly the LED(s) at {leds}"
        )


def _offsets(led_centre_nm: ArrayLike, led_fwhm_nm: ArrayLike) -> tuple[Floats, Floats]:
    centre = np.asarray(led_centre_nm, float)
    width = np.asarray(led_fwhm_nm, float)
    if centre.shape != (N_LEDS,) or width.shape != (N_LEDS,):
        raise ValueError(f"need {N_LEDS} LED centres and widths")
    if not (np.all(np.isfinite(centre)) and np.all(np.isfinite(width))):
        raise ValueError("LED centres and widths must be finite")
    return centre - np.asarray(NOMINAL_LED_NM), width - np.asarray(NOMINAL_FWHM_NM)


def correction_uncertainty(
    led_centre_nm: ArrayLike, led_fwhm_nm: ArrayLike, exact: bool = False
) -> CorrectionUncertainty:
    """The CorrectionUncertainty of a unit with these LED bands (at 25 C).

    exact=False: each LED's share from its secant (_SENSITIVITY_RISING / _FALLING), the shares
    added: instant, what the gateway uses for a calibration that does not carry the factory's
    value. exact=True: the correction run on the representative skins through the unit's own
    bands (corrected_bias): seconds of CPU, what the factory stores. Each LED's share is from
    the secants either way.
    """
    offsets = np.concatenate(_offsets(led_centre_nm, led_fwhm_nm))
    terms = np.where(offsets >= 0, _SENSITIVITY_RISING, _SENSITIVITY_FALLING) * offsets
    shares = np.abs(terms[:, :N_LEDS] + terms[:, N_LEDS:])
    per_led = tuple(float(x) for x in shares.max(axis=0))
    if exact:
        bias = corrected_bias(led_centre_nm, led_fwhm_nm)
    else:
        bias = terms.sum(axis=1)
    k = int(np.argmax(np.abs(bias)))
    variant, group = _CASES[k]
    return CorrectionUncertainty(float(abs(bias[k])), variant, group, per_led)


def unit_correction_uncertainty(unit: UnitCalibration) -> CorrectionUncertainty:
    """A calibrated unit's CorrectionUncertainty: the factory's value when its calibration
    carries one, else the gateway's own estimate from the unit's bands (exact=False)."""
    estimate = correction_uncertainty(unit.led_centre_nm, unit.led_fwhm_nm)
    stored = unit.correction_uncertainty_mg_dl
    if stored is None:
        return estimate
    return replace(estimate, mg_dl=stored, variant="as the factory found", group="any")
