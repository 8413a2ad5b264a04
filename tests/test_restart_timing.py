"""A gateway restarted for longer than the device's buffer holds: the trace keeps the device's
time. The loss comes first (before any sample of the resumed boot), is published as null points
marked lost, counted once, and every later point is stamped at its own device time."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gateway import protocol as p
from gateway.config import MqttSection, ProcessingSection
from gateway.device.session import DeviceSession
from gateway.processing.fetal import FetalProcessor
from gateway.processing.resume import resume_plan
from gateway.publish.mqtt import Publisher
from gateway.publish.outbox import Outbox
from simulators.doppler import DopplerSignal
from simulators.ppg import PpgSignal

pytestmark = pytest.mark.unit

T0_MS = 7_000  # device ms at the boot's first sample
STEP_S = 60.0  # the FHR steps from 125 to 160 bpm here: a content clock for the trace
FRAME = {p.Stream.DOPPLER: 240, p.Stream.PPG: 25}  # PCM16 fits a frame
RATE = {p.Stream.DOPPLER: 4000, p.Stream.PPG: 50}


def signals(seconds: float) -> dict[int, np.ndarray]:
    t = np.arange(int(seconds * 4)) / 4.0
    fhr = np.where(t < STEP_S, 125.0, 160.0)
    mhr = np.full(len(t), 72.0)  # not a harmonic of either FHR
    return {
        p.Stream.DOPPLER: DopplerSignal(fhr, mhr, 4000, 20.0, seed=4).read(int(seconds * 4000)),
        p.Stream.PPG: PpgSignal(mhr, 50, seed=5).read(int(seconds * 50)),
    }


def frames(x: dict[int, np.ndarray], start_s: float, end_s: float) -> list[bytes]:
    """Both streams' frames from start_s to end_s of the boot, interleaved in time."""
    out = []
    for stream, n in FRAME.items():
        rate = RATE[stream]
        first = int(start_s * rate) // n * n
        for seq in range(first, int(end_s * rate) - n, n):
            body = x[stream][seq : seq + n].astype("<i2").tobytes()
            t_ms = T0_MS + seq * 1000 // rate
            f = p.Frame(p.Flag(0), p.DeviceType.FETAL_HEART, stream, 1, seq, t_ms, body)
            out.append((seq / rate, p.encode_frame(f)))
    return [f for _, f in sorted(out, key=lambda a: a[0])]


def gateway_run(outbox: Outbox) -> tuple[DeviceSession, FetalProcessor, list[dict]]:
    """A session and processor as gateway/app.py makes them, publishing into `outbox` and
    resuming a boot from its marks and kept trace messages (Gateway._resume)."""
    published: list[dict] = []
    publisher = Publisher(MqttSection(), "gw-test", outbox)  # stores; never started
    s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=0.0)
    proc = FetalProcessor(
        s, lambda *a, **kw: published.append(publisher.publish(*a, **kw)), ProcessingSection()
    )
    s.processor = proc

    def resume(boot: int) -> None:
        marks = outbox.marks("fh-01", boot)
        for kind, stream in (("fhr", p.Stream.DOPPLER), ("mhr", p.Stream.PPG)):
            if kind in marks:
                s.resume_from[stream] = resume_plan(kind, marks[kind])
                recent = [json.loads(m) for m in outbox.recent_trace("fh-01", boot, kind)]
                proc.published_upto(kind, marks[kind], recent)

    s.on_new_boot = resume
    return s, proc, published


def trace(published: list[dict], kind: str) -> list[dict]:
    return [m for m in published if m.get("msg_id", "").split(":")[2:3] == [kind]]


def points(msgs: list[dict], key: str) -> dict[int, tuple[float | None, int, bool]]:
    """point number -> (value, device ms, lost)"""
    out = {}
    for m in msgs:
        lost = m.get("lost", [False] * m["count"])
        for i in range(m["count"]):
            out[m["seq"] + i] = (m[key][i], m["t_device_ms"] + 250 * i, lost[i])
    return out


@pytest.mark.parametrize("back_s", [35.0, 45.0])  # a loss of 9 s (fed as silence), of 19 s
def test_a_restart_longer_than_the_buffer_keeps_every_point_at_its_device_time(back_s, tmp_path):
    x = signals(100.0)
    outbox = Outbox(tmp_path / "outbox.sqlite", 1 << 30, 0, recent_points=240)
    s1, proc1, pub1 = gateway_run(outbox)
    for f in frames(x, 0.0, 30.0):
        s1.on_frame(f)
    proc1.flush()
    marks = {"fhr": proc1.next_point - 1, "mhr": proc1.next_mhr_point - 1}
    assert marks["fhr"] > 4 * 25 and marks["mhr"] > 4 * 20, marks
    # Killed; back when the device's buffer no longer reaches the resume point: the first
    # thing the restarted gateway learns of each stream is the loss, then samples from back_s.
    assert outbox.marks("fh-01", 1) == marks
    s2, proc2, pub2 = gateway_run(Outbox(outbox.path, 1 << 30, 0, recent_points=240))
    for f in frames(x, back_s, 100.0):
        s2.on_frame(f)
        s2.tick()  # the gap cannot be refilled (no link here): given up at once
    proc2.flush()

    for kind, key in (("fhr", "fhr_bpm"), ("mhr", "mhr_bpm")):
        before, after = points(trace(pub1, kind), key), points(trace(pub2, kind), key)
        assert min(after) == marks[kind] + 1, "the trace continues with the next point"
        assert sorted(before) + sorted(after) == list(range(1, max(after) + 1)), "contiguous"
        for k, (_, t_ms, _) in {**before, **after}.items():
            assert t_ms == T0_MS + 250 * k, (kind, k, t_ms)  # its device time, to the ms
        for k, (v, _, lost) in after.items():
            received = k * 0.25 >= back_s  # where the first frame held starts
            assert lost != received, (kind, k)
            assert v is None or received, (kind, k, v)  # a lost point has no value
    fhr = points(trace(pub2, "fhr"), "fhr_bpm")
    # The content is where the device's clock says: 125 bpm before the step, 160 after.
    early = [
        v for k, (v, _, _) in fhr.items() if back_s + 3 <= k * 0.25 < STEP_S - 3 and v is not None
    ]
    late = [v for k, (v, _, _) in fhr.items() if STEP_S + 3 <= k * 0.25 and v is not None]
    assert len(early) > 4 * 5 and abs(np.median(early) - 125) < 3, early
    assert len(late) > 4 * 20 and abs(np.median(late) - 160) < 3, late
    # Each lost sample counted once: from half-way after the last point published before the
    # restart (the samples before are under it) to the first frame the device still held.
    doppler = int(back_s * 4000) // 240 * 240 - (marks["fhr"] * 1000 + 500)
    ppg = int(back_s * 50) - math.ceil((marks["mhr"] + 0.5) * 12.5)
    assert s2.state.stats.lost_samples == doppler + ppg, (doppler, ppg)
    # The FHIR window that was in progress at the kill still covers every point: those the
    # stopped gateway published (from the outbox) and those after (points 1-239, the first).
    trace_points = {
        **points(trace(pub1, "fhr"), "fhr_bpm"),
        **points(trace(pub2, "fhr"), "fhr_bpm"),
    }
    (obs,) = [m for m in pub2 if m.get("resourceType") == "Observation" and m["code"]["text"]
              == "Fetal heart rate" and m["identifier"][0]["value"].endswith("fhr-obs:1")]  # fmt: skip
    data = obs["valueSampledData"]["data"].split()
    want = [
        ("E" if trace_points[k][0] is None else f"{trace_points[k][0]:.1f}") for k in range(1, 240)
    ]
    assert data == want
