"""Clinical meaning of a bilirubin value for one baby at one age.

Two published references, both for newborns of 35 or more weeks' gestation:

* Bhutani VK, Johnson L, Sivieri EM. Predictive ability of a predischarge hour-specific serum
  bilirubin for subsequent significant hyperbilirubinemia in healthy term and near-term newborns.
  Pediatrics 1999;103:6-14, Figure 2 (40th, 75th and 95th percentile tracks). The curves were
  read from the published figure every 4 h from 12 to 148 h; the digitisation used here is the
  one published in the open-source Biligram tool (D. Rosenberg, dmr001/biligram js/biligram.js).
  Checked: the same 3 x 35 values appear in maulinpshah/biligram (src/js/biligram.js) and a
  later Biligram build, which are copies of that one digitisation, not independent readings;
  they agree with the values usually quoted from the figure (95th percentile about 8, 13, 16
  and 17.5 mg/dL at 24, 48, 72 and 96 h; 40th percentile about 5 and 8.5 at 24 and 48 h). One
  other implementation found (an uncited smooth curve, 95th percentile 10.0 at 24 h) departs
  from the figure by up to 2 mg/dL and was not used. No value changed; not re-read from the
  journal figure itself. The nomogram is not defined before 12 h; after 148 h the last value
  is held.
* Kemper AR, Newman TB, Slaughter JL, et al. Clinical Practice Guideline Revision: Management of
  Hyperbilirubinemia in the Newborn Infant 35 or More Weeks of Gestation. Pediatrics
  2022;150(3):e2022058859. Phototherapy thresholds: Figure 2 (no neurotoxicity risk factor other
  than gestational age) and Figure 3 (with risk factors) and supplemental Tables 1 and 2;
  exchange-transfusion thresholds: Figures 4 and 5 and supplemental Tables 3 and 4. The
  supplemental tables give the threshold for every hour of age from 1 to 336 h (14 days).

Where the AAP values come from, and what they were checked against. The journal supplement
itself was not available when the tables were transcribed, so they are the consensus of
independent machine-readable copies (check them against the supplement before clinical use):
* PediTools bili2022 (J. H. Chou, peditools.org/bili2022), the most used implementation of the
  supplement: its API output at 1, 6, 12, 18, 24, 36, 48, 60, 72, 84, 96, 120, 144, 168, 216,
  264 and 335 h for every gestational week and both risk groups (phototherapy and exchange),
  as recorded in the open-source project robbie-med/nheonatal
  (src/calc/fixtures/peditools-bili2022.json, retrieved 2026-09-26), and at 12, 18, 24, 30, 36,
  42, 48, 60, 72, 84, 96, 120, 144 and 168 h for the phototherapy lines as mirrored in
  alfred-amanda/child-health-dashboard (apps/api/app/data/aap2022_thresholds.json).
* The hourly tables of robbie-med/nheonatal (src/calc/biliThresholds.ts, hours 1-336), stated
  there to be verified value for value against PediTools. They agree with every PediTools
  point above (494 values); the tables below are these hourly values.
* Anchor values, the same in every copy: the plateau at 96 h and the 336 h value
  (phototherapy without risk factors 18.6/19.3/20.0/20.7/21.5/21.8 mg/dL at 35/36/37/38/39/
  >=40 weeks, rising slowly to 19.6/20.4/21.1/21.8/21.8/21.8 at 336 h; with risk factors
  16.1/17.0/17.9/18.2 at 96 h, 17.4/18.2/18.2/18.2 at 336 h at 35/36/37/>=38 weeks; exchange
  without risk factors 24.5/25.5/26.6/27.0 at 96 h, 26.3/27.0/27.0/27.0 at 336 h; with risk
  factors 21.1/22.1/23.1/23.5 at 96 h, 22.9/23.5/23.5/23.5 at 336 h). The coarse point lists of
  a fourth calculator, DoctorGuidance/BiliCalc (js/main.js), agree within 0.2 mg/dL.
Disagreement found and fixed: an earlier transcription in this file came from
mwieler/bili-calculator (data/aap-reference-tables/*.json). That copy has 337 rows where the
supplement has 336: in the phototherapy columns a value near 24 h is repeated, in the exchange
columns the whole curve sits one hour early, and its slowly rising tails (96-336 h) step up as
much as 14 h earlier or 23 h later than PediTools'. It differed from PediTools at 146 of the
494 checked points and from the hourly tables at 1183 of 6048 hours, by up to 0.3 mg/dL, and
in the first day it was always the higher (less safe) value. Not yet checked against the
published supplement PDF itself: do that before clinical use.

Each curve is stored as its hourly values for 1-96 h followed by the hours at which the slowly
rising tail steps up by 0.1 mg/dL; this reproduces every tabulated hour exactly. Ages below
1 h use the 1 h value (as PediTools does); between whole hours the value is interpolated
linearly; after 336 h the 336 h value is held.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from dsp.arrays import Floats
from dsp.bilirubin_followup import follow_up
from dsp.bilirubin_units import MG_DL, format_bilirubin, to_unit, unit_label

FIRST_TABLE_HOUR = 1
MAX_TABLE_HOUR = 336
TABLE_HOURS = np.arange(FIRST_TABLE_HOUR, MAX_TABLE_HOUR + 1)

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


def _curve(first_96h: tuple[float, ...], steps: tuple[tuple[int, float], ...]) -> Floats:
    """Expand (hourly values 1-96 h, (hour, value) steps after 96 h) to the 336 hourly values.

    Index i of the result is hour i + 1 (TABLE_HOURS).
    """
    if len(first_96h) != 96:
        raise ValueError("an AAP curve needs 96 hourly values for 1-96 h")
    out = np.empty(len(TABLE_HOURS))
    out[:96] = first_96h
    value = first_96h[-1]
    step_at = dict(steps)
    for i, hour in enumerate(TABLE_HOURS[96:], start=96):
        value = step_at.get(int(hour), value)
        out[i] = value
    return out


# --- AAP 2022 supplemental Table 1 / Figure 2: phototherapy, no neurotoxicity risk factor.
# Key: completed weeks of gestation (40 means 40 or more). Values for hours 1-96, then steps.
# Checked against PediTools bili2022 and the nheonatal hourly tables (module docstring).
PHOTOTHERAPY_NO_RISK = {
    35: _curve(
        (6.4, 6.6, 6.8, 7, 7.2, 7.4, 7.6, 7.8, 7.9, 8.1, 8.3, 8.5, 8.7, 8.9, 9, 9.2, 9.4, 9.6, 9.8, 9.9, 10.1, 10.3, 10.4, 10.6, 10.8, 10.9, 11.1, 11.3, 11.4, 11.6, 11.7, 11.9, 12, 12.2, 12.3, 12.5, 12.6, 12.8, 12.9, 13.1, 13.2, 13.4, 13.5, 13.6, 13.8, 13.9, 14, 14.2, 14.3, 14.4, 14.5, 14.7, 14.8, 14.9, 15, 15.1, 15.3, 15.4, 15.5, 15.6, 15.7, 15.8, 15.9, 16, 16.1, 16.2, 16.3, 16.4, 16.5, 16.6, 16.7, 16.8, 16.9, 17, 17.1, 17.2, 17.3, 17.4, 17.5, 17.5, 17.6, 17.7, 17.8, 17.8, 17.9, 18, 18.1, 18.1, 18.2, 18.3, 18.3, 18.4, 18.5, 18.5, 18.6, 18.6),
        ((105, 18.7), (127, 18.8), (150, 18.9), (173, 19.0), (196, 19.1), (220, 19.2), (243, 19.3), (267, 19.4), (291, 19.5), (315, 19.6)),
    ),
    36: _curve(
        (6.9, 7.1, 7.3, 7.5, 7.7, 7.9, 8.1, 8.3, 8.5, 8.7, 8.8, 9, 9.2, 9.4, 9.6, 9.8, 9.9, 10.1, 10.3, 10.5, 10.6, 10.8, 11, 11.2, 11.3, 11.5, 11.7, 11.8, 12, 12.1, 12.3, 12.5, 12.6, 12.8, 12.9, 13.1, 13.2, 13.4, 13.5, 13.7, 13.8, 13.9, 14.1, 14.2, 14.4, 14.5, 14.6, 14.8, 14.9, 15, 15.1, 15.3, 15.4, 15.5, 15.6, 15.8, 15.9, 16, 16.1, 16.2, 16.3, 16.5, 16.6, 16.7, 16.8, 16.9, 17, 17.1, 17.2, 17.3, 17.4, 17.5, 17.6, 17.7, 17.8, 17.9, 17.9, 18, 18.1, 18.2, 18.3, 18.4, 18.4, 18.5, 18.6, 18.7, 18.8, 18.8, 18.9, 19, 19, 19.1, 19.2, 19.2, 19.3, 19.3),
        ((100, 19.4), (123, 19.5), (147, 19.6), (171, 19.7), (194, 19.8), (217, 19.9), (241, 20.0), (264, 20.1), (288, 20.2), (312, 20.3), (335, 20.4)),
    ),
    37: _curve(
        (7.4, 7.6, 7.8, 8, 8.2, 8.4, 8.6, 8.8, 9, 9.2, 9.4, 9.6, 9.8, 9.9, 10.1, 10.3, 10.5, 10.7, 10.8, 11, 11.2, 11.4, 11.5, 11.7, 11.9, 12.1, 12.2, 12.4, 12.5, 12.7, 12.9, 13, 13.2, 13.3, 13.5, 13.6, 13.8, 13.9, 14.1, 14.2, 14.4, 14.5, 14.7, 14.8, 15, 15.1, 15.2, 15.4, 15.5, 15.6, 15.8, 15.9, 16, 16.1, 16.3, 16.4, 16.5, 16.6, 16.7, 16.9, 17, 17.1, 17.2, 17.3, 17.4, 17.5, 17.6, 17.7, 17.8, 17.9, 18, 18.1, 18.2, 18.3, 18.4, 18.5, 18.6, 18.7, 18.8, 18.9, 19, 19, 19.1, 19.2, 19.3, 19.4, 19.4, 19.5, 19.6, 19.7, 19.7, 19.8, 19.9, 19.9, 20, 20),
        ((97, 20.1), (120, 20.2), (143, 20.3), (165, 20.4), (187, 20.5), (209, 20.6), (231, 20.7), (251, 20.8), (271, 20.9), (295, 21.0), (321, 21.1)),
    ),
    38: _curve(
        (7.9, 8.1, 8.3, 8.5, 8.7, 8.9, 9.1, 9.3, 9.5, 9.7, 9.9, 10.1, 10.3, 10.5, 10.7, 10.8, 11, 11.2, 11.4, 11.6, 11.7, 11.9, 12.1, 12.3, 12.4, 12.6, 12.8, 12.9, 13.1, 13.3, 13.4, 13.6, 13.8, 13.9, 14.1, 14.2, 14.4, 14.5, 14.7, 14.8, 15, 15.1, 15.3, 15.4, 15.6, 15.7, 15.8, 16, 16.1, 16.2, 16.4, 16.5, 16.6, 16.8, 16.9, 17, 17.1, 17.3, 17.4, 17.5, 17.6, 17.7, 17.8, 17.9, 18.1, 18.2, 18.3, 18.4, 18.5, 18.6, 18.7, 18.8, 18.9, 19, 19.1, 19.2, 19.3, 19.4, 19.5, 19.5, 19.6, 19.7, 19.8, 19.9, 20, 20, 20.1, 20.2, 20.3, 20.3, 20.4, 20.5, 20.6, 20.6, 20.7, 20.7),
        ((97, 20.8), (115, 20.9), (137, 21.0), (161, 21.1), (185, 21.2), (208, 21.3), (231, 21.4), (255, 21.5), (279, 21.6), (302, 21.7), (326, 21.8)),
    ),
    39: _curve(
        (8.4, 8.6, 8.8, 9, 9.3, 9.5, 9.7, 9.9, 10, 10.2, 10.4, 10.6, 10.8, 11, 11.2, 11.4, 11.6, 11.8, 11.9, 12.1, 12.3, 12.5, 12.7, 12.8, 13, 13.2, 13.3, 13.5, 13.7, 13.8, 14, 14.2, 14.3, 14.5, 14.7, 14.8, 15, 15.1, 15.3, 15.4, 15.6, 15.7, 15.9, 16, 16.2, 16.3, 16.4, 16.6, 16.7, 16.8, 17, 17.1, 17.2, 17.4, 17.5, 17.6, 17.8, 17.9, 18, 18.1, 18.2, 18.4, 18.5, 18.6, 18.7, 18.8, 18.9, 19, 19.1, 19.2, 19.3, 19.5, 19.6, 19.7, 19.7, 19.8, 19.9, 20, 20.1, 20.2, 20.3, 20.4, 20.5, 20.6, 20.6, 20.7, 20.8, 20.9, 21, 21, 21.1, 21.2, 21.3, 21.3, 21.4, 21.5),
        ((111, 21.6), (135, 21.7), (158, 21.8)),
    ),
    40: _curve(
        (8.9, 9.1, 9.3, 9.6, 9.8, 10, 10.2, 10.4, 10.5, 10.7, 10.9, 11.1, 11.3, 11.5, 11.7, 11.9, 12.1, 12.2, 12.4, 12.6, 12.8, 13, 13.1, 13.3, 13.5, 13.6, 13.8, 14, 14.1, 14.3, 14.5, 14.6, 14.8, 15, 15.1, 15.3, 15.4, 15.6, 15.7, 15.9, 16, 16.2, 16.3, 16.4, 16.6, 16.7, 16.9, 17, 17.1, 17.3, 17.4, 17.5, 17.7, 17.8, 17.9, 18, 18.2, 18.3, 18.4, 18.5, 18.6, 18.8, 18.9, 19, 19.1, 19.2, 19.3, 19.4, 19.6, 19.7, 19.7, 19.8, 19.9, 20, 20.1, 20.2, 20.3, 20.4, 20.5, 20.6, 20.7, 20.7, 20.8, 20.9, 21, 21.1, 21.1, 21.2, 21.3, 21.4, 21.4, 21.5, 21.6, 21.6, 21.7, 21.8),
        (),
    ),
}  # fmt: skip

# --- AAP 2022 supplemental Table 2 / Figure 3: phototherapy with a neurotoxicity risk factor.
# Key: completed weeks (38 means 38 or more).
PHOTOTHERAPY_WITH_RISK = {
    35: _curve(
        (4.9, 5.1, 5.3, 5.5, 5.6, 5.8, 6, 6.2, 6.4, 6.5, 6.7, 6.9, 7.1, 7.2, 7.4, 7.6, 7.7, 7.9, 8.1, 8.2, 8.4, 8.6, 8.7, 8.9, 9, 9.2, 9.3, 9.5, 9.6, 9.8, 9.9, 10.1, 10.2, 10.3, 10.5, 10.6, 10.8, 10.9, 11, 11.2, 11.3, 11.4, 11.5, 11.7, 11.8, 11.9, 12, 12.2, 12.3, 12.4, 12.5, 12.6, 12.7, 12.8, 13, 13.1, 13.2, 13.3, 13.4, 13.5, 13.6, 13.7, 13.8, 13.9, 14, 14.1, 14.2, 14.2, 14.3, 14.4, 14.5, 14.6, 14.7, 14.8, 14.8, 14.9, 15, 15.1, 15.1, 15.2, 15.3, 15.3, 15.4, 15.5, 15.5, 15.6, 15.7, 15.7, 15.8, 15.8, 15.9, 15.9, 16, 16.1, 16.1, 16.1),
        ((97, 16.2), (116, 16.3), (134, 16.4), (154, 16.5), (173, 16.6), (194, 16.7), (213, 16.8), (231, 16.9), (252, 17.0), (271, 17.1), (291, 17.2), (310, 17.3), (329, 17.4)),
    ),
    36: _curve(
        (5.4, 5.6, 5.8, 6, 6.2, 6.3, 6.5, 6.7, 6.9, 7.1, 7.3, 7.4, 7.6, 7.8, 8, 8.1, 8.3, 8.5, 8.6, 8.8, 9, 9.1, 9.3, 9.4, 9.6, 9.8, 9.9, 10.1, 10.2, 10.4, 10.5, 10.7, 10.8, 11, 11.1, 11.2, 11.4, 11.5, 11.7, 11.8, 11.9, 12.1, 12.2, 12.3, 12.5, 12.6, 12.7, 12.8, 13, 13.1, 13.2, 13.3, 13.4, 13.5, 13.7, 13.8, 13.9, 14, 14.1, 14.2, 14.3, 14.4, 14.5, 14.6, 14.7, 14.8, 14.9, 15, 15.1, 15.2, 15.3, 15.4, 15.4, 15.5, 15.6, 15.7, 15.8, 15.8, 15.9, 16, 16.1, 16.1, 16.2, 16.3, 16.4, 16.4, 16.5, 16.6, 16.6, 16.7, 16.7, 16.8, 16.8, 16.9, 17, 17),
        ((104, 17.1), (123, 17.2), (143, 17.3), (162, 17.4), (179, 17.5), (199, 17.6), (219, 17.7), (241, 17.8), (260, 17.9), (277, 18.0), (299, 18.1), (318, 18.2)),
    ),
    37: _curve(
        (5.9, 6.1, 6.3, 6.5, 6.7, 6.9, 7, 7.2, 7.4, 7.6, 7.8, 8, 8.1, 8.3, 8.5, 8.7, 8.9, 9, 9.2, 9.4, 9.5, 9.7, 9.9, 10, 10.2, 10.4, 10.5, 10.7, 10.8, 11, 11.1, 11.3, 11.4, 11.6, 11.7, 11.9, 12, 12.2, 12.3, 12.4, 12.6, 12.7, 12.9, 13, 13.1, 13.2, 13.4, 13.5, 13.6, 13.8, 13.9, 14, 14.1, 14.2, 14.4, 14.5, 14.6, 14.7, 14.8, 14.9, 15, 15.1, 15.2, 15.3, 15.4, 15.5, 15.6, 15.7, 15.8, 15.9, 16, 16.1, 16.2, 16.3, 16.4, 16.5, 16.6, 16.6, 16.7, 16.8, 16.9, 17, 17, 17.1, 17.2, 17.2, 17.3, 17.4, 17.4, 17.5, 17.6, 17.6, 17.7, 17.8, 17.8, 17.9),
        ((112, 18.0), (131, 18.1), (151, 18.2)),
    ),
    38: _curve(
        (6.4, 6.6, 6.8, 7, 7.2, 7.3, 7.5, 7.7, 7.9, 8.1, 8.3, 8.5, 8.6, 8.8, 9, 9.2, 9.4, 9.5, 9.7, 9.9, 10, 10.2, 10.4, 10.5, 10.7, 10.8, 11, 11.2, 11.3, 11.5, 11.6, 11.8, 11.9, 12.1, 12.2, 12.4, 12.5, 12.7, 12.8, 12.9, 13.1, 13.2, 13.3, 13.5, 13.6, 13.7, 13.9, 14, 14.1, 14.2, 14.4, 14.5, 14.6, 14.7, 14.8, 14.9, 15.1, 15.2, 15.3, 15.4, 15.5, 15.6, 15.7, 15.8, 15.9, 16, 16.1, 16.2, 16.3, 16.4, 16.5, 16.6, 16.6, 16.7, 16.8, 16.9, 17, 17.1, 17.1, 17.2, 17.3, 17.4, 17.4, 17.5, 17.6, 17.6, 17.7, 17.8, 17.8, 17.9, 18, 18, 18.1, 18.1, 18.2, 18.2),
        (),
    ),
}  # fmt: skip

# --- AAP 2022 supplemental Table 3 / Figure 4: exchange transfusion, no risk factor.
EXCHANGE_NO_RISK = {
    35: _curve(
        (14.9, 15, 15.1, 15.3, 15.4, 15.6, 15.7, 15.8, 16, 16.1, 16.2, 16.4, 16.5, 16.6, 16.8, 16.9, 17, 17.2, 17.3, 17.4, 17.5, 17.7, 17.8, 17.9, 18, 18.2, 18.3, 18.4, 18.5, 18.7, 18.8, 18.9, 19, 19.1, 19.2, 19.4, 19.5, 19.6, 19.7, 19.8, 19.9, 20, 20.1, 20.2, 20.3, 20.5, 20.6, 20.7, 20.8, 20.9, 21, 21.1, 21.2, 21.3, 21.4, 21.5, 21.6, 21.7, 21.7, 21.8, 21.9, 22, 22.1, 22.2, 22.3, 22.4, 22.5, 22.6, 22.6, 22.7, 22.8, 22.9, 23, 23.1, 23.1, 23.2, 23.3, 23.4, 23.4, 23.5, 23.6, 23.7, 23.7, 23.8, 23.9, 23.9, 24, 24.1, 24.1, 24.2, 24.3, 24.3, 24.4, 24.4, 24.5, 24.5),
        ((104, 24.6), (114, 24.7), (124, 24.8), (135, 24.9), (146, 25.0), (158, 25.1), (169, 25.2), (181, 25.3), (194, 25.4), (207, 25.5), (219, 25.6), (233, 25.7), (247, 25.8), (262, 25.9), (277, 26.0), (291, 26.1), (308, 26.2), (325, 26.3)),
    ),
    36: _curve(
        (15.9, 16.1, 16.2, 16.4, 16.5, 16.7, 16.8, 16.9, 17.1, 17.2, 17.4, 17.5, 17.7, 17.8, 17.9, 18.1, 18.2, 18.3, 18.5, 18.6, 18.7, 18.9, 19, 19.1, 19.2, 19.4, 19.5, 19.6, 19.7, 19.9, 20, 20.1, 20.2, 20.4, 20.5, 20.6, 20.7, 20.8, 20.9, 21, 21.2, 21.3, 21.4, 21.5, 21.6, 21.7, 21.8, 21.9, 22, 22.1, 22.2, 22.3, 22.4, 22.5, 22.6, 22.7, 22.8, 22.9, 23, 23.1, 23.2, 23.2, 23.3, 23.4, 23.5, 23.6, 23.7, 23.8, 23.8, 23.9, 24, 24.1, 24.1, 24.2, 24.3, 24.4, 24.4, 24.5, 24.6, 24.6, 24.7, 24.8, 24.8, 24.9, 25, 25, 25.1, 25.2, 25.2, 25.3, 25.3, 25.4, 25.4, 25.5, 25.5, 25.5),
        ((99, 25.6), (111, 25.7), (123, 25.8), (137, 25.9), (149, 26.0), (163, 26.1), (177, 26.2), (193, 26.3), (208, 26.4), (223, 26.5), (241, 26.6), (258, 26.7), (277, 26.8), (297, 26.9), (318, 27.0)),
    ),
    37: _curve(
        (17, 17.1, 17.3, 17.5, 17.6, 17.8, 17.9, 18.1, 18.2, 18.4, 18.5, 18.7, 18.8, 18.9, 19.1, 19.2, 19.4, 19.5, 19.6, 19.8, 19.9, 20.1, 20.2, 20.3, 20.5, 20.6, 20.7, 20.8, 21, 21.1, 21.2, 21.3, 21.5, 21.6, 21.7, 21.8, 21.9, 22.1, 22.2, 22.3, 22.4, 22.5, 22.6, 22.7, 22.8, 22.9, 23, 23.1, 23.2, 23.3, 23.4, 23.5, 23.6, 23.7, 23.8, 23.9, 24, 24.1, 24.2, 24.3, 24.4, 24.5, 24.5, 24.6, 24.7, 24.8, 24.9, 24.9, 25, 25.1, 25.2, 25.2, 25.3, 25.4, 25.5, 25.5, 25.6, 25.7, 25.7, 25.8, 25.8, 25.9, 26, 26, 26.1, 26.1, 26.2, 26.2, 26.3, 26.3, 26.4, 26.4, 26.5, 26.5, 26.5, 26.6),
        ((107, 26.7), (122, 26.8), (138, 26.9), (154, 27.0)),
    ),
    38: _curve(
        (18, 18.2, 18.4, 18.5, 18.7, 18.8, 19, 19.1, 19.3, 19.4, 19.6, 19.7, 19.9, 20, 20.1, 20.3, 20.4, 20.6, 20.7, 20.8, 21, 21.1, 21.2, 21.4, 21.5, 21.6, 21.7, 21.9, 22, 22.1, 22.2, 22.3, 22.4, 22.6, 22.7, 22.8, 22.9, 23, 23.1, 23.2, 23.3, 23.4, 23.5, 23.6, 23.7, 23.8, 23.9, 24, 24.1, 24.2, 24.3, 24.4, 24.5, 24.6, 24.7, 24.7, 24.8, 24.9, 25, 25.1, 25.2, 25.2, 25.3, 25.4, 25.5, 25.5, 25.6, 25.7, 25.7, 25.8, 25.9, 25.9, 26, 26, 26.1, 26.2, 26.2, 26.3, 26.3, 26.4, 26.4, 26.5, 26.5, 26.6, 26.6, 26.7, 26.7, 26.7, 26.8, 26.8, 26.9, 26.9, 26.9, 27, 27, 27),
        (),
    ),
}  # fmt: skip

# --- AAP 2022 supplemental Table 4 / Figure 5: exchange transfusion with a risk factor.
EXCHANGE_WITH_RISK = {
    35: _curve(
        (13.1, 13.3, 13.4, 13.6, 13.7, 13.8, 14, 14.1, 14.3, 14.4, 14.5, 14.6, 14.8, 14.9, 15, 15.1, 15.3, 15.4, 15.5, 15.6, 15.8, 15.9, 16, 16.1, 16.2, 16.3, 16.4, 16.5, 16.6, 16.8, 16.9, 17, 17.1, 17.2, 17.3, 17.4, 17.5, 17.6, 17.7, 17.7, 17.8, 17.9, 18, 18.1, 18.2, 18.3, 18.4, 18.5, 18.5, 18.6, 18.7, 18.8, 18.9, 18.9, 19, 19.1, 19.2, 19.2, 19.3, 19.4, 19.4, 19.5, 19.6, 19.6, 19.7, 19.8, 19.8, 19.9, 19.9, 20, 20.1, 20.1, 20.2, 20.2, 20.3, 20.3, 20.4, 20.4, 20.5, 20.5, 20.6, 20.6, 20.6, 20.7, 20.7, 20.8, 20.8, 20.8, 20.9, 20.9, 20.9, 21, 21, 21, 21.1, 21.1),
        ((104, 21.2), (114, 21.3), (123, 21.4), (135, 21.5), (146, 21.6), (158, 21.7), (169, 21.8), (181, 21.9), (193, 22.0), (206, 22.1), (218, 22.2), (233, 22.3), (246, 22.4), (260, 22.5), (275, 22.6), (291, 22.7), (309, 22.8), (326, 22.9)),
    ),
    36: _curve(
        (13.7, 13.9, 14, 14.1, 14.3, 14.4, 14.5, 14.7, 14.8, 14.9, 15.1, 15.2, 15.3, 15.4, 15.6, 15.7, 15.8, 15.9, 16.1, 16.2, 16.3, 16.4, 16.5, 16.6, 16.8, 16.9, 17, 17.1, 17.2, 17.3, 17.4, 17.5, 17.6, 17.7, 17.8, 17.9, 18, 18.1, 18.2, 18.3, 18.4, 18.5, 18.6, 18.7, 18.8, 18.9, 19, 19.1, 19.2, 19.2, 19.3, 19.4, 19.5, 19.6, 19.7, 19.7, 19.8, 19.9, 20, 20.1, 20.1, 20.2, 20.3, 20.3, 20.4, 20.5, 20.6, 20.6, 20.7, 20.8, 20.8, 20.9, 20.9, 21, 21.1, 21.1, 21.2, 21.2, 21.3, 21.4, 21.4, 21.5, 21.5, 21.6, 21.6, 21.7, 21.7, 21.8, 21.8, 21.9, 21.9, 22, 22, 22, 22.1, 22.1),
        ((105, 22.2), (117, 22.3), (131, 22.4), (144, 22.5), (158, 22.6), (171, 22.7), (186, 22.8), (202, 22.9), (218, 23.0), (237, 23.1), (255, 23.2), (275, 23.3), (293, 23.4), (318, 23.5)),
    ),
    37: _curve(
        (14.3, 14.4, 14.6, 14.7, 14.8, 15, 15.1, 15.2, 15.4, 15.5, 15.6, 15.7, 15.9, 16, 16.1, 16.2, 16.4, 16.5, 16.6, 16.7, 16.8, 17, 17.1, 17.2, 17.3, 17.4, 17.5, 17.7, 17.8, 17.9, 18, 18.1, 18.2, 18.3, 18.4, 18.5, 18.6, 18.7, 18.8, 18.9, 19, 19.1, 19.2, 19.3, 19.4, 19.5, 19.6, 19.7, 19.8, 19.9, 20, 20.1, 20.1, 20.2, 20.3, 20.4, 20.5, 20.6, 20.7, 20.7, 20.8, 20.9, 21, 21.1, 21.1, 21.2, 21.3, 21.4, 21.4, 21.5, 21.6, 21.7, 21.7, 21.8, 21.9, 21.9, 22, 22.1, 22.1, 22.2, 22.3, 22.3, 22.4, 22.5, 22.5, 22.6, 22.6, 22.7, 22.8, 22.8, 22.9, 22.9, 23, 23, 23.1, 23.1),
        ((107, 23.2), (123, 23.3), (140, 23.4), (155, 23.5)),
    ),
    38: _curve(
        (14.8, 15, 15.1, 15.2, 15.4, 15.5, 15.6, 15.8, 15.9, 16, 16.1, 16.3, 16.4, 16.5, 16.6, 16.7, 16.9, 17, 17.1, 17.2, 17.3, 17.4, 17.6, 17.7, 17.8, 17.9, 18, 18.1, 18.2, 18.3, 18.4, 18.5, 18.7, 18.8, 18.9, 19, 19.1, 19.2, 19.3, 19.4, 19.5, 19.6, 19.7, 19.8, 19.9, 19.9, 20, 20.1, 20.2, 20.3, 20.4, 20.5, 20.6, 20.7, 20.8, 20.8, 20.9, 21, 21.1, 21.2, 21.3, 21.3, 21.4, 21.5, 21.6, 21.7, 21.7, 21.8, 21.9, 22, 22, 22.1, 22.2, 22.2, 22.3, 22.4, 22.5, 22.5, 22.6, 22.7, 22.7, 22.8, 22.8, 22.9, 23, 23, 23.1, 23.1, 23.2, 23.3, 23.3, 23.4, 23.4, 23.5, 23.5, 23.5),
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
# Rate of rise only against a reading at least this much older. Not from the guideline: two TcB
# readings differ by about 1 mg/dL (SD) from measurement error alone (0.7 mg/dL each, see
# docs/performance.md), so repeat presses minutes apart would give meaningless rates; over 6 h
# that error is 0.17 mg/dL/h, still close to the 0.2 limit, so the rate is advice, not proof.
MIN_RISE_INTERVAL_HOURS = 6.0


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
    follow_up: dict[str, object]  # dsp/bilirubin_followup.py: the next measurement (AAP 2022)

    def to_dict(self) -> dict[str, object]:
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


def _table_value(curve: Floats, age_hours: float) -> float:
    """Tabulated value at a whole hour; linear between hours; 1 h value before, 336 h after."""
    return round(float(np.interp(age_hours, TABLE_HOURS, curve)), 2)


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
    """Rise per hour since the latest reading at least MIN_RISE_INTERVAL_HOURS earlier.

    None without such a reading (repeat presses of the same session are not compared).
    """
    earlier = [
        (_finite("previous age_hours", a), _finite("previous tcb_mg_dl", b))
        for a, b in (previous or [])
    ]
    earlier = [(a, b) for a, b in earlier if a <= age_hours - MIN_RISE_INTERVAL_HOURS]
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
    unit: str = MG_DL,
) -> BilirubinAssessment:
    """Place a TcB on the Bhutani nomogram and against the AAP 2022 thresholds.

    Every number stays in mg/dL; `unit` (dsp/bilirubin_units.py) is only the unit the advice's
    amounts are written in, so a ward reading umol/L is never told a distance in mg/dL."""
    tcb, age, ga = _check_inputs(tcb_mg_dl, age_hours, ga_weeks)

    def amount(mg_dl: float) -> str:
        return format_bilirubin(mg_dl, unit)

    photo = phototherapy_threshold_mg_dl(age, ga, risk_factors)
    exchange = exchange_threshold_mg_dl(age, ga, risk_factors)
    zone = bhutani_zone(tcb, age)
    rise = rate_of_rise_mg_dl_per_h(tcb, age, previous)
    margin = round(photo - tcb, 2)
    above_photo = tcb >= photo
    above_exchange = tcb >= exchange
    escalation = tcb >= exchange - ESCALATION_BELOW_EXCHANGE_MG_DL
    serum = margin <= SERUM_CONFIRM_MARGIN_MG_DL or tcb >= SERUM_CONFIRM_ABOVE_MG_DL
    next_measurement = follow_up(margin, age)

    advice: list[str] = []
    if above_exchange:
        advice.append("TcB at or above the exchange-transfusion threshold: urgent serum bilirubin")
    elif escalation:
        advice.append(
            f"within {amount(ESCALATION_BELOW_EXCHANGE_MG_DL)} of the exchange threshold: "
            "escalation of care"
        )
    if above_photo:
        advice.append("TcB at or above the phototherapy threshold: confirm with serum bilirubin")
    elif margin <= SERUM_CONFIRM_MARGIN_MG_DL:
        advice.append(f"within {amount(SERUM_CONFIRM_MARGIN_MG_DL)} of phototherapy: measure TSB")
    if tcb >= SERUM_CONFIRM_ABOVE_MG_DL and not above_photo:
        advice.append(
            f"TcB >= {amount(SERUM_CONFIRM_ABOVE_MG_DL)}: TcB is less reliable here, measure TSB"
        )
    if rise is not None:
        limit = RAPID_RISE_FIRST_DAY_MG_DL_PER_H if age <= 24 else RAPID_RISE_LATER_MG_DL_PER_H
        if rise >= limit:
            per_h = f"{unit_label(unit)}/h"
            digits = 2 if unit == MG_DL else 1
            advice.append(
                f"rapid rise ({to_unit(rise, unit):.{digits}f} {per_h} >= "
                f"{to_unit(limit, unit):.{digits}f}): consider haemolysis"
            )
    if zone == "not_defined":
        advice.append("Bhutani nomogram is not defined before 12 h of age")
    if age > MAX_TABLE_HOUR:
        advice.append("older than 14 days: AAP 2022 thresholds held at their 336 h value")
    if not above_photo:
        advice.append(f"next measurement (AAP 2022): {next_measurement.action}")

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
        follow_up=next_measurement.to_dict(),
    )
