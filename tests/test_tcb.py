"""TcB estimator: accuracy on held-out calibration babies per skin group, flags, interval."""

import csv
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dsp.tcb import (
    MG_DL_TO_UMOL_L,
    TcbModel,
    estimate_tcb,
    estimate_tcb_batch,
    fit_model,
    load_model,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
LED_NM = (450, 470, 505, 550, 590, 650)


def _shared_dir() -> Path:
    env = os.environ.get("PERIMON_SHARED_DIR")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="module")
def calibration():
    path = _shared_dir() / "data" / "tcb" / "calibration.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    near = np.array([[float(r[f"r_near_{nm}"]) for nm in LED_NM] for r in rows])
    far = np.array([[float(r[f"r_far_{nm}"]) for nm in LED_NM] for r in rows])
    tsb = np.array([float(r["tsb_mg_dl"]) for r in rows])
    group = np.array([r["skin_group"] for r in rows])
    return near, far, tsb, group


def _balanced_weights(group):
    w = np.ones(len(group))
    for g in np.unique(group):
        w[group == g] = len(group) / (3 * np.sum(group == g))
    return w


def test_held_out_bias_per_group_and_limits_of_agreement(calibration):
    near, far, tsb, group = calibration
    rng = np.random.default_rng(99)
    held = rng.random(len(tsb)) < 0.3
    model = fit_model(near[~held], far[~held], tsb[~held], weights=_balanced_weights(group[~held]))
    est = estimate_tcb_batch(near[held], far[held], model)
    pred = np.array([math.nan if e.tcb_mg_dl is None else e.tcb_mg_dl for e in est])
    res = pred - tsb[held]
    assert np.mean(np.isfinite(res)) > 0.98
    ok = np.isfinite(res)
    for g in ("light", "medium", "dark"):
        m = ok & (group[held] == g)
        assert abs(np.mean(res[m])) <= 0.5, g
    assert 1.96 * np.std(res[ok], ddof=1) <= 2.0


def test_shipped_model_unbiased_per_group_and_at_high_levels(calibration):
    near, far, tsb, group = calibration
    est = estimate_tcb_batch(near, far)
    pred = np.array([math.nan if e.tcb_mg_dl is None else e.tcb_mg_dl for e in est])
    res = pred - tsb
    ok = np.isfinite(res)
    for g in ("light", "medium", "dark"):
        assert abs(np.mean(res[ok & (group == g)])) <= 0.5, g
    assert abs(np.mean(res[ok & (tsb >= 18)])) <= 0.5


def test_interval_brackets_estimate_and_covers_about_95_percent(calibration):
    near, far, tsb, _ = calibration
    est = estimate_tcb_batch(near[::3], far[::3])
    pairs = zip(est, tsb[::3], strict=True)
    inside = [e.ci_low_mg_dl <= t <= e.ci_high_mg_dl for e, t in pairs if e.usable]
    assert 0.88 <= np.mean(inside) <= 0.995
    for e in est:
        if e.usable:
            assert e.ci_low_mg_dl <= e.tcb_mg_dl <= e.ci_high_mg_dl
            assert e.tcb_umol_l == pytest.approx(e.tcb_mg_dl * MG_DL_TO_UMOL_L, abs=0.06)


def test_shipped_model_round_trips(tmp_path):
    model = load_model()
    path = tmp_path / "m.json"
    import json

    path.write_text(json.dumps(model.to_dict()))
    again = load_model(path)
    assert np.allclose(again.coef, model.coef)
    with pytest.raises(ValueError):
        TcbModel.from_dict({"coef": [1.0]})


def test_bad_reflectances_are_flagged_not_numbers(calibration):
    near, far, _, _ = calibration
    n, f = near[0].copy(), far[0].copy()
    n_nan = n.copy()
    n_nan[2] = np.nan
    assert estimate_tcb(n_nan, f).flag == "invalid_reflectance"
    assert estimate_tcb(n, -f).flag == "invalid_reflectance"
    assert estimate_tcb(n * 0.01, f * 0.01).flag == "low_signal"
    weird = n.copy()
    weird[0] = 1.0  # blue brighter than a white reference while red is normal
    flagged = estimate_tcb(weird, f)
    assert flagged.flag and flagged.tcb_mg_dl is None and flagged.ci_low_mg_dl is None
    with pytest.raises(ValueError):
        estimate_tcb(n[:5], f[:5])


def test_fit_needs_enough_rows(calibration):
    near, far, tsb, _ = calibration
    with pytest.raises(ValueError):
        fit_model(near[:10], far[:10], tsb[:10])
    with pytest.raises(ValueError):
        fit_model(near, far, tsb[:-1])


@pytest.fixture
def meter_tcb(monkeypatch) -> dict[str, float]:
    """The gateway's jaundice processing with the meter's record and the model faked: every
    record decodes to a clean reading estimated at the returned dict's "value" in mg/dL (17.1
    times that in µmol/L, its interval 1 mg/dL either side), which a test sets as it goes."""
    from dsp.tcb import TcbEstimate
    from dsp.tcb_counts import CalibratedReading
    from gateway.processing import jaundice

    next_tcb = {"value": 0.0}
    monkeypatch.setattr(jaundice.p, "decode_tcb", lambda payload: SimpleNamespace(
        contact=True, ambient_high=False, saturated=False, flashes_disagree=False,
        dark_before=(0, 0), dark_after=(0, 0), flashes=np.zeros((6, 2, 5)), temperature_c=30.0,
        led_drive=(200,) * 6,
    ))  # fmt: skip
    monkeypatch.setattr(jaundice, "calibrated_reflectance",
                        lambda *a: CalibratedReading(np.ones(6), np.ones(6), ""))  # fmt: skip
    monkeypatch.setattr(jaundice, "estimate_tcb", lambda near, far: TcbEstimate(
        next_tcb["value"], next_tcb["value"] * 17.1, next_tcb["value"] - 1,
        next_tcb["value"] + 1, "",
    ))  # fmt: skip
    return next_tcb


def test_gateway_alerts_follow_the_guideline_conditions(meter_tcb):
    """Each AAP condition of the latest usable reading raises one alert, cleared when it ends."""
    from types import SimpleNamespace

    from dsp.bilirubin_zones import exchange_threshold_mg_dl, phototherapy_threshold_mg_dl
    from gateway import protocol as p
    from gateway.processing import jaundice

    birth = 1_700_000_000.0
    next_tcb = meter_tcb
    next_tcb["value"] = 5.0
    session = SimpleNamespace(
        state=SimpleNamespace(device_id="tcb-01", boot=1, info={"calibration": {"x": 1}}),
        unix_time=lambda t_ms: birth + t_ms / 1000.0,
    )
    sent = []
    proc = jaundice.JaundiceProcessor(
        session, lambda topic, msg, **kw: sent.append((topic, msg)),
        {"birth_time": "2023-11-14T22:13:20Z", "ga_weeks": 38, "risk_factors": False},
    )  # fmt: skip

    def reading(age_h: float, tcb: float) -> set[str]:
        next_tcb["value"] = tcb
        proc.on_record(p.Stream.TCB, int(age_h), int(age_h * 3600 * 1000), b"")
        last = [m for t, m in sent if t[-1] == "tcb"][-1]
        assert last["tcb_mg_dl"] == tcb and last["assessment"]["age_hours"] == age_h
        return set(proc.alerts.active())

    assert reading(30, 5.0) == set()
    photo = phototherapy_threshold_mg_dl(40, 38, False)
    assert reading(40, photo - 1.0) == {"serum_bilirubin_advised", "tcb_rapid_rise"}
    exchange = exchange_threshold_mg_dl(60, 38, False)
    assert reading(60, exchange - 1.0) == {  # and rising > 0.2 mg/dL/h since 40 h
        "serum_bilirubin_advised", "tcb_above_phototherapy", "tcb_escalation_of_care",
        "tcb_rapid_rise",
    }  # fmt: skip
    assert reading(62, exchange + 0.5) >= {"tcb_above_exchange", "tcb_above_phototherapy"}
    assert "tcb_escalation_of_care" not in proc.alerts.active()
    assert reading(200, 8.0) == set()  # all cleared
    states = [(m["alert"], m["state"]) for t, m in sent if t[-1] == "alert"]
    assert ("tcb_above_exchange", "raised") in states
    assert ("tcb_above_exchange", "cleared") in states

    # a gestation the guideline does not cover (set in a config file): the reading is still
    # published, without an assessment, and the gateway keeps running
    proc.baby["ga_weeks"] = 33
    next_tcb["value"] = 9.0
    proc.on_record(p.Stream.TCB, 300, 300 * 3600 * 1000, b"")
    last = [m for t, m in sent if t[-1] == "tcb"][-1]
    assert last["tcb_mg_dl"] == 9.0 and last["assessment"] is None


def test_readings_that_arrive_before_the_device_info_wait_for_its_calibration(meter_tcb):
    """After a reconnection the meter's info (its factory calibration) and its readings travel
    on separate streams; a reading that comes first waits for the info instead of being
    published as `no_calibration` (a number lost), and is published flagged only when no info
    came within INFO_WAIT_S."""
    from gateway import protocol as p
    from gateway.processing import jaundice

    meter_tcb["value"] = 9.0  # the estimate TcbEstimate(9.0, 153.9, 8.0, 10.0, "")
    state = SimpleNamespace(device_id="tcb-01", boot=1, info={})
    session = SimpleNamespace(state=state, unix_time=lambda t_ms: 1_700_000_000.0 + t_ms / 1e3)
    sent = []
    proc = jaundice.JaundiceProcessor(session, lambda topic, msg, **kw: sent.append(msg), {})
    readings = lambda: [m for m in sent if "tcb_mg_dl" in m]  # noqa: E731
    proc.on_record(p.Stream.TCB, 0, 1000, b"")
    proc.on_record(p.Stream.TCB, 1, 2000, b"")
    proc.tick(time.monotonic())
    assert readings() == []  # held, not flagged
    state.info = {"calibration": {"x": 1}}
    proc.on_record(p.Stream.INFO, 0, 2500, b"{}")
    assert [(m["seq"], m["tcb_mg_dl"], m["flag"]) for m in readings()] == [
        (0, 9.0, ""),
        (1, 9.0, ""),
    ]
    # a meter whose info never comes: its reading is published flagged after INFO_WAIT_S
    state2 = SimpleNamespace(device_id="tcb-02", boot=1, info={})
    session2 = SimpleNamespace(state=state2, unix_time=session.unix_time)
    sent.clear()
    proc2 = jaundice.JaundiceProcessor(session2, lambda topic, msg, **kw: sent.append(msg), {})
    proc2.on_record(p.Stream.TCB, 0, 1000, b"")
    proc2.tick(time.monotonic() + jaundice.INFO_WAIT_S - 1)
    assert readings() == []
    proc2.tick(time.monotonic() + jaundice.INFO_WAIT_S + 1)
    assert [(m["seq"], m["tcb_mg_dl"], m["flag"]) for m in readings()] == [
        (0, None, "no_calibration")
    ]
