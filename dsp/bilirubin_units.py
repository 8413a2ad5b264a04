"""Bilirubin amounts as a ward reads them: mg/dL (the guideline's unit, and the unit every
value is computed and published in) or umol/L (Chinese and most European wards).

A ward chooses one unit per gateway (`[web] bilirubin_unit`); every amount shown to it, the
reading, the thresholds and the distances to them, carries that unit, so a number is never
read in the other one. Pure functions: the nurse view's server composes its text with them.
"""

from __future__ import annotations

import math

MG_DL = "mg/dL"
UMOL_L = "umol/L"
UNITS = (MG_DL, UMOL_L)
# Bilirubin's molar mass 584.66 g/mol: 1 mg/dL = 10 mg/L / 584.66 g/mol = 17.1 umol/L (the
# factor the AAP 2022 guideline and Chinese laboratories use).
MG_DL_TO_UMOL_L = 17.1
_SHOWN = {MG_DL: "mg/dL", UMOL_L: "µmol/L"}  # as printed on the page


def _check_unit(unit: str) -> str:
    if unit not in UNITS:
        raise ValueError(f"bilirubin unit must be one of {', '.join(UNITS)}, got {unit!r}")
    return unit


def to_unit(mg_dl: float, unit: str) -> float:
    """A value in mg/dL expressed in `unit`, unrounded."""
    return mg_dl * MG_DL_TO_UMOL_L if _check_unit(unit) == UMOL_L else float(mg_dl)


def from_unit(value: float, unit: str) -> float:
    """A value given in `unit` back in mg/dL."""
    return value / MG_DL_TO_UMOL_L if _check_unit(unit) == UMOL_L else float(value)


def unit_label(unit: str) -> str:
    """The unit as printed: "mg/dL" or "µmol/L"."""
    return _SHOWN[_check_unit(unit)]


def format_bilirubin(mg_dl: float, unit: str) -> str:
    """The amount as printed, "14.7 mg/dL" or "251 µmol/L": mg/dL to 0.1 (the tables' resolution), umol/L to 1
    (0.1 mg/dL is 1.7 umol/L: a decimal would claim a precision no reading has)."""
    if not math.isfinite(mg_dl):
        raise ValueError(f"a bilirubin amount must be finite, got {mg_dl}")
    value = to_unit(mg_dl, unit)
    shown = f"{value:.1f}" if unit == MG_DL else f"{round(value):d}"
    if shown in ("-0.0", "-0"):
        shown = shown[1:]
    return f"{shown} {unit_label(unit)}"


def threshold_phrase(tcb_mg_dl: float, threshold_mg_dl: float, line: str, unit: str) -> str:
    """Where a reading stands against a threshold line, in words a nurse reads at a glance:
    "below phototherapy by 7.3 mg/dL", "above exchange by 12 µmol/L", "at phototherapy" (a
    difference that rounds to nothing in the unit). Never a bare signed number."""
    diff = tcb_mg_dl - threshold_mg_dl
    amount = format_bilirubin(abs(diff), unit)
    if amount.split(" ")[0] in ("0.0", "0"):
        return f"at {line}"
    return f"{'above' if diff > 0 else 'below'} {line} by {amount}"
