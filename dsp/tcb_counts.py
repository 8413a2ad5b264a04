"""Raw ADC counts from one press + the unit's factory constants -> reflectance, or a flag.

reflectance = (mean of 5 flashes - mean dark)
              / (white_ref * drive factor * (1 + tempco * (T - 25 C)))

The device sets each LED's drive per press (exposure control: dark skin and blue LEDs are lit
harder so the far detector's few counts rise above the read noise) and reports it; white_ref
was measured at the factory drive. A unit with a per-unit calibration (calibration["unit"],
dsp/tcb_unit.py) has each LED's droop and temperature coefficient measured: the drive factor is
P(drive) / P(factory drive) with P(I) = I / (1 + I / I0), and tempco is per LED. Without one,
LED output is taken as proportional to the drive and the batch tempco applies to every LED.

A reading that cannot be trusted is flagged with the reason and returns NaN reflectances, so it
can never become a number downstream: no_contact, saturated, ambient_light, flashes_disagree,
temperature_out_of_range, malformed_counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from dsp.arrays import Floats
from dsp.tcb_unit import (
    droop_factor,
    is_check_phantom,
    nominal_reflectance,
    output_factor,
    phantom_check,
    self_check,
    unit_from_calibration,
)

N_LEDS = 6
N_DETECTORS = 2
N_FLASHES = 5
ADC_MAX = 65535
SATURATION_COUNTS = 65000  # the ADC's top code is 65534 (15-bit x 2); within 0.8 % = clipped
REFERENCE_TEMPERATURE_C = 25.0
TEMPERATURE_RANGE_C = (5.0, 45.0)
# Ambient light under the probe shows up as dark frames above the factory dark offset.
AMBIENT_LIMIT_COUNTS = 600.0
AMBIENT_DRIFT_LIMIT_COUNTS = 300.0  # dark before vs after: light changed during the press
# ADC noise model of one conversion (simulators/tcb_device.py, sources there): variance =
# K * light + read^2 + step^2 / 12, with K <= 2.4e-5 (shot noise through the TIA), read noise
# 2 counts (about one ADS1115 code) and an ADC step of 2 counts. Flashes must agree within it.
SHOT_VARIANCE_PER_COUNT = 2.4e-5
READ_NOISE_COUNTS = 2.0
ADC_STEP_COUNTS = 2.0
FLASH_SPREAD_SIGMAS = 6.0
FLASH_SPREAD_RELATIVE = 0.03

FLAGS = (
    "no_contact",
    "saturated",
    "ambient_light",
    "flashes_disagree",
    "temperature_out_of_range",
    "malformed_counts",
)


def _nan_pair() -> tuple[Floats, Floats]:
    return np.full(N_LEDS, np.nan), np.full(N_LEDS, np.nan)


def _calibration_arrays(calibration: Mapping[str, Any]) -> tuple[Floats, Floats, float]:
    try:
        dark = np.asarray(calibration["dark_offset"], float)
        white = np.asarray(calibration["white_ref"], float)
        tempco = float(calibration["tempco_per_c"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad factory calibration: {exc}") from exc
    if dark.shape != (N_DETECTORS,) or white.shape != (N_LEDS, N_DETECTORS):
        raise ValueError("factory calibration needs dark_offset[2] and white_ref[6][2]")
    if not (np.all(np.isfinite(white)) and np.all(white > 0) and math.isfinite(tempco)):
        raise ValueError("factory calibration white_ref must be positive and tempco finite")
    return dark, white, tempco


def _factory_drive(calibration: Mapping[str, Any]) -> Floats:
    try:
        drive = np.asarray(calibration["led_drive"], float)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad factory calibration: {exc}") from exc
    if drive.shape != (N_LEDS,) or not np.all(np.isfinite(drive)) or np.any(drive <= 0):
        raise ValueError("factory calibration needs 6 positive led_drive settings")
    return drive


def reflectance_from_counts(
    dark_before: tuple[int, int],
    dark_after: tuple[int, int],
    flashes: list[list[list[int]]],
    temperature_c: float,
    contact: bool,
    calibration: Mapping[str, Any],
    led_drive: tuple[int, ...] | list[int] | None = None,
    gain: ArrayLike | None = None,
) -> tuple[Floats, Floats, str]:
    """(near[6], far[6], flag). flag "" means usable; otherwise reflectances are NaN.

    calibration: the device-info dict of FactoryCalibration (dark_offset, white_ref,
    led_drive, tempco_per_c). A malformed calibration raises ValueError (a configuration
    error, not a bad reading). led_drive: the drive each LED used in this press, as the
    device reported it (None: the factory drive); a missing or zero drive is malformed.
    gain: (6, 2) the unit's response now relative to the factory's (the start-up self-check's
    ratio on the built-in tile), multiplying white_ref; None: 1.
    """
    dark_off, white, tempco = _calibration_arrays(calibration)
    factory_drive = _factory_drive(calibration)
    unit = unit_from_calibration(calibration)  # ValueError if malformed
    if not contact:
        return (*_nan_pair(), "no_contact")
    try:
        counts = np.asarray(flashes, dtype=float)
        d0 = np.asarray(dark_before, dtype=float)
        d1 = np.asarray(dark_after, dtype=float)
        temp = float(temperature_c)
    except (TypeError, ValueError):
        return (*_nan_pair(), "malformed_counts")
    if (
        counts.shape != (N_LEDS, N_DETECTORS, N_FLASHES)
        or d0.shape != (N_DETECTORS,)
        or d1.shape != (N_DETECTORS,)
        or not np.all(np.isfinite(counts))
        or not (np.all(np.isfinite(d0)) and np.all(np.isfinite(d1)))
        or np.any(counts < 0)
        or np.any(d0 < 0)
        or np.any(d1 < 0)
        or np.any(counts > ADC_MAX)
    ):
        return (*_nan_pair(), "malformed_counts")
    try:
        drive = factory_drive if led_drive is None else np.asarray(led_drive, dtype=float)
    except (TypeError, ValueError):
        return (*_nan_pair(), "malformed_counts")
    if drive.shape != (N_LEDS,) or not np.all(np.isfinite(drive)) or np.any(drive <= 0):
        return (*_nan_pair(), "malformed_counts")
    if (
        np.any(counts >= SATURATION_COUNTS)
        or np.any(d0 >= SATURATION_COUNTS)
        or np.any(d1 >= SATURATION_COUNTS)
    ):
        return (*_nan_pair(), "saturated")
    dark = 0.5 * (d0 + d1)
    if np.any(dark - dark_off > AMBIENT_LIMIT_COUNTS) or np.any(
        np.abs(d1 - d0) > AMBIENT_DRIFT_LIMIT_COUNTS
    ):
        return (*_nan_pair(), "ambient_light")
    if not math.isfinite(temp) or not (TEMPERATURE_RANGE_C[0] <= temp <= TEMPERATURE_RANGE_C[1]):
        return (*_nan_pair(), "temperature_out_of_range")
    mean = counts.mean(axis=2)
    spread = counts.max(axis=2) - counts.min(axis=2)
    expected_sigma = np.sqrt(
        np.maximum(mean, 0.0) * SHOT_VARIANCE_PER_COUNT
        + READ_NOISE_COUNTS**2
        + ADC_STEP_COUNTS**2 / 12.0
    )
    allowed = FLASH_SPREAD_SIGMAS * expected_sigma + FLASH_SPREAD_RELATIVE * (mean - dark)
    if np.any(spread > allowed):
        return (*_nan_pair(), "flashes_disagree")
    if unit is not None:
        drive_factor = droop_factor(drive, factory_drive, unit.droop_ma)
        scale = output_factor(temp, unit.output_tempco_per_c)
    else:
        drive_factor = drive / factory_drive
        scale = np.full(N_LEDS, 1.0 + tempco * (temp - REFERENCE_TEMPERATURE_C))
    if gain is not None:
        white = white * np.asarray(gain, float)
    reflectance = (mean - dark[None, :]) / (white * (drive_factor * scale)[:, None])
    return reflectance[:, 0].copy(), reflectance[:, 1].copy(), ""


# The reading's flags when the unit's calibration does not let it give a number (docs/mqtt.md):
NEEDS_CALIBRATION = "needs_calibration"  # no per-unit calibration, or the unit has drifted
SELF_CHECK_NEEDED = "self_check_needed"  # no start-up check on the built-in tile this boot
CHECK_PHANTOM = "check_phantom"  # a press on the check phantom: the weekly check, no baby
# Below this fraction of the factory's tile counts the probe was not in its holder at start-up.
NOT_ON_TILE = 0.3


@dataclass(frozen=True)
class CalibratedReading:
    """Reflectance carried to the nominal LED bands, or the flag that withholds it.

    check: for a press on the check phantom, {"passed": bool, "max_deviation": float}.
    """

    near: Floats
    far: Floats
    flag: str
    check: dict[str, object] | None = None


def calibrated_reflectance(
    dark_before: tuple[int, int],
    dark_after: tuple[int, int],
    flashes: list[list[list[int]]],
    temperature_c: float,
    contact: bool,
    calibration: Mapping[str, Any],
    led_drive: tuple[int, ...] | list[int] | None,
    self_check_info: Mapping[str, Any] | None,
) -> CalibratedReading:
    """What the estimator may use from one press of a unit (docs/jaundice.md).

    Without a per-unit calibration (calibration["unit"]) the reading is `needs_calibration`;
    without a start-up self-check on the built-in tile (the device info's "self_check") it is
    `self_check_needed`; a tile reading more than SELF_CHECK_LIMIT off the factory's is
    `needs_calibration`. Otherwise the counts become reflectance with the tile's ratio folded
    into the white reference; a press on the check phantom is the weekly check (flag
    `check_phantom`, its result in `check`); anything else is carried to the nominal bands.
    A malformed calibration or self-check raises ValueError.
    """
    press = {
        "dark_before": dark_before,
        "dark_after": dark_after,
        "flashes": flashes,
        "temperature_c": temperature_c,
        "contact": contact,
        "led_drive": led_drive,
    }
    return calibrated_reflectance_batch([press], calibration, self_check_info)[0]


def calibrated_reflectance_batch(
    presses: Sequence[Mapping[str, Any]],
    calibration: Mapping[str, Any],
    self_check_info: Mapping[str, Any] | None,
) -> list[CalibratedReading]:
    """calibrated_reflectance for several presses of one unit (dicts with the arguments'
    names), the band correction fitted for all of them at once."""
    nan = np.full(N_LEDS, np.nan)
    unit = unit_from_calibration(calibration)
    if unit is None:
        return [CalibratedReading(nan, nan, NEEDS_CALIBRATION) for _ in presses]
    if not self_check_info:
        return [CalibratedReading(nan, nan, SELF_CHECK_NEEDED) for _ in presses]
    try:
        check = self_check(
            self_check_info["counts"],
            [int(x) for x in self_check_info["led_drive"]],
            float(self_check_info["temperature_c"]),
            _factory_drive(calibration),
            unit,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad self-check: {exc}") from exc
    if np.all(check.ratio < NOT_ON_TILE):
        return [CalibratedReading(nan, nan, SELF_CHECK_NEEDED) for _ in presses]
    if not check.ok:
        return [CalibratedReading(nan, nan, NEEDS_CALIBRATION) for _ in presses]
    out: list[CalibratedReading] = []
    todo: list[int] = []
    for p in presses:
        near, far, flag = reflectance_from_counts(
            p["dark_before"], p["dark_after"], p["flashes"], p["temperature_c"], p["contact"],
            calibration, p.get("led_drive"), gain=check.ratio,
        )  # fmt: skip
        if not flag and is_check_phantom(near, far, unit):
            passed, deviation = phantom_check(near, far, unit)
            result: dict[str, object] = {"passed": passed, "max_deviation": round(deviation, 4)}
            out.append(CalibratedReading(nan, nan, CHECK_PHANTOM, result))
            continue
        if not flag:
            todo.append(len(out))
        out.append(CalibratedReading(near, far, flag))
    if todo:
        near = np.array([out[i].near for i in todo])
        far = np.array([out[i].far for i in todo])
        temps = np.array([float(presses[i]["temperature_c"]) for i in todo])
        near, far = nominal_reflectance(near, far, unit, temps)
        for j, i in enumerate(todo):
            out[i] = CalibratedReading(near[j], far[j], "")
    return out
