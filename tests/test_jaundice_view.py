"""The TcB readings as the nurse view shows them: units, threshold text, the AAP 2022 follow-up,
re-assessment after a corrected birth time or gestation, one point per reading. Pure parts,
with time passed in (the browser side is tests/test_jaundice_view_browser.py)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from dsp import bilirubin_zones as bz
from dsp.bilirubin_followup import follow_up
from dsp.bilirubin_units import (
    MG_DL,
    UMOL_L,
    UNITS,
    format_bilirubin,
    from_unit,
    threshold_phrase,
    to_unit,
)
from gateway.config import BILIRUBIN_UNITS, ConfigError, config_from_dict
from gateway.processing import jaundice
from gateway.times import iso_time, parse_time

pytestmark = pytest.mark.unit

BORN = "2026-11-20T08:00:00.000Z"
T_BORN = parse_time(BORN) or 0.0


def test_units_convert_at_17_1_and_round_to_what_a_reading_resolves():
    assert to_unit(1.0, UMOL_L) == pytest.approx(17.1)
    assert to_unit(14.7, MG_DL) == 14.7
    assert from_unit(to_unit(12.3, UMOL_L), UMOL_L) == pytest.approx(12.3)
    assert format_bilirubin(14.7, MG_DL) == "14.7 mg/dL"
    assert format_bilirubin(14.7, UMOL_L) == "251 µmol/L"  # 251.37
    assert format_bilirubin(0.0, UMOL_L) == "0 µmol/L"
    with pytest.raises(ValueError, match="unit"):
        format_bilirubin(10.0, "mmol/L")
    with pytest.raises(ValueError):
        format_bilirubin(float("nan"), MG_DL)


def test_the_gateway_setting_takes_exactly_the_units_the_view_knows():
    assert BILIRUBIN_UNITS == UNITS
    assert config_from_dict({"web": {"bilirubin_unit": "umol/L"}}).web.bilirubin_unit == UMOL_L
    assert config_from_dict({}).web.bilirubin_unit == MG_DL
    with pytest.raises(ConfigError) as err:
        config_from_dict({"web": {"bilirubin_unit": "mmol/L"}}, "perimon.toml")
    msg = str(err.value)
    assert msg.startswith("perimon.toml: [web] bilirubin_unit") and "mmol/L" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "tcb,line,name,unit,text",
    [
        (7.4, 14.7, "phototherapy", MG_DL, "below phototherapy by 7.3 mg/dL"),
        (16.0, 14.7, "phototherapy", MG_DL, "above phototherapy by 1.3 mg/dL"),
        (7.4, 14.7, "phototherapy", UMOL_L, "below phototherapy by 125 µmol/L"),
        (25.0, 24.5, "exchange", UMOL_L, "above exchange by 9 µmol/L"),
        (14.72, 14.7, "phototherapy", MG_DL, "at phototherapy"),
        (14.7, 14.72, "phototherapy", UMOL_L, "at phototherapy"),  # 0.3 umol/L rounds to 0
    ],
)
def test_threshold_text_says_above_or_below_by_how_much_with_the_unit(tcb, line, name, unit, text):
    assert threshold_phrase(tcb, line, name, unit) == text


@pytest.mark.parametrize(
    "below,age,band,earliest,latest",
    [
        (1.0, 20, "0.1-1.9", 4, 8),  # first day: delay discharge, TSB in 4-8 h
        (1.9, 30, "0.1-1.9", 4, 24),
        (2.0, 30, "2.0-3.4", 4, 24),
        (3.4, 100, "2.0-3.4", 4, 24),
        (3.5, 50, "3.5-5.4", 24, 48),
        (5.5, 50, "5.5-6.9", 0, 48),  # within 2 days
        (6.9, 80, "5.5-6.9", None, None),  # 72 h or older: clinical judgement
        (7.0, 71.9, "7.0+", 0, 72),  # within 3 days
        (12.0, 72, "7.0+", None, None),
        (0.0, 40, "at_or_above", None, None),
        (-2.0, 40, "at_or_above", None, None),
    ],
)
def test_follow_up_by_distance_below_phototherapy_and_age(below, age, band, earliest, latest):
    f = follow_up(below, age)
    assert (f.band, f.earliest_h, f.latest_h) == (band, earliest, latest)
    assert f.action
    assert (f.measure == "TSB") == (band == "0.1-1.9")


def test_follow_up_refuses_nonsense():
    for below, age in ((float("nan"), 10), (2.0, -1), (2.0, float("inf"))):
        with pytest.raises(ValueError):
            follow_up(below, age)


def test_advice_amounts_are_in_the_wards_unit():
    photo = bz.phototherapy_threshold_mg_dl(40, 38, False)
    a = bz.assess_bilirubin(photo - 2.5, 40, 38, unit=UMOL_L, previous=[(20, 2.0)])
    text = " ".join(a.advice)
    assert "µmol/L" in text and "mg/dL" not in text
    assert "within 51 µmol/L of phototherapy" in text  # 3 mg/dL
    assert "rapid rise" in text and "µmol/L/h" in text
    assert a.follow_up["band"] == "2.0-3.4"
    assert "next measurement (AAP 2022): TSB or TcB in 4-24 h" in a.advice
    mg = bz.assess_bilirubin(photo - 2.5, 40, 38)
    assert "within 3.0 mg/dL of phototherapy: measure TSB" in mg.advice
    assert mg.margin_to_phototherapy_mg_dl == a.margin_to_phototherapy_mg_dl  # numbers: mg/dL


def reading(seq: int, hours_after_birth: float, tcb: float | None, flag: str = "") -> dict:
    at = T_BORN + hours_after_birth * 3600
    return {
        "msg_id": f"tcb-01:1:tcb:{seq}", "device_id": "tcb-01", "boot": 1, "seq": seq,
        "t": iso_time(at), "tcb_mg_dl": tcb, "tcb_umol_l": None if tcb is None else tcb * 17.1,
        "ci_low_mg_dl": None if tcb is None else tcb - 1, "ci_high_mg_dl": None if tcb is None
        else tcb + 1, "flag": flag, "assessment": None,
    }  # fmt: skip


def published(r: dict, baby: dict) -> dict:
    """`r` as the gateway published it, assessed for `baby`."""
    a = jaundice.assess_at(r["tcb_mg_dl"], parse_time(r["t"]) or 0.0, baby, [])
    return {**r, "assessment": None if a is None else a.to_dict()}


def test_view_has_one_point_per_reading_in_time_order():
    baby = {"birth_time": BORN, "ga_weeks": 38}
    r1, r2, r3 = (published(reading(i, h, v), baby) for i, h, v in ((1, 30, 8.0), (2, 40, 9.0),
                                                                      (3, 50, 10.0)))  # fmt: skip
    flagged = reading(4, 45, None, "no_contact")
    view = jaundice.readings_for_view([r2, r1, flagged, r3, r2, r1], baby, MG_DL)  # resent
    assert [v["seq"] for v in view] == [1, 2, 4, 3]
    assert [v["reassessed"] for v in view] == [False] * 4
    assert view[2]["assessment"] is None and "shown" not in view[2]
    assert view[3]["shown"]["tcb"] == "10.0 mg/dL"
    assert view[3]["shown"]["ci"] == "9.0–11.0 mg/dL"
    # a rate of rise from the earlier readings, as the processor computes it
    assert view[3]["assessment"]["rate_of_rise_mg_dl_per_h"] == pytest.approx(0.1)


def test_a_corrected_birth_time_moves_every_past_reading_and_says_so():
    old = {"birth_time": BORN, "ga_weeks": 38}
    readings = [published(reading(i, h, 12.0), old) for i, h in ((1, 30), (2, 42))]
    corrected = {"birth_time": iso_time(T_BORN - 12 * 3600), "ga_weeks": 38}  # 12 h earlier
    view = jaundice.readings_for_view(readings, corrected, MG_DL)
    assert [round(v["assessment"]["age_hours"], 3) for v in view] == [42, 54]
    assert all(v["reassessed"] for v in view)
    assert [v["published_assessment"]["age_hours"] for v in view] == [30, 42]
    photo = bz.phototherapy_threshold_mg_dl(54, 38, False)
    assert view[1]["shown"]["phototherapy"] == threshold_phrase(12.0, photo, "phototherapy", MG_DL)
    assert view[1]["shown"]["phototherapy_line"] == f"{photo:.1f} mg/dL"
    # the same details again: nothing re-assessed
    assert not any(v["reassessed"] for v in jaundice.readings_for_view(readings, old, MG_DL))
    # a changed gestation moves the thresholds, not the age
    view = jaundice.readings_for_view(readings, {**old, "ga_weeks": 36}, MG_DL)
    assert all(v["reassessed"] for v in view)
    # birth time cleared: no assessment now, the published one kept to read
    view = jaundice.readings_for_view(readings, {"ga_weeks": 38}, MG_DL)
    assert all(v["assessment"] is None and v["reassessed"] for v in view)
    assert view[0]["published_assessment"]["age_hours"] == 30


def test_view_gives_the_next_measurement_as_clock_times_in_the_wards_unit():
    baby = {"birth_time": BORN, "ga_weeks": 38, "risk_factors": False}
    photo = bz.phototherapy_threshold_mg_dl(40, 38, False)
    r = published(reading(1, 40, round(photo - 2.5, 2)), baby)
    (v,) = jaundice.readings_for_view([r], baby, UMOL_L)
    at = parse_time(r["t"]) or 0.0
    assert v["assessment"]["follow_up"]["band"] == "2.0-3.4"
    assert v["shown"]["next_from"] == iso_time(at + 4 * 3600)
    assert v["shown"]["next_by"] == iso_time(at + 24 * 3600)
    assert v["shown"]["phototherapy"] == "below phototherapy by 43 µmol/L"  # 2.5 mg/dL
    assert v["shown"]["exchange"].startswith("below exchange by ") and "µmol/L" in v["shown"][
        "exchange"]  # fmt: skip
    assert v["shown"]["tcb"].endswith("µmol/L") and "mg/dL" not in str(v["shown"])
    far = published(reading(2, 80, 2.0), baby)  # 72 h or older, far below: clinical judgement
    (v,) = jaundice.readings_for_view([far], baby, MG_DL)
    assert v["shown"]["next_by"] is None and v["assessment"]["follow_up"]["latest_h"] is None


def test_view_survives_what_it_cannot_assess():
    baby = {"birth_time": BORN, "ga_weeks": 33}  # below the guideline's 35 weeks
    bad = [reading(1, 30, 8.0), {"msg_id": "x", "t": "not a time", "tcb_mg_dl": "12"},
           {"msg_id": "y"}, reading(2, -3, 8.0)]  # fmt: skip
    view = jaundice.readings_for_view(bad, baby, MG_DL)
    assert len(view) == 4
    assert all(v["assessment"] is None for v in view)
    assert "35" in next(v for v in view if v.get("seq") == 1)["assessment_error"]


def _processor(baby: dict) -> tuple[jaundice.JaundiceProcessor, list]:
    session = SimpleNamespace(state=SimpleNamespace(device_id="tcb-01", boot=1, info={}))
    sent: list = []
    proc = jaundice.JaundiceProcessor(
        session, lambda topic, msg, **kw: sent.append((topic, msg)), baby
    )  # type: ignore[arg-type]
    return proc, sent


def test_a_corrected_birth_time_reassesses_the_latest_reading_alerts_at_once():
    baby = {"birth_time": BORN, "ga_weeks": 38}
    proc, sent = _processor(baby)
    # a reading at 60 h on the old birth time: 14 mg/dL is below phototherapy (about 17.4)
    proc.previous.append((T_BORN + 60 * 3600, 14.0))
    assert "tcb_above_phototherapy" not in proc.alerts.active()
    # the baby was in fact born 40 h later: the reading was at 20 h, far above (about 11.7)
    later = {"birth_time": iso_time(T_BORN + 40 * 3600), "ga_weeks": 38}
    proc.apply_settings({}, later)
    assert "tcb_above_phototherapy" in proc.alerts.active()
    proc.apply_settings({}, dict(later))  # nothing changed: nothing re-published
    alerts = [m for t, m in sent if t[-1] == "alert" and m["alert"] == "tcb_above_phototherapy"]
    assert len(alerts) == 1
    # every amount with its unit, in both units (alerts reach the hospital and either ward)
    assert re.fullmatch(r"TcB 14\.0 mg/dL \(239 µmol/L\) is at or above the AAP 2022 "
                        r"phototherapy threshold \(\d+\.\d mg/dL \(\d+ µmol/L\)\)",
                        alerts[0]["detail"])  # fmt: skip
    proc.apply_settings({}, {**later, "ga_weeks": 30})  # refused by the guideline: no crash
    assert "tcb_above_phototherapy" in proc.alerts.active()


def test_a_meter_reports_no_skin_contact_state_between_presses():
    proc, _ = _processor({})
    assert proc.status_fields()["on_skin"] is None


def test_set_details_that_cannot_assess_a_reading_say_why_not_ask_for_them():
    baby = {"birth_time": BORN, "ga_weeks": 38}
    before = reading(1, -2, 8.0)  # taken 2 h before the birth time
    at = parse_time(before["t"]) or 0.0
    with pytest.raises(ValueError, match=r"^taken before the birth time \(2026-11-20T08:00:00"):
        jaundice.assess_at(8.0, at, baby, [])
    unreadable = {"birth_time": "20/11/2026 08:00", "ga_weeks": 38}
    with pytest.raises(ValueError, match="birth_time: not an ISO 8601 time with a time zone"):
        jaundice.assess_at(8.0, at, unreadable, [])
    # not set yet: no assessment and no error (the nurse view asks for them)
    for unset in ({"ga_weeks": 38}, {"birth_time": BORN}, {"birth_time": "", "ga_weeks": 38}):
        assert jaundice.assess_at(8.0, at, unset, []) is None
    # the view says why, for each reading, and an error published with other details goes
    after = {**reading(2, 30, 8.0), "assessment_error": "taken before the birth time (x)"}
    view = jaundice.readings_for_view([before, after], baby, MG_DL)
    assert view[0]["assessment"] is None
    assert view[0]["assessment_error"].startswith("taken before the birth time")
    assert view[1]["assessment"] is not None and "assessment_error" not in view[1]
    (v,) = jaundice.readings_for_view([after], unreadable, MG_DL)
    assert v["assessment_error"] == (
        "birth_time: not an ISO 8601 time with a time zone: '20/11/2026 08:00'"
    )
