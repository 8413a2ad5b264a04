"""The strip lifts its pen where the CTG analyses reject points as artefact: the server runs
the same rejection (dsp/ctg_artefact.py) over the published FHR and sends the rejected points
with the window and on their own (gateway/web/artefacts.py); the live messages are unchanged."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest

from dsp.ctg_artefact import reject_artefacts
from gateway.config import config_from_dict
from gateway.processing.recording.service import Recordings
from gateway.state.history import History
from gateway.times import iso_time
from gateway.web.artefacts import rejected, rejected_runs
from gateway.web.nurses import NurseAccounts
from gateway.web.server import WebServer
from tests.harness.web import PASSWORD, USER, api, login, opener

T0 = float(int(time.time()) - 3 * 3600)  # wall time of point 1 of boot 1: within the history


def messages(fhr: np.ndarray, boot: int = 1, first: int = 1, per: int = 4, t0: float = T0):
    """`fhr` (NaN: no rate) as the gateway's fhr messages, `per` points each."""
    out = []
    for i in range(0, len(fhr), per):
        vals = [None if np.isnan(v) else round(float(v), 1) for v in fhr[i : i + per]]
        seq = first + i
        out.append({"msg_id": f"fh-01:{boot}:fhr:{seq}", "device_id": "fh-01", "boot": boot,
                    "seq": seq, "count": len(vals), "interval_s": 0.25,
                    "t_start": iso_time(t0 + i * 0.25), "fhr_bpm": vals,
                    "quality": [0.9] * len(vals), "maternal": [False] * len(vals)})  # fmt: skip
    return out


def miscounted(minutes: float = 20) -> np.ndarray:
    """131 bpm with a 20 s miscount at 3/2 of it (200 bpm) at 8 min and a lost stretch."""
    fhr = 131 + 3 * np.sin(np.arange(int(minutes * 240)) / 30)
    fhr[8 * 240 : 8 * 240 + 80] = 200.0
    fhr[12 * 240 : 12 * 240 + 40] = np.nan
    return fhr


@pytest.mark.unit
def test_rejected_points_are_the_ones_the_ctg_analyses_reject():
    fhr = miscounted()
    runs = rejected_runs(messages(fhr))
    assert runs == [{"boot": 1, "first": 8 * 240 + 1, "last": 8 * 240 + 80,
                     "reason": "halving_doubling"}]  # fmt: skip
    reason = reject_artefacts(fhr).reason
    masked = np.zeros(len(fhr), bool)
    for r in runs:
        masked[r["first"] - 1 : r["last"]] = True
    assert np.array_equal(masked, reason >= 2)  # the same points; lost ones are null already


@pytest.mark.unit
def test_a_missing_message_is_signal_loss_and_boots_are_apart():
    fhr = miscounted(12)
    msgs = messages(fhr)
    del msgs[100:160]  # a minute never published: the points keep their numbers
    spike = np.full(240 * 3, 140.0)
    spike[300:302] = 185.0  # half a second 45 bpm above: a spike
    msgs += messages(spike, boot=2, t0=T0 + 3600)
    runs = rejected_runs(msgs)
    assert {(r["boot"], r["reason"]) for r in runs} == {(1, "halving_doubling"), (2, "spike")}
    assert [(r["first"], r["last"]) for r in runs if r["boot"] == 2] == [(301, 302)]


@pytest.mark.unit
def test_a_window_is_judged_with_the_ten_minutes_before_it():
    """A miscount that began before the window is still rejected inside it, and the runs stop
    at the window's points."""
    h = History(None)
    fhr = miscounted()
    fhr[8 * 240 : 8 * 240 + 200] = 200.0  # the miscount lasts 50 s, from 8:00
    for m in messages(fhr):
        h.record(("device", "fh-01", "fhr"), m)
    since = T0 + 8 * 60 + 30.5  # the window starts 30 s into it (point 2041 is at 8:30)
    (r,) = rejected(h, "fh-01", since, T0 + 20 * 60)
    assert r["reason"] == "halving_doubling"
    assert (r["first"], r["last"]) == (8 * 240 + 121, 8 * 240 + 200)
    # the window alone cannot tell a miscount from the start of a trace
    alone = rejected_runs(h.window("fh-01", since, T0 + 20 * 60)["fhr"])
    assert [x["reason"] for x in alone] == ["start_up"]
    assert rejected(h, "fh-01", T0 + 15 * 60, T0 + 20 * 60) == []
    assert rejected(h, "fh-00", T0, T0 + 20 * 60) == []


@pytest.mark.system
def test_the_window_and_the_live_strip_get_the_rejected_points(tmp_path):
    cfg = config_from_dict({"gateway": {"data_dir": "gw"}}, base_dir=tmp_path)
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    gw = SimpleNamespace(cfg=cfg, sessions={}, history=History(cfg.data_dir))
    now = time.time()
    sent = messages(miscounted(), t0=now - 20 * 60 - 30)
    for m in sent:
        gw.history.record(("device", "fh-01", "fhr"), m)

    def browse(url: str) -> tuple[dict, dict, int]:
        o, _ = opener()
        login(o, url)
        _, w = api(o, url, f"/api/devices/fh-01/window?since={now - 1800}&until={now}")
        _, live = api(o, url, f"/api/devices/fh-01/rejected?since={now - 1800}&until={now}")
        status, _ = api(o, url, "/api/devices/fh-01/rejected?since=x")
        return w, live, status

    async def main():
        server = WebServer(gw, listen="127.0.0.1:0")  # type: ignore[arg-type]
        await server.start()
        try:
            return await asyncio.to_thread(browse, server.url)
        finally:
            await server.stop()

    w, live, bad = asyncio.run(main())
    expected = [{"boot": 1, "first": 8 * 240 + 1, "last": 8 * 240 + 80,
                 "reason": "halving_doubling"}]  # fmt: skip
    assert w["fhr_rejected"] == expected and live["fhr_rejected"] == expected
    assert [m["fhr_bpm"] for m in w["fhr"]] == [m["fhr_bpm"] for m in sent]  # as published
    assert bad == 400


@pytest.mark.system
def test_the_nurse_view_lifts_the_pen_and_heads_with_dawes_redman(tmp_path):
    """In Chromium: the strip draws every published point but the rejected ones, the CTG box
    of an antenatal monitor is headed by the Dawes-Redman result, a cleared alert asks for no
    acknowledgement, and the assignment form offers the CTG mode."""
    from tests.harness.browser import log_in_as, new_page, served_to_chromium
    from tests.harness.paths import ARTIFACTS

    cfg = config_from_dict({"gateway": {"data_dir": "gw"}}, base_dir=tmp_path)
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    h = History(cfg.data_dir)
    recordings = Recordings(cfg.data_dir, None, h, lambda *a: None)  # type: ignore[arg-type]
    gw = SimpleNamespace(cfg=cfg, sessions={}, history=h, recordings=recordings)
    now = time.time()
    fhr = miscounted(15)  # ends now: all of it on the strip at 1 cm/min
    start = now - len(fhr) * 0.25
    for m in messages(fhr, t0=start):
        h.record(("device", "fh-01", "fhr"), m)
    h.record(("device", "fh-01", "status"), {"device_id": "fh-01", "device_type": "fetal_heart",
             "link": "connected", "battery_pct": 80, "t": iso_time(now)})  # fmt: skip
    dr = {"criteria_met": True, "status": "met", "time_to_met_min": 10, "analysed_min": 10,
          "basal_heart_rate_bpm": 131.0, "stv_ms": 6.1, "high_variation_min": 6,
          "low_variation_min": 0, "accelerations": 3, "decelerations_lost_beats": [],
          "signal_loss_pct": 2.0, "reasons_not_met": []}  # fmt: skip
    h.record(("device", "fh-01", "ctg"), {"msg_id": "fh-01:1:ctg:3600", "seq": 1,
             "device_id": "fh-01", "boot": 1, "window_s": 900.0, "t": iso_time(now),
             "ctg_mode": "antenatal", "baseline_bpm": 131.0, "variability_bpm": 6.0,
             "stv_ms": 6.0, "accelerations": [], "decelerations": [], "signal_loss_pct": 2.0,
             "artefact_pct": 0.9, "sinusoidal": False, "figo_class": "normal", "reasons": [],
             "dawes_redman": dr, "dawes_redman_session_id": "fh-01:1:1"})  # fmt: skip
    for kind, state, raised in (("signal_loss", "raised", now - 600),
                                ("signal_loss", "cleared", now - 600),
                                ("bradycardia", "raised", now - 60)):  # fmt: skip
        h.record(("device", "fh-01", "alert"), {
            "msg_id": f"fh-01:alert:{kind}:{int(raised * 1000)}:{state}", "seq": 1,
            "device_id": "fh-01", "alert": kind, "state": state, "severity": "low",
            "detail": "test", "t": iso_time(now), "raised_at": iso_time(raised)})  # fmt: skip
    seen: dict = {}

    async def main() -> None:
        async with served_to_chromium(gw, listen="127.0.0.1:0") as (web, browser):
            page, errors = await new_page(browser, viewport={"width": 1400, "height": 900})
            await log_in_as(page, web.url, USER, PASSWORD, "/login")
            await page.wait_for_selector("#strip:not([data-points='0'])", state="attached")
            for key in ("points", "rejected"):
                seen[key] = int(await page.get_attribute("#strip", f"data-{key}") or 0)
            seen["label"] = await page.text_content("#ctg-label")
            seen["headline"] = await page.text_content("#figo-class")
            seen["buttons"] = await page.eval_on_selector_all(
                "li.alert",
                "els => els.map(e => [e.dataset.alert, !!e.querySelector('button.ack')])",
            )
            seen["mode"] = await page.input_value("select[name=ctg_mode]")
            await page.screenshot(path=str(ARTIFACTS / "nurse-view-artefact.png"))
            seen["errors"] = errors

    asyncio.run(main())
    assert seen["rejected"] == 80
    assert seen["points"] == int(np.isfinite(fhr).sum()) - 80  # the miscount is not drawn
    assert seen["label"] == "CTG (Dawes-Redman, antenatal)"
    assert seen["headline"] == "criteria met at 10 min"
    buttons = {aid.split(":")[2]: has for aid, has in seen["buttons"]}
    assert buttons == {"signal_loss": False, "bradycardia": True}  # cleared: nothing to ack
    assert seen["mode"] == "antenatal"
    assert seen["errors"] == []
