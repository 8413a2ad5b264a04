"""When to measure bilirubin again, after a TcB or TSB below the phototherapy threshold.

Kemper AR, Newman TB, Slaughter JL, et al. Clinical Practice Guideline Revision: Management of
Hyperbilirubinemia in the Newborn Infant 35 or More Weeks of Gestation. Pediatrics
2022;150(3):e2022058859. The guideline's follow-up algorithm (its Figure 7, the table of the
difference between the TcB or TSB and the phototherapy threshold) sets the next measurement by
that difference and by the baby's age:

| below phototherapy by (mg/dL) | age       | next measurement                                   |
|-------------------------------|-----------|----------------------------------------------------|
| 0.1-1.9                       | < 24 h    | delay discharge, consider phototherapy; TSB in 4-8 h |
| 0.1-1.9                       | >= 24 h   | TSB in 4-24 h (or home phototherapy, or discharge with close follow-up) |
| 2.0-3.4                       | any       | TSB or TcB in 4-24 h                               |
| 3.5-5.4                       | any       | TSB or TcB in 1-2 days                             |
| 5.5-6.9                       | < 72 h    | follow-up within 2 days; TcB or TSB by clinical judgement |
| 5.5-6.9                       | >= 72 h   | clinical judgement                                 |
| >= 7.0                        | < 72 h    | follow-up within 3 days; TcB or TSB by clinical judgement |
| >= 7.0                        | >= 72 h   | clinical judgement                                 |

Transcribed from the guideline as reproduced by two independent open-source implementations
that agree on every band and age split (the bands above, in 0.1 mg/dL steps); not yet checked
against the journal's figure itself: do that before clinical use. At or above the phototherapy
threshold the table does not apply: treatment and a serum bilirubin are the next step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Lower edges of the bands of the difference below the phototherapy threshold (mg/dL).
NEAR_BELOW_MG_DL = 0.0  # 0.1-1.9
CLOSE_BELOW_MG_DL = 2.0  # 2.0-3.4
MODERATE_BELOW_MG_DL = 3.5  # 3.5-5.4
FAR_BELOW_MG_DL = 5.5  # 5.5-6.9
VERY_FAR_BELOW_MG_DL = 7.0  # >= 7.0
# Age splits of the algorithm (hours).
FIRST_DAY_H = 24.0
FIRST_THREE_DAYS_H = 72.0


@dataclass(frozen=True)
class FollowUp:
    """The next bilirubin measurement after one reading.

    `earliest_h` and `latest_h` are hours after the reading (None: the guideline leaves the
    time to clinical judgement); `measure` is what to measure ("TSB", "TSB or TcB", "" when the
    table does not apply); `action` says it in the guideline's words."""

    band: str
    measure: str
    earliest_h: float | None
    latest_h: float | None
    action: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def follow_up(below_phototherapy_mg_dl: float, age_hours: float) -> FollowUp:
    """AAP 2022 follow-up for a reading `below_phototherapy_mg_dl` under the phototherapy
    threshold (threshold minus reading; 0 or less: at or above it) at `age_hours`."""
    margin = float(below_phototherapy_mg_dl)
    age = float(age_hours)
    if not (math.isfinite(margin) and math.isfinite(age)) or age < 0:
        raise ValueError(f"follow_up needs a finite margin and age >= 0, got {margin}, {age}")
    if margin <= NEAR_BELOW_MG_DL:
        return FollowUp(
            "at_or_above", "", None, None,
            "at or above the phototherapy threshold: treat, and confirm with a serum bilirubin",
        )  # fmt: skip
    if margin < CLOSE_BELOW_MG_DL:
        if age < FIRST_DAY_H:
            return FollowUp(
                "0.1-1.9", "TSB", 4.0, 8.0,
                "delay discharge and consider phototherapy; TSB in 4-8 h",
            )  # fmt: skip
        return FollowUp(
            "0.1-1.9", "TSB", 4.0, 24.0,
            "TSB in 4-24 h (or: delay discharge and consider phototherapy, home phototherapy, "
            "or discharge with close follow-up)",
        )  # fmt: skip
    if margin < MODERATE_BELOW_MG_DL:
        return FollowUp("2.0-3.4", "TSB or TcB", 4.0, 24.0, "TSB or TcB in 4-24 h")
    if margin < FAR_BELOW_MG_DL:
        return FollowUp("3.5-5.4", "TSB or TcB", 24.0, 48.0, "TSB or TcB in 1-2 days")
    band = "5.5-6.9" if margin < VERY_FAR_BELOW_MG_DL else "7.0+"
    if age >= FIRST_THREE_DAYS_H:
        return FollowUp(band, "", None, None, "follow-up by clinical judgement")
    days = 2 if band == "5.5-6.9" else 3
    return FollowUp(
        band, "TcB or TSB", 0.0, 24.0 * days,
        f"follow-up within {days} days; TcB or TSB by clinical judgement",
    )  # fmt: skip
