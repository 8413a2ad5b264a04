"""Clinical meaning of a bilirubin value for one baby at one age.

Two published references, both for newborns of 35 or more weeks' gestation:

* Bhutani VK, Johnson L, Sivieri EM. Predictive ability of a predischarge hour-specific serum
  bilirubin for subsequent significant hyperbilirubinemia in healthy term and near-term newborns.
  Pediatrics 1999;103:6-14, Figure 2 (40th, 75th and 95th percentile tracks). The curves were
  read from the published figure every 4 h from 12 to 148 h; the digitisation used here is the
  one published in the open-source Biligram tool (D. Rosenberg, js/biligram.js). The nomogram
  is not defined before 12 h; after 148 h the last value is held.
* Kemper AR, Newman TB, Slaughter JL, et al. Clinical Practice Guideline Revision: Management of
  Hyperbilirubinemia in the Newborn Infant 35 or More Weeks of Gestation. Pediatrics
  2022;150(3):e2022058859. Phototherapy thresholds: Figure 2 (no neurotoxicity risk factor other
  than gestational age) and Figure 3 (with risk factors) and supplemental Tables 1 and 2;
  exchange-transfusion thresholds: Figures 4 and 5 and supplemental Tables 3 and 4. The
  supplemental tables give the threshold for every completed hour of age from 0 to 336 h.

How the AAP values were obtained: the journal and its supplement could not be fetched from this
build environment. The hourly values were transcribed from a public machine-readable copy of
the four supplemental tables (open-source project mwieler/bili-calculator,
data/aap-reference-tables/*.json). That copy numbers its rows 1..337; the same project's
separate 38-week file numbers them 0..336 with identical values, and the guideline's own notes
("the threshold >=151 h ... is 18.2 mg/dL", "plateau at 336 h") agree with 0..336, so the rows
are stored here as hours 0..336. Each curve is stored as its 96 hourly values for 0-95 h
followed by the hours at which the slowly rising tail steps up by 0.1 mg/dL, which reproduces
every tabulated hour exactly. Before clinical release these must be checked against the
published supplement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

MAX_TABLE_HOUR = 336
MG_DL_TO_UMOL_L = 17.1

# --- Bhutani 1999, Figure 2: hour-specific percentile tracks (TSB, mg/dL), every 4 h from 12 h.
BHUTANI_START_HOUR = 12
BHUTANI_STEP_HOURS = 4
BHUTANI_P95 = (
    7.1, 7.2, 7.4, 7.8, 8.9, 10.0, 11.1, 12.2, 12.5, 13.2, 13.8, 14.4, 15.2, 15.4, 15.6, 15.9,
    16.2, 16.4, 16.7, 17.0, 17.2, 17.4, 17.4, 17.5, 17.5, 17.5, 17.6, 17.7, 17.6, 17.5, 17.4,
    17.4, 17.3, 17.3, 17.4,
)  # fmt: skip
BHUTANI_P75 = (
    5.1, 5.5, 5.9, 6.1, 7.0, 8.0, 8.9, 9.9, 10.3, 10.8, 11.3, 12.0, 12.6, 12.9, 13.1, 13.4,
    13.8, 14.3, 14.7, 14.7, 15.0, 15.2, 15.3, 15.4, 15.5, 15.6, 15.7, 15.8, 15.7, 15.6, 15.5,
    15.4, 15.3, 15.2, 15.3,
)  # fmt: skip
BHUTANI_P40 = (
    3.9, 4.3, 4.7, 4.9, 5.5, 6.3, 7.0, 7.8, 8.1, 8.6, 9.0, 9.3, 9.6, 10.2, 10.7, 11.2, 11.3,
    11.4, 11.6, 11.8, 12.2, 12.3, 12.5, 12.7, 12.8, 13.0, 13.1, 13.2, 13.2, 13.2, 13.2, 13.2,
    13.2, 13.2, 13.0,
)  # fmt: skip


def _curve(first_96h: tuple[float, ...], steps: tuple[tuple[int, float], ...]) -> np.ndarray:
    """Expand (hourly values 0-95 h, (hour, value) steps from 96 h) to 337 hourly values."""
    if len(first_96h) != 96:
        raise ValueError("an AAP curve needs 96 hourly values for 0-95 h")
    out = np.empty(MAX_TABLE_HOUR + 1)
    out[:96] = first_96h
    value = first_96h[-1]
    step_at = dict(steps)
    for hour in range(96, MAX_TABLE_HOUR + 1):
        value = step_at.get(hour, value)
        out[hour] = value
    return out


# --- AAP 2022 supplemental Table 1 / Figure 2: phototherapy, no neurotoxicity risk factor.
# Key: completed weeks of gestation (40 means 40 or more).
PHOTOTHERAPY_NO_RISK = {
    35: _curve(
        (6.4, 6.6, 6.8, 7, 7.2, 7.4, 7.6, 7.8, 7.9, 8.1, 8.3, 8.5, 8.7, 8.9, 9, 9.2, 9.4, 9.6,
         9.8, 9.9, 10.1, 10.3, 10.4, 10.6,
         10.6, 10.8, 10.9, 11.1, 11.3, 11.4, 11.6, 11.7, 11.9, 12, 12.2, 12.3, 12.5, 12.6, 12.8,
         12.9, 13.1, 13.2, 13.4, 13.5, 13.6, 13.8, 13.9, 14,
         14.2, 14.3, 14.4, 14.5, 14.7, 14.8, 14.9, 15, 15.1, 15.3, 15.4, 15.5, 15.6, 15.7, 15.8,
         15.9, 16, 16.1, 16.2, 16.3, 16.4, 16.5, 16.6, 16.7,
         16.8, 16.9, 17, 17.1, 17.2, 17.3, 17.4, 17.5, 17.5, 17.6, 17.7, 17.8, 17.8, 17.9, 18,
         18.1, 18.1, 18.2, 18.3, 18.3, 18.4, 18.5, 18.5, 18.6),
        ((96, 18.6), (106, 18.7), (129, 18.8), (152, 18.9), (175, 19.0), (199, 19.1),
         (221, 19.2), (243, 19.3), (269, 19.4), (293, 19.5), (312, 19.6)),
    ),
    36: _curve(
        (6.9, 7.1, 7.3, 7.5, 7.7, 7.9, 8.1, 8.3, 8.5, 8.7, 8.8, 9, 9.2, 9.4, 9.6, 9.8, 9.9, 10.1,
         10.3, 10.5, 10.6, 10.8, 11, 11.2,
         11.2, 11.3, 11.5, 11.7, 11.8, 12, 12.1, 12.3, 12.5, 12.6, 12.8, 12.9, 13.1, 13.2, 13.4,
         13.5, 13.7, 13.8, 13.9, 14.1, 14.2, 14.4, 14.5, 14.6,
         14.8, 14.9, 15, 15.1, 15.3, 15.4, 15.5, 15.6, 15.8, 15.9, 16, 16.1, 16.2, 16.3, 16.5,
         16.6, 16.7, 16.8, 16.9, 17, 17.1, 17.2, 17.3, 17.4,
         17.5, 17.6, 17.7, 17.8, 17.9, 17.9, 18, 18.1, 18.2, 18.3, 18.4, 18.4, 18.5, 18.6, 18.7,
         18.8, 18.8, 18.9, 19, 19, 19.1, 19.2, 19.2, 19.3),
        ((96, 19.3), (101, 19.4), (124, 19.5), (147, 19.6), (171, 19.7), (194, 19.8),
         (218, 19.9), (241, 20.0), (265, 20.1), (288, 20.2), (312, 20.4)),
    ),
    37: _curve(
        (7.4, 7.6, 7.8, 8, 8.2, 8.4, 8.6, 8.8, 9, 9.2, 9.4, 9.6, 9.8, 9.9, 10.1, 10.3, 10.5, 10.7,
         10.8, 11, 11.2, 11.4, 11.5, 11.7,
         11.7, 11.9, 12.1, 12.2, 12.4, 12.5, 12.7, 12.9, 13, 13.2, 13.3, 13.5, 13.6, 13.8, 13.9,
         14.1, 14.2, 14.4, 14.5, 14.7, 14.8, 15, 15.1, 15.2,
         15.4, 15.5, 15.6, 15.8, 15.9, 16, 16.1, 16.3, 16.4, 16.5, 16.6, 16.7, 16.9, 17, 17.1,
         17.2, 17.3, 17.4, 17.5, 17.6, 17.7, 17.8, 17.9, 18,
         18.1, 18.2, 18.3, 18.4, 18.5, 18.6, 18.7, 18.8, 18.9, 19, 19, 19.1, 19.2, 19.3, 19.4,
         19.4, 19.5, 19.6, 19.7, 19.7, 19.8, 19.9, 19.9, 20),
        ((96, 20.0), (97, 20.1), (120, 20.2), (143, 20.3), (167, 20.4), (190, 20.5),
         (213, 20.6), (237, 20.7), (261, 20.8), (285, 20.9), (307, 21.0), (312, 21.1)),
    ),
    38: _curve(
        (7.9, 8.1, 8.3, 8.5, 8.7, 8.9, 9.1, 9.3, 9.5, 9.7, 9.9, 10.1, 10.3, 10.5, 10.7, 10.8, 11,
         11.2, 11.4, 11.6, 11.7, 11.9, 12.1, 12.3,
         12.3, 12.4, 12.6, 12.8, 12.9, 13.1, 13.3, 13.4, 13.6, 13.8, 13.9, 14.1, 14.2, 14.4, 14.5,
         14.7, 14.8, 15, 15.1, 15.3, 15.4, 15.6, 15.7, 15.8,
         16, 16.1, 16.2, 16.4, 16.5, 16.6, 16.8, 16.9, 17, 17.1, 17.3, 17.4, 17.5, 17.6, 17.7,
         17.8, 17.9, 18.1, 18.2, 18.3, 18.4, 18.5, 18.6, 18.7,
         18.8, 18.9, 19, 19.1, 19.2, 19.3, 19.4, 19.5, 19.5, 19.6, 19.7, 19.8, 19.9, 20, 20,
         20.1, 20.2, 20.3, 20.3, 20.4, 20.5, 20.6, 20.6, 20.7),
        ((96, 20.7), (97, 20.8), (118, 20.9), (142, 21.0), (166, 21.1), (189, 21.2),
         (213, 21.3), (237, 21.4), (254, 21.5), (277, 21.6), (301, 21.7), (318, 21.8)),
    ),
    39: _curve(
        (8.4, 8.6, 8.8, 9, 9.3, 9.5, 9.7, 9.9, 10, 10.2, 10.4, 10.6, 10.8, 11, 11.2, 11.4, 11.6,
         11.8, 11.9, 12.1, 12.3, 12.5, 12.7, 12.7,
         12.8, 13, 13.2, 13.3, 13.5, 13.7, 13.8, 14, 14.2, 14.3, 14.5, 14.7, 14.8, 15, 15.1,
         15.3, 15.4, 15.6, 15.7, 15.9, 16, 16.2, 16.3, 16.4,
         16.6, 16.7, 16.8, 17, 17.1, 17.2, 17.4, 17.5, 17.6, 17.8, 17.9, 18, 18.1, 18.2, 18.4,
         18.5, 18.6, 18.7, 18.8, 18.9, 19, 19.1, 19.2, 19.3,
         19.5, 19.6, 19.7, 19.7, 19.8, 19.9, 20, 20.1, 20.2, 20.3, 20.4, 20.5, 20.6, 20.6, 20.7,
         20.8, 20.9, 21, 21, 21.1, 21.2, 21.3, 21.3, 21.4),
        ((96, 21.5), (111, 21.6), (134, 21.7), (157, 21.8)),
    ),
    40: _curve(
        (8.9, 9.1, 9.3, 9.6, 9.8, 10, 10.2, 10.4, 10.5, 10.7, 10.9, 11.1, 11.3, 11.5, 11.7, 11.9,
         12.1, 12.2, 12.4, 12.6, 12.8, 13, 13.1, 13.3,
         13.3, 13.5, 13.6, 13.8, 14, 14.1, 14.3, 14.5, 14.6, 14.8, 15, 15.1, 15.3, 15.4, 15.6,
         15.7, 15.9, 16, 16.2, 16.3, 16.4, 16.6, 16.7, 16.9,
         17, 17.1, 17.3, 17.4, 17.5, 17.7, 17.8, 17.9, 18, 18.2, 18.3, 18.4, 18.5, 18.6, 18.8,
         18.9, 19, 19.1, 19.2, 19.3, 19.4, 19.6, 19.7, 19.7,
         19.8, 19.9, 20, 20.1, 20.2, 20.3, 20.4, 20.5, 20.6, 20.7, 20.7, 20.8, 20.9, 21, 21.1,
         21.1, 21.2, 21.3, 21.4, 21.4, 21.5, 21.6, 21.6, 21.7),
        ((96, 21.8),),
    ),
}  # fmt: skip

# --- AAP 2022 supplemental Table 2 / Figure 3: phototherapy with a neurotoxicity risk factor.
# Key: completed weeks (38 means 38 or more).
PHOTOTHERAPY_WITH_RISK = {
    35: _curve(
        (4.9, 5.1, 5.3, 5.5, 5.6, 5.8, 6, 6.2, 6.4, 6.5, 6.7, 6.9, 7.1, 7.2, 7.4, 7.6, 7.7, 7.9,
         8.1, 8.2, 8.4, 8.6, 8.7, 8.9,
         8.9, 9, 9.2, 9.3, 9.5, 9.6, 9.8, 9.9, 10.1, 10.2, 10.3, 10.5, 10.6, 10.8, 10.9, 11, 11.2,
         11.3, 11.4, 11.5, 11.7, 11.8, 11.9, 12,
         12.2, 12.3, 12.4, 12.5, 12.6, 12.7, 12.8, 13, 13.1, 13.2, 13.3, 13.4, 13.5, 13.6, 13.7,
         13.8, 13.9, 14, 14.1, 14.2, 14.2, 14.3, 14.4, 14.5,
         14.6, 14.7, 14.8, 14.8, 14.9, 15, 15.1, 15.1, 15.2, 15.3, 15.3, 15.4, 15.5, 15.5, 15.6,
         15.7, 15.7, 15.8, 15.8, 15.9, 15.9, 16, 16.1, 16.1),
        ((96, 16.1), (97, 16.2), (116, 16.3), (135, 16.4), (156, 16.5), (174, 16.6),
         (194, 16.7), (214, 16.8), (232, 16.9), (250, 17.0), (268, 17.1), (292, 17.2),
         (311, 17.3), (330, 17.4)),
    ),
    36: _curve(
        (5.4, 5.6, 5.8, 6, 6.2, 6.3, 6.5, 6.7, 6.9, 7.1, 7.3, 7.4, 7.6, 7.8, 8, 8.1, 8.3, 8.5,
         8.6, 8.8, 9, 9.1, 9.3, 9.4,
         9.4, 9.6, 9.8, 9.9, 10.1, 10.2, 10.4, 10.5, 10.7, 10.8, 11, 11.1, 11.2, 11.4, 11.5,
         11.7, 11.8, 11.9, 12.1, 12.2, 12.3, 12.5, 12.6, 12.7,
         12.8, 13, 13.1, 13.2, 13.3, 13.4, 13.5, 13.7, 13.8, 13.9, 14, 14.1, 14.2, 14.3, 14.4,
         14.5, 14.6, 14.7, 14.8, 14.9, 15, 15.1, 15.2, 15.3,
         15.4, 15.4, 15.5, 15.6, 15.7, 15.8, 15.8, 15.9, 16, 16.1, 16.1, 16.2, 16.3, 16.4, 16.4,
         16.5, 16.6, 16.6, 16.7, 16.7, 16.8, 16.8, 16.9, 17),
        ((96, 17.0), (104, 17.1), (124, 17.2), (143, 17.3), (164, 17.4), (180, 17.5),
         (202, 17.6), (221, 17.7), (241, 17.8), (260, 17.9), (276, 18.0), (298, 18.1),
         (318, 18.2)),
    ),
    37: _curve(
        (5.9, 6.1, 6.3, 6.5, 6.7, 6.9, 7, 7.2, 7.4, 7.6, 7.8, 8, 8.1, 8.3, 8.5, 8.7, 8.9, 9, 9.2,
         9.4, 9.5, 9.7, 9.9, 10,
         10, 10.2, 10.4, 10.5, 10.7, 10.8, 11, 11.1, 11.3, 11.4, 11.6, 11.7, 11.9, 12, 12.2,
         12.3, 12.4, 12.6, 12.7, 12.9, 13, 13.1, 13.2, 13.4,
         13.5, 13.6, 13.8, 13.9, 14, 14.1, 14.2, 14.4, 14.5, 14.6, 14.7, 14.8, 14.9, 15, 15.1,
         15.2, 15.3, 15.4, 15.5, 15.6, 15.7, 15.8, 15.9, 16,
         16.1, 16.2, 16.3, 16.4, 16.5, 16.6, 16.6, 16.7, 16.8, 16.9, 17, 17, 17.1, 17.2, 17.2,
         17.3, 17.4, 17.4, 17.5, 17.6, 17.6, 17.7, 17.8, 17.8),
        ((96, 17.9), (113, 18.0), (131, 18.1), (151, 18.2)),
    ),
    38: _curve(
        (6.4, 6.6, 6.8, 7, 7.2, 7.3, 7.5, 7.7, 7.9, 8.1, 8.3, 8.5, 8.6, 8.8, 9, 9.2, 9.4, 9.5,
         9.7, 9.9, 10, 10.2, 10.4, 10.5,
         10.5, 10.7, 10.8, 11, 11.2, 11.3, 11.5, 11.6, 11.8, 11.9, 12.1, 12.2, 12.4, 12.5, 12.7,
         12.8, 12.9, 13.1, 13.2, 13.3, 13.5, 13.6, 13.7, 13.9,
         14, 14.1, 14.2, 14.4, 14.5, 14.6, 14.7, 14.8, 14.9, 15.1, 15.2, 15.3, 15.4, 15.5, 15.6,
         15.7, 15.8, 15.9, 16, 16.1, 16.2, 16.3, 16.4, 16.5,
         16.6, 16.6, 16.7, 16.8, 16.9, 17, 17.1, 17.1, 17.2, 17.3, 17.4, 17.4, 17.5, 17.6, 17.6,
         17.7, 17.8, 17.8, 17.9, 18, 18, 18.1, 18.1, 18.2),
        ((96, 18.2),),
    ),
}  # fmt: skip

# --- AAP 2022 supplemental Table 3 / Figure 4: exchange transfusion, no risk factor.
EXCHANGE_NO_RISK = {
    35: _curve(
        (14.9, 15, 15.1, 15.3, 15.4, 15.6, 15.7, 15.8, 16, 16.1, 16.2, 16.4, 16.5, 16.6, 16.8,
         16.9, 17, 17.2, 17.3, 17.4, 17.5, 17.7, 17.8, 17.9,
         18, 18.2, 18.3, 18.4, 18.5, 18.7, 18.8, 18.9, 19, 19.1, 19.2, 19.4, 19.5, 19.6, 19.7,
         19.8, 19.9, 20, 20.1, 20.2, 20.3, 20.5, 20.6, 20.7,
         20.8, 20.9, 21, 21.1, 21.2, 21.3, 21.4, 21.5, 21.6, 21.7, 21.7, 21.8, 21.9, 22, 22.1,
         22.2, 22.3, 22.4, 22.5, 22.6, 22.6, 22.7, 22.8, 22.9,
         23, 23.1, 23.1, 23.2, 23.3, 23.4, 23.4, 23.5, 23.6, 23.7, 23.7, 23.8, 23.9, 23.9, 24,
         24.1, 24.1, 24.2, 24.3, 24.3, 24.4, 24.4, 24.5, 24.5),
        ((96, 24.5), (102, 24.6), (113, 24.7), (124, 24.8), (137, 24.9), (147, 25.0),
         (158, 25.1), (169, 25.2), (181, 25.3), (193, 25.4), (206, 25.5), (218, 25.6),
         (231, 25.7), (243, 25.8), (256, 25.9), (268, 26.0), (281, 26.1), (294, 26.2),
         (306, 26.3)),
    ),
    36: _curve(
        (15.9, 16.1, 16.2, 16.4, 16.5, 16.7, 16.8, 16.9, 17.1, 17.2, 17.4, 17.5, 17.7, 17.8,
         17.9, 18.1, 18.2, 18.3, 18.5, 18.6, 18.7, 18.9, 19, 19,
         19.1, 19.2, 19.4, 19.5, 19.6, 19.7, 19.9, 20, 20.1, 20.2, 20.4, 20.6, 20.7, 20.8, 20.9,
         21, 21.2, 21.3, 21.4, 21.5, 21.6, 21.7, 21.8, 21.9,
         22, 22.1, 22.2, 22.3, 22.4, 22.5, 22.6, 22.7, 22.8, 22.9, 23, 23.1, 23.2, 23.2, 23.3,
         23.4, 23.5, 23.6, 23.7, 23.8, 23.8, 23.9, 24, 24.1,
         24.1, 24.2, 24.3, 24.4, 24.4, 24.5, 24.6, 24.6, 24.7, 24.8, 24.8, 24.9, 25, 25, 25.1,
         25.2, 25.2, 25.3, 25.3, 25.4, 25.4, 25.5, 25.5, 25.5),
        ((96, 25.5), (97, 25.6), (111, 25.7), (124, 25.8), (140, 25.9), (153, 26.0),
         (169, 26.1), (182, 26.2), (194, 26.3), (209, 26.4), (225, 26.5), (240, 26.6),
         (257, 26.7), (276, 26.8), (296, 26.9), (312, 27.0)),
    ),
    37: _curve(
        (17, 17.1, 17.3, 17.5, 17.6, 17.8, 17.9, 18.1, 18.2, 18.4, 18.5, 18.7, 18.8, 18.9, 19.1,
         19.2, 19.4, 19.5, 19.6, 19.8, 19.9, 20.1, 20.2, 20.3,
         20.5, 20.6, 20.7, 20.8, 21, 21.1, 21.2, 21.3, 21.5, 21.6, 21.7, 21.8, 21.9, 22.1, 22.2,
         22.3, 22.4, 22.5, 22.6, 22.7, 22.8, 22.9, 23, 23.1,
         23.2, 23.3, 23.4, 23.5, 23.6, 23.7, 23.8, 23.9, 24, 24.1, 24.2, 24.3, 24.4, 24.5, 24.5,
         24.6, 24.7, 24.8, 24.9, 24.9, 25, 25.1, 25.2, 25.2,
         25.3, 25.4, 25.5, 25.5, 25.6, 25.7, 25.7, 25.8, 25.8, 25.9, 26, 26, 26.1, 26.1, 26.2,
         26.2, 26.3, 26.3, 26.4, 26.4, 26.5, 26.5, 26.5, 26.6),
        ((96, 26.6), (106, 26.7), (122, 26.8), (139, 26.9), (151, 27.0)),
    ),
    38: _curve(
        (18, 18.2, 18.4, 18.5, 18.7, 18.8, 19, 19.1, 19.3, 19.4, 19.6, 19.7, 19.9, 20, 20.1,
         20.3, 20.4, 20.6, 20.7, 20.8, 21, 21.1, 21.2, 21.4,
         21.5, 21.6, 21.7, 21.9, 22, 22.1, 22.2, 22.3, 22.4, 22.6, 22.7, 22.8, 22.9, 23, 23.1,
         23.2, 23.3, 23.4, 23.5, 23.6, 23.7, 23.8, 23.9, 24,
         24.1, 24.2, 24.3, 24.4, 24.5, 24.6, 24.7, 24.7, 24.8, 24.9, 25, 25.1, 25.2, 25.2, 25.3,
         25.4, 25.5, 25.5, 25.6, 25.7, 25.7, 25.8, 25.9, 25.9,
         26, 26, 26.1, 26.2, 26.2, 26.3, 26.3, 26.4, 26.4, 26.5, 26.5, 26.6, 26.6, 26.7, 26.7,
         26.7, 26.8, 26.8, 26.9, 26.9, 26.9, 27, 27, 27),
        (),
    ),
}  # fmt: skip

# --- AAP 2022 supplemental Table 4 / Figure 5: exchange transfusion with a risk factor.
EXCHANGE_WITH_RISK = {
    35: _curve(
        (13.1, 13.3, 13.4, 13.6, 13.7, 13.8, 14, 14.1, 14.3, 14.4, 14.5, 14.6, 14.8, 14.9, 15,
         15.1, 15.3, 15.4, 15.5, 15.6, 15.8, 15.9, 16, 16.1,
         16.2, 16.3, 16.4, 16.5, 16.6, 16.8, 16.9, 17, 17.1, 17.2, 17.3, 17.4, 17.5, 17.6, 17.7,
         17.7, 17.8, 17.9, 18, 18.1, 18.2, 18.3, 18.4, 18.5,
         18.5, 18.6, 18.7, 18.8, 18.9, 18.9, 19, 19.1, 19.2, 19.2, 19.3, 19.4, 19.4, 19.5, 19.6,
         19.6, 19.7, 19.8, 19.8, 19.9, 19.9, 20, 20.1, 20.1,
         20.2, 20.2, 20.3, 20.3, 20.4, 20.4, 20.5, 20.5, 20.6, 20.6, 20.6, 20.7, 20.7, 20.8,
         20.8, 20.8, 20.9, 20.9, 20.9, 21, 21, 21, 21.1, 21.1),
        ((96, 21.1), (103, 21.2), (113, 21.3), (124, 21.4), (136, 21.5), (147, 21.6),
         (160, 21.7), (170, 21.8), (183, 21.9), (194, 22.0), (207, 22.1), (219, 22.2),
         (234, 22.3), (246, 22.4), (259, 22.5), (271, 22.6), (284, 22.7), (299, 22.8),
         (312, 22.9)),
    ),
    36: _curve(
        (13.7, 13.9, 14, 14.1, 14.3, 14.4, 14.5, 14.7, 14.8, 14.9, 15.1, 15.2, 15.3, 15.4, 15.6,
         15.7, 15.8, 15.9, 16.1, 16.2, 16.3, 16.4, 16.5, 16.6,
         16.8, 16.9, 17, 17.1, 17.2, 17.3, 17.4, 17.5, 17.6, 17.7, 17.8, 17.9, 18, 18.1, 18.2,
         18.3, 18.4, 18.5, 18.6, 18.7, 18.8, 18.9, 19, 19.1,
         19.2, 19.2, 19.3, 19.4, 19.5, 19.6, 19.7, 19.7, 19.8, 19.9, 20, 20.1, 20.1, 20.2, 20.3,
         20.3, 20.4, 20.5, 20.6, 20.6, 20.7, 20.8, 20.8, 20.9,
         20.9, 21, 21.1, 21.1, 21.2, 21.2, 21.3, 21.4, 21.4, 21.5, 21.5, 21.6, 21.6, 21.7, 21.7,
         21.8, 21.8, 21.9, 21.9, 22, 22, 22, 22.1, 22.1),
        ((96, 22.1), (104, 22.2), (117, 22.3), (129, 22.4), (143, 22.5), (158, 22.6),
         (171, 22.7), (190, 22.8), (208, 22.9), (225, 23.0), (242, 23.1), (257, 23.2),
         (274, 23.3), (292, 23.4), (310, 23.5)),
    ),
    37: _curve(
        (14.3, 14.4, 14.6, 14.7, 14.8, 15, 15.1, 15.2, 15.4, 15.5, 15.6, 15.7, 15.9, 16, 16.1,
         16.2, 16.4, 16.5, 16.6, 16.7, 16.8, 17, 17.1, 17.2,
         17.3, 17.4, 17.5, 17.7, 17.8, 17.9, 18, 18.1, 18.2, 18.3, 18.4, 18.5, 18.6, 18.7, 18.8,
         18.9, 19, 19.1, 19.2, 19.3, 19.4, 19.5, 19.6, 19.7,
         19.8, 19.9, 20, 20.1, 20.1, 20.2, 20.3, 20.4, 20.5, 20.6, 20.7, 20.7, 20.8, 20.9, 21,
         21.1, 21.1, 21.2, 21.3, 21.4, 21.4, 21.5, 21.6, 21.7,
         21.7, 21.8, 21.9, 21.9, 22, 22.1, 22.1, 22.2, 22.3, 22.3, 22.4, 22.5, 22.5, 22.6, 22.6,
         22.7, 22.8, 22.8, 22.9, 22.9, 23, 23, 23.1, 23.1),
        ((96, 23.1), (102, 23.2), (118, 23.3), (139, 23.4), (152, 23.5)),
    ),
    38: _curve(
        (14.8, 15, 15.1, 15.2, 15.4, 15.5, 15.6, 15.8, 15.9, 16, 16.1, 16.3, 16.4, 16.5, 16.6,
         16.7, 16.9, 17, 17.1, 17.2, 17.3, 17.4, 17.6, 17.7,
         17.7, 17.8, 17.9, 18, 18.1, 18.2, 18.3, 18.4, 18.5, 18.7, 18.8, 18.9, 19, 19.1, 19.2,
         19.3, 19.4, 19.5, 19.6, 19.7, 19.8, 19.9, 19.9, 20,
         20.1, 20.2, 20.3, 20.4, 20.5, 20.6, 20.7, 20.8, 20.8, 20.9, 21, 21.1, 21.2, 21.3, 21.3,
         21.4, 21.5, 21.6, 21.7, 21.7, 21.8, 21.9, 22, 22,
         22.1, 22.2, 22.2, 22.3, 22.4, 22.5, 22.5, 22.6, 22.7, 22.7, 22.8, 22.8, 22.9, 23, 23,
         23.1, 23.1, 23.2, 23.3, 23.3, 23.4, 23.4, 23.5, 23.5),
        (),
    ),
}  # fmt: skip

BHUTANI_ZONES = ("low", "low_intermediate", "high_intermediate", "high")
SERUM_CONFIRM_MARGIN_MG_DL = 3.0  # AAP 2022: TSB if TcB is within 3 mg/dL of phototherapy
SERUM_CONFIRM_ABOVE_MG_DL = 15.0  # AAP 2022: TSB if TcB is >= 15 mg/dL
ESCALATION_BELOW_EXCHANGE_MG_DL = 2.0  # AAP 2022: escalation of care within 2 mg/dL of exchange
# AAP 2022: a rise >= 0.3 mg/dL/h in the first 24 h or >= 0.2 mg/dL/h after suggests haemolysis.
RAPID_RISE_FIRST_DAY_MG_DL_PER_H = 0.3
RAPID_RISE_LATER_MG_DL_PER_H = 0.2


@dataclass(frozen=True)
class BilirubinAssessment:
    """What a bilirubin value means for this baby now, in the guideline's terms."""

    tcb_mg_dl: float
    age_hours: float
    ga_weeks: float
    risk_factors: bool
    bhutani_zone: str
    phototherapy_threshold_mg_dl: float
    exchange_threshold_mg_dl: float
    margin_to_phototherapy_mg_dl: float
    margin_to_exchange_mg_dl: float
    serum_test_advised: bool
    above_phototherapy: bool
    above_exchange: bool
    escalation_of_care: bool
    rate_of_rise_mg_dl_per_h: float | None
    advice: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number") from exc
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _check_inputs(tcb_mg_dl: float, age_hours: float, ga_weeks: float) -> tuple[float, ...]:
    tcb = _finite("tcb_mg_dl", tcb_mg_dl)
    age = _finite("age_hours", age_hours)
    ga = _finite("ga_weeks", ga_weeks)
    if tcb < 0 or tcb > 50:
        raise ValueError(f"tcb_mg_dl must be between 0 and 50, got {tcb}")
    if age < 0:
        raise ValueError(f"age_hours must be >= 0, got {age}")
    if ga < 35 or ga > 45:
        raise ValueError(
            f"ga_weeks must be 35 to 45 (the AAP 2022 guideline covers >= 35 weeks), got {ga}"
        )
    return tcb, age, ga


def _table_value(curve: np.ndarray, age_hours: float) -> float:
    """Tabulated value at an integer hour; linear between hours; held after 336 h."""
    hour = min(age_hours, float(MAX_TABLE_HOUR))
    return round(float(np.interp(hour, np.arange(MAX_TABLE_HOUR + 1), curve)), 2)


def _ga_key(ga_weeks: float, top: int) -> int:
    return min(int(math.floor(ga_weeks)), top)


def phototherapy_threshold_mg_dl(age_hours: float, ga_weeks: float, risk_factors: bool) -> float:
    """AAP 2022 phototherapy threshold (Figure 2/3, supplemental Table 1/2)."""
    _, age, ga = _check_inputs(0.0, age_hours, ga_weeks)
    if risk_factors:
        return _table_value(PHOTOTHERAPY_WITH_RISK[_ga_key(ga, 38)], age)
    return _table_value(PHOTOTHERAPY_NO_RISK[_ga_key(ga, 40)], age)


def exchange_threshold_mg_dl(age_hours: float, ga_weeks: float, risk_factors: bool) -> float:
    """AAP 2022 exchange-transfusion threshold (Figure 4/5, supplemental Table 3/4)."""
    _, age, ga = _check_inputs(0.0, age_hours, ga_weeks)
    table = EXCHANGE_WITH_RISK if risk_factors else EXCHANGE_NO_RISK
    return _table_value(table[_ga_key(ga, 38)], age)


def bhutani_zone(tcb_mg_dl: float, age_hours: float) -> str:
    """Hour-specific risk zone on the Bhutani 1999 nomogram ("not_defined" before 12 h)."""
    tcb = _finite("tcb_mg_dl", tcb_mg_dl)
    age = _finite("age_hours", age_hours)
    if age < BHUTANI_START_HOUR:
        return "not_defined"
    hours = BHUTANI_START_HOUR + BHUTANI_STEP_HOURS * np.arange(len(BHUTANI_P95))
    p40, p75, p95 = (
        float(np.interp(age, hours, p)) for p in (BHUTANI_P40, BHUTANI_P75, BHUTANI_P95)
    )
    if tcb >= p95:
        return "high"
    if tcb >= p75:
        return "high_intermediate"
    if tcb >= p40:
        return "low_intermediate"
    return "low"


def rate_of_rise_mg_dl_per_h(
    tcb_mg_dl: float, age_hours: float, previous: list[tuple[float, float]] | None
) -> float | None:
    """Rise per hour since the latest earlier reading (None without one)."""
    earlier = [
        (_finite("previous age_hours", a), _finite("previous tcb_mg_dl", b))
        for a, b in (previous or [])
    ]
    earlier = [(a, b) for a, b in earlier if a < age_hours]
    if not earlier:
        return None
    prev_age, prev_tcb = max(earlier)
    return round((tcb_mg_dl - prev_tcb) / (age_hours - prev_age), 3)


def assess_bilirubin(
    tcb_mg_dl: float,
    age_hours: float,
    ga_weeks: float,
    risk_factors: bool = False,
    previous: list[tuple[float, float]] | None = None,
) -> BilirubinAssessment:
    """Place a TcB on the Bhutani nomogram and against the AAP 2022 thresholds."""
    tcb, age, ga = _check_inputs(tcb_mg_dl, age_hours, ga_weeks)
    photo = phototherapy_threshold_mg_dl(age, ga, risk_factors)
    exchange = exchange_threshold_mg_dl(age, ga, risk_factors)
    zone = bhutani_zone(tcb, age)
    rise = rate_of_rise_mg_dl_per_h(tcb, age, previous)
    margin = round(photo - tcb, 2)
    above_photo = tcb >= photo
    above_exchange = tcb >= exchange
    escalation = tcb >= exchange - ESCALATION_BELOW_EXCHANGE_MG_DL
    serum = margin <= SERUM_CONFIRM_MARGIN_MG_DL or tcb >= SERUM_CONFIRM_ABOVE_MG_DL

    advice: list[str] = []
    if above_exchange:
        advice.append("TcB at or above the exchange-transfusion threshold: urgent serum bilirubin")
    elif escalation:
        advice.append("within 2 mg/dL of the exchange threshold: escalation of care")
    if above_photo:
        advice.append("TcB at or above the phototherapy threshold: confirm with serum bilirubin")
    elif margin <= SERUM_CONFIRM_MARGIN_MG_DL:
        advice.append(f"within {SERUM_CONFIRM_MARGIN_MG_DL:g} mg/dL of phototherapy: measure TSB")
    if tcb >= SERUM_CONFIRM_ABOVE_MG_DL and not above_photo:
        advice.append("TcB >= 15 mg/dL: TcB is less reliable here, measure TSB")
    if rise is not None:
        limit = RAPID_RISE_FIRST_DAY_MG_DL_PER_H if age <= 24 else RAPID_RISE_LATER_MG_DL_PER_H
        if rise >= limit:
            advice.append(f"rapid rise ({rise:.2f} mg/dL/h >= {limit}): consider haemolysis")
    if zone == "not_defined":
        advice.append("Bhutani nomogram is not defined before 12 h of age")
    if age > MAX_TABLE_HOUR:
        advice.append("older than 14 days: AAP 2022 thresholds held at their 336 h value")
    if not advice:
        advice.append("below thresholds: follow up per AAP 2022 by margin and age")

    return BilirubinAssessment(
        tcb_mg_dl=round(tcb, 2),
        age_hours=age,
        ga_weeks=ga,
        risk_factors=bool(risk_factors),
        bhutani_zone=zone,
        phototherapy_threshold_mg_dl=photo,
        exchange_threshold_mg_dl=exchange,
        margin_to_phototherapy_mg_dl=margin,
        margin_to_exchange_mg_dl=round(exchange - tcb, 2),
        serum_test_advised=bool(serum),
        above_phototherapy=bool(above_photo),
        above_exchange=bool(above_exchange),
        escalation_of_care=bool(escalation),
        rate_of_rise_mg_dl_per_h=rise,
        advice=advice,
    )
