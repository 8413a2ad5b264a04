"""The fetal movement marker: the mother presses the monitor's button briefly when she feels the
baby move, as on a CTG machine's event marker. The real firmware under MicroPython sends the
mark stamped with the time she pressed; the gateway publishes it (docs/mqtt.md, "Movement
marks") at that time on the trace, also when it comes late, resent after the cable was out; a
long press is still the pairing gesture, and a short one in the pairing window is not a mark.
The button's press classifier runs under MicroPython with made-up times (tests/mpy)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gateway.state.history import History
from gateway.times import iso_time, parse_time
from simulators.fleet import DeviceSpec
from tests.harness.chain import run_chain
from tests.harness.contract import validator
from tests.harness.micropython import FIRMWARE_LIB, run_micropython
from tests.harness.paths import REPO
from tests.harness.wait import eventually_async

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
