"""The fetal movement marker: the mother presses the monitor's button briefly when she feels the
baby move, as on a CTG machine's event marker. The real firmware under MicroPython sends the
mark stamped with the time she pressed; the gateway publishes it (docs/mqtt.md, "Movement
marks") at that time on the trace, also when it comes late, resent after the cable was out; a
long press is still the pairing gesture, and a short one in the pairing window is not a mark.
The button's press classifier runs under MicroPython with made-up times (tests/mpy)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import time
from types import SimpleNamespace

import matplotlib.image as mpimg
import numpy as np
import pytest

from gateway.config import config_from_dict
from gateway.processing.recording import Recordings, check_schedule
from gateway.processing.report import (
    MOVEMENT,
    MOVEMENT_COLOUR,
    STRIP_LEFT_CM,
    ReportMark,
    SessionReport,
    movements_line,
    render_session_report,
)
from gateway.publish.outbox import Outbox
from gateway.state.history import History
from gateway.times import iso_time, parse_time
from gateway.web.nurses import NurseAccounts
from simulators.fleet import DeviceSpec
from tests.harness.chain import run_chain
from tests.harness.contract import validator
from tests.harness.micropython import FIRMWARE_LIB, run_micropython
from tests.harness.paths import ARTIFACTS, REPO
from tests.harness.wait import eventually_async
from tests.harness.web import PASSWORD, USER

_PRESS_S = 0.3  # the HAL stamps the press within this of the test's clock (a pipe and a loop)


def _point_time(fhr: list[dict], t_device_ms: int) -> float:
    """The wall time the trace gives the FHR point at `t_device_ms`: its message's t_start
    plus the points before it (the strip and the report place points so)."""
    for m in fhr:
        k = round((t_device_ms - m["t_device_ms"]) / (1000 * m["interval_s"]))
        if 0 <= k < m["count"]:
            return parse_time(m["t_start"]) + k * m["interval_s"]
    spans = [(m["t_device_ms"], m["t_device_ms"] + 250 * m["count"]) for m in fhr]
    raise AssertionError(f"no FHR point at device time {t_device_ms} ms: {spans}")


@pytest.mark.system
def test_short_presses_are_marks_at_press_time_even_resent_and_a_long_press_pairs(broker, tmp_path):
    spec = DeviceSpec("fh-01", "fetal_heart", seed=5, fhr_bpm=140.0)
    pressed: dict[str, float] = {}
    arrived: dict[str, float] = {}
    kept: list[str] = []

    def marks(gw) -> list[dict]:
        return gw.history.messages("fh-01", "movement", 0.0, float("inf"))

    def trace_end(gw) -> int:
        """The device time the FHR trace published so far reaches."""
        fhr = gw.history.messages("fh-01", "fhr", 0.0, float("inf"))
        return max((m["t_device_ms"] + 250 * m["count"] for m in fhr), default=0)

    async def during(gw, fleet):  # its sleeps are streaming time, the outage
        dev = fleet.devices[0]
        session = await eventually_async(lambda: gw.sessions.get("fh-01"), 15, "no session")
        await eventually_async(lambda: session.state.stats.frames > 100, 15, "not streaming")
        await asyncio.sleep(2.0)
        pressed["live"] = time.time()
        await dev.mark_movement()
        await eventually_async(lambda: len(marks(gw)) == 1, 10, "the live mark never came")
        await asyncio.sleep(1.0)
        dev.usb.unplug()  # the cable is out: nothing the device sends reaches the gateway
        await asyncio.sleep(0.5)
        pressed["resent"] = time.time()
        await dev.mark_movement()
        await asyncio.sleep(3.0)
        assert len(marks(gw)) == 1  # it could not have come yet
        dev.usb.plug()
        await eventually_async(lambda: len(marks(gw)) == 2, 15, "the mark was not resent")
        arrived["resent"] = time.time()
        late = marks(gw)[-1]["t_device_ms"] + 1000
        await eventually_async(lambda: trace_end(gw) > late, 30, "the trace was not refilled")
        # a long press opens the pairing window; a short one in it is pairing's, not a mark
        await dev.press_button()
        await eventually_async(lambda: dev.console_lines("PAIR open"), 10, "no pairing window")
        await dev.mark_movement()
        await asyncio.sleep(1.5)
        assert not dev.console_lines("PAIR accepted")  # no code shown: nothing to confirm
        kept.extend(m["msg_id"] for m in marks(gw))  # the nurse view's history, once each

    sub, gw = run_chain(broker, tmp_path, [spec], seconds=2, during=during, transport="serial")
    got = sub.of("fh-01", "movement")
    schema = validator("movement")
    for m in got:
        schema.validate(m)
    assert [m["seq"] for m in got] == [1, 2], got  # the press in the window is not a mark
    boot = got[0]["boot"]
    assert [m["msg_id"] for m in got] == [f"fh-01:{boot}:movement:{n}" for n in (1, 2)]
    live, resent = (parse_time(m["t"]) for m in got)
    assert abs(live - pressed["live"]) < _PRESS_S, (live, pressed)
    # resent when the cable came back, 3.5 s later, but timed when she pressed
    assert arrived["resent"] - pressed["resent"] > 3.0
    assert abs(resent - pressed["resent"]) < _PRESS_S, (resent, pressed)
    fhr = sub.of("fh-01", "fhr")
    for m in got:  # each lands on the trace at its own time: the same clock as the points
        assert abs(_point_time(fhr, m["t_device_ms"]) - parse_time(m["t"])) < 0.15, m
    assert kept == [m["msg_id"] for m in got]
    dev_dir = tmp_path / "devices" / "fh-01"
    console = (dev_dir / "console.log").read_text()
    assert console.count("IND tone 1760 60") == 2, console[-2000:]
    assert "MemoryError" not in console and "Traceback" not in console
    stats = gw.sessions["fh-01"].state.stats
    assert stats.malformed == 0 and stats.lost_records == 0, stats


@pytest.mark.system
def test_the_press_classifier_tells_taps_short_and_long_presses_apart():
    """presses.py, as a board's HAL drives it from the pin's IRQ, under MicroPython."""
    out = json.loads(run_micropython(REPO / "tests" / "mpy" / "presses_check.py", FIRMWARE_LIB))
    short, long_, tap, bounce, held_on = (out[k] for k in
                                          ("short", "long", "tap", "bounce", "held_on"))  # fmt: skip
    assert short == [[1, 1000]]  # released after 300 ms: a short press, timed at its start
    assert long_ == [[2, 1000]]  # told once, as 2 s is reached, not again at the release
    assert tap == [[1, 1000]]  # down and up between two polls: still a press
    assert bounce == [[1, 1000]]  # the contacts chattering for 20 ms: one press
    assert held_on == []  # down at start-up with no edge yet, released: never a mark


@pytest.mark.system
def test_the_board_hal_hears_both_edges_and_tells_the_presses_apart():
    """hal_esp32.py on the stand-in machine module: the button's IRQ is on both edges, and a
    300 ms press and a 2.3 s one come out short and long, timed at their start."""
    mpy = REPO / "tests" / "mpy"
    out = json.loads(run_micropython(mpy / "button_hal_check.py", str(FIRMWARE_LIB.parent),
                                     str(mpy), heap="512K"))  # fmt: skip
    assert out["trigger"] == 3  # IRQ_FALLING | IRQ_RISING
    assert out["short"] == [[1, 0]] and out["long"] == [[2, 0]]


@pytest.mark.system
def test_a_short_press_confirms_a_pairing_code_and_does_nothing_else():
    """pairing.py's two press kinds (firmware/lib/pairing.py), under MicroPython."""
    out = json.loads(run_micropython(REPO / "tests" / "mpy" / "pairing_press_check.py",
                                     FIRMWARE_LIB))  # fmt: skip
    assert out["idle_short"] == 0  # IDLE: a short press opens nothing
    assert out["open_short"] == 1  # OPEN: a short press leaves the window as it is
    assert out["code_short"] == 4  # CODE: a short press accepts the code
    assert out["code_long"] == 4  # ... and so does a long one, as before
    assert out["idle_long"] == 1  # IDLE: a long press opens the window


def _mark(n: int, t: float) -> dict:
    return {"msg_id": f"fh-01:3:movement:{n}", "device_id": "fh-01", "boot": 3, "seq": n,
            "t": iso_time(t), "t_device_ms": 60_000 + n}  # fmt: skip


@pytest.mark.unit
def test_the_history_keeps_each_mark_once_across_a_restart(tmp_path):
    """A restarted gateway asks the monitor for its events again and publishes the marks it
    still holds under the same msg_id (their time mapped by a new time sync): kept once."""
    now = 1_790_000_000.0
    h = History(tmp_path, clock=lambda: now)
    h.record(("device", "fh-01", "movement"), _mark(1, now - 30))
    h.record(("device", "fh-01", "movement"), _mark(1, now - 30))  # a QoS 1 redelivery
    h.close()
    h = History(tmp_path, clock=lambda: now)
    h.record(("device", "fh-01", "movement"), _mark(1, now - 30.004))  # after the restart
    h.record(("device", "fh-01", "movement"), _mark(2, now - 10))
    kept = h.window("fh-01", now - 60, now)["movement"]
    assert [m["seq"] for m in kept] == [1, 2]
    h.close()


@pytest.mark.system  # pdftotext and pdftoppm are processes
def test_the_session_report_counts_the_marks_and_draws_each_where_she_pressed(tmp_path):
    start = parse_time("2026-11-23T10:00:00Z")
    n = 10 * 240  # ten minutes, one row of paper
    pressed = (125.0, 400.0, 530.0)
    report = SessionReport(
        "fh-01:1:1", "fh-01", iso_time(start), iso_time(start + n * 0.25), np.full(n, 140.0),
        np.full(n, 0.9), marks=(ReportMark(start + 300, "bradycardia"),
                                *(ReportMark(start + s, "", MOVEMENT) for s in pressed)),
    )  # fmt: skip
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_session_report(report))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip
    assert "Fetal movements marked by the mother: 3 (↑ under the trace)." in text
    assert "fetal movement (mother's mark)" in text  # the legend's key
    dpi = 100
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True)  # fmt: skip
    paper = round(6.0 / 2.54 * dpi)  # the strip, below the header and its legend (6 cm)
    page = mpimg.imread(next(tmp_path.glob("page*.png")))[paper:, :, :3]
    amber = np.array([int(MOVEMENT_COLOUR[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    columns = np.flatnonzero((np.abs(page - amber).max(axis=2) < 0.12).any(axis=0))
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 2) + 1)
    found_cm = [float(np.mean(r)) / dpi * 2.54 for r in runs]
    # 1 cm a minute from the strip's left edge, the row starting on the session's minute
    want_cm = [STRIP_LEFT_CM + s / 60 for s in pressed]
    assert len(found_cm) == len(want_cm) and np.allclose(found_cm, want_cm, atol=0.08), found_cm
    empty = dataclasses.replace(report, marks=())
    assert "Fetal movements marked by the mother: none." == movements_line(empty)


@pytest.mark.system  # pdftotext is a process
def test_a_finished_session_reports_the_marks_pressed_during_it(tmp_path):
    """Recordings reads the marks from the history (as published) into the session's report:
    the two pressed during the session, not the one before it."""
    outbox = Outbox(tmp_path / "outbox.sqlite", 1 << 30, 0)
    history = History(None)
    rec = Recordings(tmp_path, outbox, history, lambda parts, payload, **kw: payload)
    rec.store.set_schedule("fh-01", check_schedule({"sessions_per_day": 1, "duration_min": 2,
                                                    "risk_colour": "green"}))  # fmt: skip
    t0 = time.time() - 200
    for n, s in enumerate((-30.0, 20.0, 75.0)):  # the first before the session began
        history.record(("device", "fh-01", "movement"), _mark(n + 1, t0 + s))
    tracker = rec.tracker("fh-01")
    for i in range(0, 2 * 240 + 8, 4):  # two minutes of 4 Hz points, a batch a second
        t = t0 + i / 4
        tracker.feed(1, 1 + i, np.full(4, 140.0), np.full(4, 0.9), True, t, now=t)
    deadline = time.monotonic() + 30
    while rec.pending_reports and time.monotonic() < deadline:
        time.sleep(0.05)
    pdf = rec.report_pdf("fh-01:1:1")
    assert pdf is not None
    (tmp_path / "r.pdf").write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "r.pdf"), "-"], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip
    assert "Fetal movements marked by the mother: 2 (↑ under the trace)." in text
    rec.stop()


@pytest.mark.system
def test_the_nurse_view_draws_the_marks_on_the_strip_and_counts_them(tmp_path):
    """In Chromium: the marks of the window are arrows on the strip (data-marks), counted in the
    strip's text alternative and keyed in the legend, in English and Chinese; a mark published
    while the page is open arrives live."""
    from tests.harness.browser import log_in_as, new_page, served_to_chromium

    cfg = config_from_dict({"gateway": {"data_dir": "gw"}}, base_dir=tmp_path)
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    h = History(cfg.data_dir)
    recordings = Recordings(cfg.data_dir, None, h, lambda *a: None)  # type: ignore[arg-type]
    gw = SimpleNamespace(cfg=cfg, sessions={}, history=h, recordings=recordings)
    now = time.time()
    n = 10 * 240  # ten minutes ending now: all of it on the strip at 1 cm/min
    start = now - n * 0.25
    for i in range(0, n, 4):
        h.record(("device", "fh-01", "fhr"), {
            "msg_id": f"fh-01:1:fhr:{1 + i}", "device_id": "fh-01", "boot": 1, "seq": 1 + i,
            "count": 4, "interval_s": 0.25, "t_start": iso_time(start + i * 0.25),
            "t_device_ms": i * 250, "fhr_bpm": [140.0] * 4, "quality": [0.9] * 4,
            "maternal": [False] * 4})  # fmt: skip
    h.record(("device", "fh-01", "status"), {"device_id": "fh-01", "device_type": "fetal_heart",
             "link": "connected", "battery_pct": 80, "t": iso_time(now)})  # fmt: skip
    pressed = (start + 100, start + 400)
    for k, t in enumerate(pressed):
        h.record(("device", "fh-01", "movement"), _mark(k + 1, t))
    seen: dict = {}
    marks_js = "c => JSON.parse(c.dataset.marks).filter((m) => m.kind === 'movement')"

    async def main() -> None:
        async with served_to_chromium(gw, listen="127.0.0.1:0") as (web, browser):
            page, errors = await new_page(browser, viewport={"width": 1400, "height": 900})
            await log_in_as(page, web.url, USER, PASSWORD, "/login")
            await page.wait_for_selector("#strip[aria-label*='fetal movement']", state="attached")
            seen["marks"] = await page.eval_on_selector("#strip", marks_js)
            seen["start"] = float(await page.get_attribute("#strip", "data-start") or 0)
            frame = await page.get_attribute("#strip", "data-frame")
            seen["left"] = json.loads(frame or "{}")["left"]
            seen["summary_en"] = await page.get_attribute("#strip", "aria-label")
            seen["key_en"] = await page.text_content(".legend .movement-key")
            h.record(("device", "fh-01", "movement"), _mark(3, time.time()))  # pressed now
            await page.wait_for_selector(
                "#strip[aria-label*='3 fetal movements']", state="attached"
            )
            seen["live"] = await page.eval_on_selector("#strip", marks_js)
            await page.screenshot(path=str(ARTIFACTS / "nurse-view-movement-marks.png"))

            # a mark that comes live while the strip's window is being fetched, the answer read
            # before it: the page keeps the mark (the answer alone would drop it)
            later = {"t": 0.0}

            async def hold(route) -> None:
                answer = await route.fetch()
                later["t"] = time.time()
                h.record(("device", "fh-01", "movement"), _mark(4, later["t"]))
                await asyncio.sleep(1.0)  # its live event reaches the page first
                await route.fulfill(response=answer)

            await page.route("**/window?*", hold)
            async with page.expect_response(lambda r: "/window?" in r.url):
                await page.select_option("#speed", "3")
            await page.unroute("**/window?*")
            await page.evaluate("() => new Promise((r) => requestAnimationFrame(() => "
                                "requestAnimationFrame(r)))")  # fmt: skip
            seen["kept"] = [m["t"] for m in await page.eval_on_selector("#strip", marks_js)]
            seen["later"] = later["t"]
            await page.select_option("#speed", "1")
            await page.click("#lang-toggle")
            await page.wait_for_selector("#strip[aria-label*='胎动']", state="attached")
            seen["summary_zh"] = await page.get_attribute("#strip", "aria-label")
            seen["key_zh"] = await page.text_content(".legend .movement-key")
            seen["errors"] = errors

    asyncio.run(main())
    assert seen["errors"] == []
    assert [m["t"] for m in seen["marks"]] == pytest.approx(pressed, abs=0.001)
    px_per_s = 96 / 2.54 / 60  # CSS pixels a second at 1 cm a minute (ctgpaper.js)
    for m in seen["marks"]:  # each arrow on the paper where she pressed
        want = seen["left"] + (m["t"] - seen["start"]) * px_per_s
        assert m["x"] == pytest.approx(want, abs=1.0), (m, want)
    assert "2 fetal movements marked by the mother" in seen["summary_en"], seen["summary_en"]
    assert seen["key_en"] == "↑ fetal movement (mother's mark)"
    assert len(seen["live"]) == 3
    assert any(abs(t - seen["later"]) < 0.001 for t in seen["kept"]), seen
    assert "孕妇标记胎动 4 次" in seen["summary_zh"], seen["summary_zh"]
    assert seen["key_zh"] == "↑ 胎动（孕妇标记）"


@pytest.mark.unit
def test_the_hospital_ingest_stores_a_mark_and_numbers_it_per_boot():
    """perimon-ingest validates a mark against docs/schemas/movement.schema.json, stores it by
    its msg_id and counts its number in the boot's series (a missing one is a gap)."""
    from hospital.messages import Decoded, Invalid, decode, load_checks

    checks = load_checks()
    topic = "perimon/v1/gw-7f3a/device/fh-01/movement"
    m = _mark(4, 1_790_000_000.0)
    got = decode(topic, json.dumps(m).encode(), checks)
    assert isinstance(got, Decoded) and got.msg_id == "fh-01:3:movement:4"
    assert got.row.kind == "movement" and got.row.t == m["t"]
    assert got.sequence is not None and got.sequence[2:] == ("movement", 3, 4, 1)
    bad = decode(topic, json.dumps({**m, "seq": 0}).encode(), checks)  # marks count from 1
    assert isinstance(bad, Invalid) and bad.code == "schema"


@pytest.mark.unit
def test_the_simulated_mother_feels_each_movement_the_doppler_hears_once_a_loop():
    """DopplerSignal.movements_starting: the movements the scene puts in the audio, each counted
    in the read that holds its start, and again when the trace loops (the demo's mother marks
    them: DeviceSpec.marks_movements)."""
    from simulators.doppler import FS_TRACE_HZ, DopplerSignal
    from simulators.fleet import fetal_rhythm

    fhr, mhr = fetal_rhythm(DeviceSpec("fh-01", "fetal_heart", seed=3))
    doppler = DopplerSignal(fhr, mhr, fs_hz=4000, seed=3)
    move = doppler._scene.movement
    began = np.flatnonzero(move & ~np.concatenate(([False], move[:-1])))  # points they start
    assert len(began) >= 1
    loop = doppler._scene.n_samples
    chunk = 230_000  # 57.5 s of audio a read: some reads run over the end of the trace
    starts = [int(b * 4000 / FS_TRACE_HZ) + k * loop for k in range(3) for b in began]
    for _ in range(2 * loop // chunk + 1):  # twice round the trace, and a bit
        a = doppler._pos
        assert doppler.movements_starting(chunk) == sum(a <= x < a + chunk for x in starts), a
        doppler.read(chunk)
