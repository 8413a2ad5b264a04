"""A fetal monitor's process held up for two seconds mid-recording (SIGSTOP, then SIGCONT: what a
CPU-bound neighbour or a long flash write does to the firmware's loop), with the real firmware
under MicroPython on the simulated radio.

The samples made meanwhile are read late, all at once. The device stamps each frame with its
samples' time, counting back over what its ADC's ring and clock say is still waiting
(firmware/fetal_heart/main.py, stamp), so the gateway sees no late stamps and no doubt about the
sample rate: the trace goes on within seconds, nothing is lost or flagged. Before, those frames
carried the time they were read, the rate the gateway had bound became unknown again
(gateway/device/sample_rate.py) and a seven-monitor run under load published no FHR for a
minute."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from gateway import protocol as p
from simulators.fleet import DeviceSpec
from tests.harness.chain import assert_contiguous, run_chain
from tests.harness.mqtt import Subscriber

pytestmark = pytest.mark.system

HELD_S = 2.0


def test_a_device_held_up_two_seconds_stamps_its_backlog_and_the_trace_goes_on(broker, tmp_path):
    spec = DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0, snr_db=15)
    watch = Subscriber(broker.host, broker.port)
    seen: dict = {}

    def points() -> int:
        return sum(m["count"] for m in watch.of("fh-01", "fhr"))

    async def hold_it(gw, fleet) -> None:
        deadline = time.monotonic() + 30
        while points() < 4 * 4 and time.monotonic() < deadline:  # the trace under way
            await asyncio.sleep(0.25)
        await asyncio.sleep(2.0)
        pid = fleet.devices[0].proc.pid
        os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(HELD_S)
        os.kill(pid, signal.SIGCONT)
        resumed, at_resume = time.monotonic(), points()
        while points() <= at_resume and time.monotonic() - resumed < 30:
            await asyncio.sleep(0.1)
        seen["trace_back_s"] = time.monotonic() - resumed
        await asyncio.sleep(4.0)  # the backlog's frames in the gateway's window
        rates = gw.sessions["fh-01"].rates
        seen["spread_ms"] = {s: rates[s].window_spread_ms for s in (p.Stream.DOPPLER, p.Stream.PPG)}

    sub, _ = run_chain(broker, tmp_path, [spec], seconds=4, during=hold_it)
    watch.close()

    # The device's stamps kept its samples' times: over the gateway's 20 s window, which holds
    # the frames read late, they stray from the nominal rate by what a read takes, not by the
    # two seconds held (a frame stamped when read would stray by them).
    assert seen["spread_ms"][p.Stream.DOPPLER] < 400, seen
    assert seen["spread_ms"][p.Stream.PPG] < 400, seen
    print(
        f"\nheld {HELD_S} s: stamps' spread {seen['spread_ms']} ms, trace back in "
        f"{seen['trace_back_s']:.1f} s"
    )  # The trace went on: points within the time a point needs (about 5 s behind the audio).
    assert seen["trace_back_s"] <= HELD_S + 6, seen
    fhr = sub.of("fh-01", "fhr")
    assert_contiguous(fhr)
    status = sub.of("fh-01", "status")[-1]
    assert status["rate_errors"] == {} and status["stats"]["lost_samples"] == 0, status
    assert not [a for a in sub.of("fh-01", "alert") if a["alert"] == "sample_rate"]
