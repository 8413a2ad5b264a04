"""Bhutani zones and AAP 2022 thresholds: table lookups, guideline rules, bad input."""

import math

import numpy as np
import pytest

from dsp import bilirubin_zones as bz

PHOTO_TABLES = {False: bz.PHOTOTHERAPY_NO_RISK, True: bz.PHOTOTHERAPY_WITH_RISK}
EXCHANGE_TABLES = {False: bz.EXCHANGE_NO_RISK, True: bz.EXCHANGE_WITH_RISK}
GA_CATEGORIES = {False: (35, 36, 37, 38, 39, 40), True: (35, 36, 37, 38)}


@pytest.mark.parametrize("risk", [False, True])
def test_phototherapy_matches_table_at_every_tabulated_hour(risk):
    for ga in GA_CATEGORIES[risk]:
        table = PHOTO_TABLES[risk][ga]
        got = [bz.phototherapy_threshold_mg_dl(h, ga + 0.5, risk) for h in range(337)]
        assert np.allclose(got, table, atol=1e-9), (ga, risk)


@pytest.mark.parametrize("risk", [False, True])
def test_exchange_matches_table_at_every_tabulated_hour(risk):
    for ga in (35, 36, 37, 38):
        table = EXCHANGE_TABLES[risk][ga]
        got = [bz.exchange_threshold_mg_dl(h, ga, risk) for h in range(337)]
        assert np.allclose(got, table, atol=1e-9), (ga, risk)


def test_tables_have_all_hours_and_never_fall():
    for tables in (*PHOTO_TABLES.values(), *EXCHANGE_TABLES.values()):
        for curve in tables.values():
            assert curve.shape == (337,)
            assert np.all(np.diff(curve) >= 0)


def test_plateaus_stated_in_the_guideline_text():
    # AAP 2022 supplemental table notes: ">= 96 h ... is 18.2", ">= 151 h ... is 18.2",
    # exchange ">= 96 h ... 27.0" / "23.5", plateau at 336 h for 35 weeks.
    assert bz.phototherapy_threshold_mg_dl(96, 38, True) == 18.2
    assert bz.phototherapy_threshold_mg_dl(151, 37, True) == 18.2
    assert bz.phototherapy_threshold_mg_dl(150, 37, True) < 18.2
    assert bz.exchange_threshold_mg_dl(96, 38, False) == 27.0
    assert bz.exchange_threshold_mg_dl(96, 38, True) == 23.5
    assert bz.exchange_threshold_mg_dl(151, 37, False) == 27.0
    assert bz.exchange_threshold_mg_dl(336, 35, False) == 26.3
    assert bz.exchange_threshold_mg_dl(336, 35, True) == 22.9
    assert bz.phototherapy_threshold_mg_dl(96, 40, False) == 21.8


def test_thresholds_are_ordered_clinically():
    for h in range(0, 337, 7):
        for ga in (35, 36, 37, 38):
            photo_no = bz.phototherapy_threshold_mg_dl(h, ga, False)
            photo_rf = bz.phototherapy_threshold_mg_dl(h, ga, True)
            assert photo_rf < photo_no
            assert photo_no < bz.exchange_threshold_mg_dl(h, ga, False)
            assert bz.exchange_threshold_mg_dl(h, ga, True) < bz.exchange_threshold_mg_dl(
                h, ga, False
            )
        younger = [bz.phototherapy_threshold_mg_dl(h, ga, False) for ga in range(35, 41)]
        assert np.all(np.diff(younger) >= 0)


def test_gestational_age_in_completed_weeks_and_40_plus():
    assert bz.phototherapy_threshold_mg_dl(48, 38.9, False) == bz.PHOTOTHERAPY_NO_RISK[38][48]
    assert bz.phototherapy_threshold_mg_dl(48, 42.0, False) == bz.PHOTOTHERAPY_NO_RISK[40][48]
    assert bz.phototherapy_threshold_mg_dl(48, 41.0, True) == bz.PHOTOTHERAPY_WITH_RISK[38][48]


def test_between_hours_is_between_the_tabulated_values():
    a = bz.phototherapy_threshold_mg_dl(40, 38, False)
    b = bz.phototherapy_threshold_mg_dl(41, 38, False)
    mid = bz.phototherapy_threshold_mg_dl(40.5, 38, False)
    assert min(a, b) <= mid <= max(a, b)


def test_serum_confirmation_rule():
    photo = bz.phototherapy_threshold_mg_dl(48, 39, False)
    assert bz.assess_bilirubin(photo - 3.0, 48, 39).serum_test_advised
    far_below = bz.assess_bilirubin(photo - 3.2, 48, 39)
    assert not far_below.serum_test_advised
    assert far_below.margin_to_phototherapy_mg_dl == pytest.approx(3.2)
    # >= 15 mg/dL needs serum even when far from the threshold (late, 40+ weeks: ~21.8)
    late = bz.assess_bilirubin(15.5, 200, 40)
    assert late.phototherapy_threshold_mg_dl - 15.5 > 3
    assert late.serum_test_advised


def test_above_thresholds_and_escalation():
    ex = bz.exchange_threshold_mg_dl(72, 36, True)
    a = bz.assess_bilirubin(ex + 0.1, 72, 36, risk_factors=True)
    assert a.above_exchange and a.above_phototherapy and a.escalation_of_care
    b = bz.assess_bilirubin(ex - 1.5, 72, 36, risk_factors=True)
    assert b.escalation_of_care and not b.above_exchange


def test_bhutani_zones_around_the_percentile_tracks():
    # at 48 h (index 9): p40 8.6, p75 10.8, p95 13.2
    assert bz.bhutani_zone(13.3, 48) == "high"
    assert bz.bhutani_zone(13.1, 48) == "high_intermediate"
    assert bz.bhutani_zone(10.0, 48) == "low_intermediate"
    assert bz.bhutani_zone(8.0, 48) == "low"
    assert bz.bhutani_zone(5.0, 6) == "not_defined"
    assert bz.bhutani_zone(18.0, 400) == "high"


def test_rate_of_rise_uses_latest_earlier_reading():
    a = bz.assess_bilirubin(10.0, 30, 39, previous=[(10, 4.0), (20, 6.0), (40, 1.0)])
    assert a.rate_of_rise_mg_dl_per_h == pytest.approx(0.4)
    assert any("rapid rise" in s for s in a.advice)
    assert bz.assess_bilirubin(10.0, 30, 39).rate_of_rise_mg_dl_per_h is None


def test_to_dict_is_plain_json_types():
    d = bz.assess_bilirubin(12.4, 40, 38).to_dict()
    assert d["bhutani_zone"] in bz.BHUTANI_ZONES
    assert isinstance(d["advice"], list) and d["advice"]


@pytest.mark.parametrize(
    "tcb,age,ga",
    [(math.nan, 40, 38), (12, -1, 38), (12, 40, 34.9), (12, math.inf, 38), (-1, 40, 38)],
)
def test_bad_input_raises_value_error(tcb, age, ga):
    with pytest.raises(ValueError):
        bz.assess_bilirubin(tcb, age, ga)
