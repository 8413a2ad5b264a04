"""Supervision of the firmware (firmware/lib/supervisor.py): a watchdog fed by a task that checks
the others are alive, an asyncio exception handler that resets, the reset's cause reported at the
next boot, and the loop's lateness measured. The watchdog of the simulation runs on a thread of
its own (firmware/sim/board_sim.py), so a stopped loop cannot keep it fed."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from simulators.fleet import CH_DOPPLER, FIRMWARE_DIR, feed_block
from tests.harness.micropython import MPY, firmware_argv, run_micropython
from tests.harness.wait import eventually

pytestmark = pytest.mark.system

CH_FAULT = 9  # tests/mpy/fault_boot.py: 1 raises in a task, 2 blocks the loop


def test_a_task_that_ends_stops_the_feeding_and_an_exception_resets():
    printed = run_micropython(MPY / "supervisor_check.py", str(FIRMWARE_DIR))
    out = json.loads(printed.splitlines()[-1])  # after the tracebacks the handlers print
    assert out["boot_line"] == "BOOT reset_cause watchdog task doppler ended", out
    assert out["supervisor_done"] and out["fed_after"] == out["fed_before"] >= 1, out
    assert out["notes"] == ["task doppler ended"], out
    assert out["wdt_ms"] == 8000
    # The 150 ms a task held the loop, less up to one 20 ms period of the supervisor's probe
    # (the hold may begin anywhere in it: 130 ms measured once in a full run)
    assert 150 - 20 <= out["lag_max_ms"] < 400, out
    assert out["resets"] == ["exception: ValueError('bad',)"], out
    assert out["boot_resets"] == ["main: OSError(5,)"], out  # never the REPL
    assert out["write_errors"] == 1, out  # a write the app fails on: dropped, not the radio


class Device:
    """The fetal monitor's firmware on its simulation HAL, with no radio peer, fed silence."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.settings = workdir / "device.json"
        self.settings.write_text(json.dumps({"id": "fh-sup", "radio": "127.0.0.1:9"}))
        self.console = workdir / "console.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        boots = len(self.lines("BOOT ")) if self.console.exists() else 0
        with open(self.console, "ab") as console:
            self.proc = subprocess.Popen(
                firmware_argv(self.dir, MPY / "fault_boot.py",
                              FIRMWARE_DIR / "fetal_heart" / "main.py", self.settings),
                stdin=subprocess.PIPE, stdout=console, stderr=console, cwd=self.dir,
            )  # fmt: skip
        eventually(lambda: len(self.lines("BOOT ")) > boots, 10, "the device booted")
        for _ in range(10):  # some silence for its ADC
            self.send(CH_DOPPLER, bytes(400))

    def send(self, channel: int, body: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(feed_block(channel, body))
        self.proc.stdin.flush()

    def lines(self, prefix: str) -> list[str]:
        text = self.console.read_text(errors="replace")
        return [line for line in text.splitlines() if line.startswith(prefix)]

    def ended(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.send(255, b"")
                self.proc.wait(3)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def test_an_exception_resets_and_a_stalled_loop_is_reset_by_the_watchdog(tmp_path):
    dev = Device(tmp_path)
    try:
        dev.start()
        assert dev.lines("BOOT ") == ["BOOT reset_cause power_on "]
        dev.send(CH_FAULT, b"\x01")  # an exception in a task that nobody awaits
        assert dev.ended(10) != 0
        assert dev.lines("RESET ") == ["RESET hard exception: RuntimeError('injected',)"]

        dev.start()  # the board boots again
        assert (
            dev.lines("BOOT ")[-1] == "BOOT reset_cause hard exception: RuntimeError('injected',)"
        )
        t0 = time.monotonic()
        dev.send(CH_FAULT, b"\x02")  # the loop stops: nobody feeds the watchdog
        assert dev.ended(20) != 0
        waited = time.monotonic() - t0
        assert dev.lines("RESET ")[-1] == "RESET watchdog ", dev.lines("")
        assert 7.5 <= waited < 15, waited  # the watchdog's 8 s

        dev.start()
        assert dev.lines("BOOT ")[-1] == "BOOT reset_cause watchdog "
        dev.stop()
        assert dev.ended(5) == 0  # the simulator's quit ends it cleanly, no reset
        assert len(dev.lines("RESET ")) == 2
    finally:
        dev.stop()


def test_the_device_info_carries_the_reset_cause_and_the_loop_lateness():
    out = json.loads(run_micropython(MPY / "info_check.py", str(FIRMWARE_DIR)))
    assert out["reset_cause"] == "watchdog" and out["reset_note"] == "task tx ended", out
    assert out["loop_lag_max_ms"] == 37, out
