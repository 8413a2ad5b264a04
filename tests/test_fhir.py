"""FHIR Observations: codes, units, deterministic identifiers, gaps kept as gaps, windows."""

from __future__ import annotations

import math

import pytest

from gateway.processing.fhir import TraceWindow, resource_id, tcb_observations, trace_observation

pytestmark = pytest.mark.unit


def test_trace_observation_keeps_gaps_and_is_deterministic():
    a = trace_observation("fhr", "gw", "fh-01", 3, 240, 1_700_000_000.0, [141.5, None, math.nan])
    b = trace_observation("fhr", "gw", "fh-01", 3, 240, 1_700_000_000.0, [141.5, None, math.nan])
    assert a == b and a["id"] == resource_id("fh-01:3:fhr-obs:240")
    assert a["code"]["coding"][0]["code"] == "55283-6"
    assert a["valueSampledData"]["data"] == "141.5 E E"
    assert (a["valueSampledData"]["lowerLimit"], a["valueSampledData"]["upperLimit"]) == (50, 210)
    assert a["valueSampledData"]["origin"]["code"] == "/min"
    assert a["effectivePeriod"]["end"] == "2023-11-14T22:13:20.750Z"
    assert (
        trace_observation("mhr", "gw", "fh-01", 3, 240, 0.0, [80.0])["code"]["coding"][0]["code"]
        == "8867-4"
    )


def test_a_rate_off_the_chart_is_above_or_below_the_limits():
    """The FHR's limits are the CTG chart's 50-210 bpm (dsp's valid range), the maternal
    rate's its estimator's 40-200: a value outside is "U" or "L", never a number beyond them."""
    fhr = trace_observation("fhr", "gw", "fh-01", 1, 0, 0.0, [230.0, 210.0, 50.0, None])
    assert fhr["valueSampledData"]["data"] == "U 210.0 50.0 E"
    mhr = trace_observation("mhr", "gw", "fh-01", 1, 0, 0.0, [45.0, 39.0, 201.0])
    assert mhr["valueSampledData"]["data"] == "45.0 L U"
    assert mhr["valueSampledData"]["lowerLimit"] == 40


def test_tcb_observations_units_and_flagged_readings():
    r = {"msg_id": "tcb-01:1:tcb:4", "device_id": "tcb-01", "t": "2026-11-23T10:02:11.400Z",
         "tcb_mg_dl": 11.2, "tcb_umol_l": 191.5, "ci_low_mg_dl": 9.9, "ci_high_mg_dl": 12.5,
         "flag": ""}  # fmt: skip
    mg, umol = tcb_observations("gw", r)
    assert (mg["code"]["coding"][0]["code"], mg["valueQuantity"]["code"]) == ("58941-6", "mg/dL")
    assert (umol["code"]["coding"][0]["code"], umol["valueQuantity"]["unit"]) == (
        "72898-0",
        "umol/L",
    )
    assert mg["effectiveDateTime"] == r["t"] and mg["identifier"][0]["value"] != umol["id"]
    flagged = {**r, "tcb_mg_dl": None, "tcb_umol_l": None, "flag": "no_contact"}
    for obs in tcb_observations("gw", flagged):
        assert "valueQuantity" not in obs and obs["dataAbsentReason"]["text"] == "no_contact"


def test_trace_windows_align_and_restart_after_a_break():
    w = TraceWindow(1, points=8)
    assert w.add(1, 0.0, [140.0] * 6) == []
    done = w.add(7, 1.5, [141.0] * 6)
    assert [(s, len(v)) for s, _, v in done] == [(1, 7)]  # points 1..7, then aligned windows
    done = w.add(13, 3.0, [142.0] * 4)
    assert [(s, t, len(v)) for s, t, v in done] == [(8, 1.75, 8)]
    assert w.add(100, 25.0, [1.0] * 3) == []  # a break: nothing joined across it
    assert w.start == 100
