"""The jaundice meter's factory calibration over its provisioning console
(`perimon provision PORT --id ... --tcb-calibrate CERTIFICATE.json`; docs/jaundice.md, "Factory
calibration").

The operator (or the fixture's controller) puts the probe on each target in turn and confirms;
the meter measures at drives this procedure sets (console MEASURE), and the fit
(dsp.tcb_unit.calibrate_unit) turns the readings and the phantom set's certificate into the
unit's calibration, which provisioning writes to the device like any other factory calibration.
How far the unit's band correction may leave its readings off (LEDs off their nominal peaks
where skin's spectrum is steep) is estimated, stored with the calibration and printed with the
LEDs that dominate it, as a warning above the limit; it is advisory and never refuses a unit
(docs/jaundice.md, "Factory calibration" and "Limits").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from dsp.tcb_unit import (
    CORRECTION_UNCERTAINTY_LIMIT_MG_DL,
    DRIVE_MAX_CODE,
    REFERENCE_TEMPERATURE_C,
    TargetReading,
    UnitCalibration,
    calibrate_unit,
    correction_uncertainty,
    factory_drive,
    quantise_drive,
    reading_from_presses,
)
from dsp.tissue_optics import NOMINAL_LED_NM
from gateway.cli import UserError

HOT_C = 40.0  # the fixture's second temperature
PROBE_DRIVE = 100  # 10 mA: W read once at this drive to choose the factory drive
PRESSES = 3  # presses averaged per target (each is 5 flashes per LED)
GREY_MULTIPLES = (2, 4)  # the grey is also read at these multiples of the factory drive, and max


@dataclass(frozen=True)
class Step:
    """One target under the probe: "W", a phantom's name, or "tile" (the probe in its holder)."""

    target: str
    temperature_c: float

    def instruction(self) -> str:
        where = (
            "put the probe in its holder (over the built-in white tile)"
            if self.target == "tile"
            else f"press the probe on phantom {self.target}"
        )
        return f"{where}, fixture at {self.temperature_c:.0f} C"


class Console(Protocol):
    def ok(self, line: str, what: str) -> str: ...


def _measure(con: Console, target: str, drives: tuple[int, ...], presses: int) -> TargetReading:
    got = []
    for _ in range(presses):
        reply = con.ok("MEASURE " + " ".join(str(d) for d in drives), f"measurement on {target}")
        try:
            got.append(json.loads(reply))
        except ValueError:
            raise UserError(
                f"the device's measurement on {target} is not JSON: {reply!r}"
            ) from None
    try:
        return reading_from_presses(target, got)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"the device's measurement on {target} is unusable: {exc}") from None


def factory_calibration(
    con: Console,
    certificate: Mapping[str, Any],
    ready: Callable[[Step], None],
    presses: int = PRESSES,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the procedure; `ready(step)` returns once the target of `step` is under the probe.
    Returns the calibration to store on the device (dark offsets, white reference, factory
    drive, tempco and the per-unit part), or raises UserError saying what failed. The band
    correction's estimated uncertainty goes to `say` (judged)."""
    spectral = [str(n) for n in certificate.get("spectral_phantoms", [])]
    grey = str(certificate.get("grey_phantom", ""))
    if not spectral or not grey:
        raise UserError("the phantom certificate names no spectral or grey phantoms")
    cold, hot = REFERENCE_TEMPERATURE_C, HOT_C
    readings: list[TargetReading] = []
    step = Step("W", cold)
    ready(step)
    probe = (PROBE_DRIVE,) * 6
    first = _measure(con, "W", probe, 1)
    try:
        drive = factory_drive(probe, first.counts)
    except ValueError as exc:
        raise UserError(f"phantom W: {exc}") from None
    darks = []
    for temp in (cold, hot):
        for target in ("W", *spectral):
            if (target, temp) != (step.target, step.temperature_c):
                step = Step(target, temp)
                ready(step)
            readings.append(_measure(con, target, drive, presses))
        if temp == cold:
            step = Step(grey, cold)
            ready(step)
            for mult in (1, *GREY_MULTIPLES):
                readings.append(
                    _measure(con, grey, tuple(quantise_drive(d * mult) for d in drive), presses)
                )
            readings.append(_measure(con, grey, (DRIVE_MAX_CODE,) * 6, presses))
            step = Step("tile", cold)
            ready(step)
            readings.append(_measure(con, "tile", drive, presses))
            darks.append(_dark(con, drive))
    try:
        unit, white = calibrate_unit(readings, certificate)
    except ValueError as exc:
        raise UserError(f"the factory calibration failed: {exc}") from None
    unit, lines = judged(unit)
    for line in lines:
        say(line)
    return {
        "dark_offset": [int(round(x)) for x in np.mean(darks, axis=0)],
        "white_ref": [list(p) for p in white.white_ref],
        "led_drive": list(white.led_drive),
        "tempco_per_c": white.tempco_per_c,
        "unit": unit.to_dict(),
    }


def judged(unit: UnitCalibration) -> tuple[UnitCalibration, list[str]]:
    """The unit with the estimated uncertainty of its band correction stored
    (dsp.tcb_unit.correction_uncertainty, exact), and the lines to show the operator: the
    estimate with the LEDs that dominate it, and a warning when it is above the limit. Never a
    refusal: the estimate did not predict which units miss the accuracy target on an
    independent skin model (docs/jaundice.md, "Limits")."""
    found = correction_uncertainty(unit.led_centre_nm, unit.led_fwhm_nm, exact=True)
    leds = ", ".join(
        f"{NOMINAL_LED_NM[i]:.0f} nm LED at {unit.led_centre_nm[i]:.1f} nm"
        for i in found.culprits()
    )
    stored = round(found.mg_dl, 3)  # as UnitCalibration.to_dict stores it: the same figure shown
    lines = [
        f"band correction: estimated uncertainty {stored:.2f} mg/dL ({found.group} skin, "
        f"{found.variant}); mostly the {leds}"
    ]
    if not found.accepted:
        lines.append(
            f"warning: above the {CORRECTION_UNCERTAINTY_LIMIT_MG_DL} mg/dL limit (estimated; "
            "not validated on an independent skin model): the unit is calibrated and stored; "
            f"rebinning the {leds} may lower it"
        )
    return replace(unit, correction_uncertainty_mg_dl=stored), lines


def _dark(con: Console, drive: tuple[int, ...]) -> list[float]:
    """The detectors' dark offsets: the dark frames of a measurement (LEDs off)."""
    press = json.loads(con.ok("MEASURE " + " ".join(str(d) for d in drive), "dark measurement"))
    return [0.5 * (a + b) for a, b in zip(press["dark_before"], press["dark_after"], strict=True)]


def load_certificate(path: str) -> dict[str, Any]:
    """The phantom set's certificate (JSON, simulators/tcb_phantoms.py describes its form)."""
    from pathlib import Path

    try:
        cert = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(cert, dict) or "phantoms" not in cert or "wavelength_nm" not in cert:
        raise UserError(f"{path}: not a phantom certificate (no phantoms or wavelength_nm)")
    return cert


def operator_ready(step: Step) -> None:
    """Ask the operator to put the probe on the step's target and wait for Enter."""
    input(f"{step.instruction()}; then press Enter ")
