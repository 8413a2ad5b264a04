"""Signal-loss alerts that do not cry wolf: raised only during a recording session, only after
a sustained loss (hysteresis and a minimum duration), one raise and one clear for a loss that
breaks briefly, low severity whatever the risk colour. Fed faster than real time: FHR points
straight into the processor (unit), or simulated Doppler through the estimator (system)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dsp.fhr import FhrPoints
from gateway import protocol as p
from gateway.config import ProcessingSection
from gateway.device.session import DeviceSession
from gateway.processing.alerts import Hysteresis
from gateway.processing.fetal import FetalProcessor
from gateway.processing.recording import SessionTracker

T0_UNIX_MS = 1_700_000_000_000  # the device clock, synced to this wall time


Published = list[tuple[tuple[str, ...], dict[str, Any]]]


def processor(recording: bool = True) -> tuple[FetalProcessor, Published]:
    """A fetal processor with a recording-session tracker, and what it publishes."""
    published: Published = []
    s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=0.0)
    s.state.boot = 1
    s.clock_offset_ms = T0_UNIX_MS
    tracker = SessionTracker("fh-01") if recording else None
    proc = FetalProcessor(s, lambda parts, m, **kw: published.append((parts, m)),
                          ProcessingSection(), recording=tracker)  # fmt: skip
    s.processor = proc
    proc.doppler_t0_ms = 0
    return proc, published


def signal_loss(published: Published) -> list[tuple[str, str]]:
    """(state, severity) of each signal-loss alert published."""
    return [(m["state"], m["severity"]) for parts, m in published
            if parts[-1] == "alert" and m["alert"] == "signal_loss"]  # fmt: skip


def feed(proc: FetalProcessor, fhr: np.ndarray, first: int = 1, batch: int = 40) -> None:
    """FHR points `first`... (NaN: no rate) in batches of 10 s (the gateway publishes one a
    second; the alert takes its points one by one whatever the batch)."""
    for i in range(0, len(fhr), batch):
        chunk = fhr[i : i + batch]
        k = np.arange(first + i, first + i + len(chunk), dtype=float)
        q = np.where(np.isnan(chunk), 0.0, 0.9)
        proc.pending.append(FhrPoints(k * 0.25, chunk.copy(), q, np.zeros(len(chunk), bool)))
        proc.flush()


def healthy_half_hour(seed: int) -> np.ndarray:
    """30 min at about 140 bpm with what a healthy home recording loses, 20% of the points:
    six probe fades of 5-60 s (two in ten minutes, as the Doppler simulator draws them), apart
    from each other, and one pair back to back (46 s, 8 s of rate, 45 s: the longest stretch
    seen on simulated healthy half-hours); the rest short dropouts of 1-3 s (fetal movement)."""
    rng = np.random.default_rng(seed)
    n = 30 * 240
    t = np.arange(n) / 4.0
    fhr = 140 + 5 * np.sin(2 * np.pi * t / 40) + rng.normal(0, 1.5, n)
    a = 20 * 240
    fades = [(a, a + 46 * 4), (a + 54 * 4, a + 99 * 4)]
    while len(fades) < 8:
        start = int(rng.uniform(60, n / 4 - 60) * 4)
        end = start + int(rng.uniform(5, 60) * 4)
        if all(end + 40 < b0 or start > b1 + 40 for b0, b1 in fades):  # 10 s of rate between
            fades.append((start, end))
    for b0, b1 in fades:
        fhr[b0:b1] = np.nan
    while np.isnan(fhr).mean() < 0.2:
        a = int(rng.uniform(0, n))
        fhr[a : a + int(rng.uniform(1, 3) * 4)] = np.nan
    fhr[:40] = 140.0  # the session starts with a rate
    return fhr


def with_loss(minutes: float, at_min: float, loss_s: float) -> np.ndarray:
    fhr = np.full(int(minutes * 240), 140.0)
    a = int(at_min * 240)
    fhr[a : a + int(loss_s * 4)] = np.nan
    return fhr


@pytest.mark.unit
def test_hysteresis_needs_the_level_held_both_ways():
    h = Hysteresis(on_at=0.9, on_after_s=20, off_at=0.5, off_after_s=30)
    assert not h.update(0.95, 0.0) and not h.update(0.95, 19.0)
    assert not h.update(0.8, 19.5)  # fell back: the 20 s start again
    assert not h.update(0.95, 20.0) and h.update(0.95, 40.0)
    assert h.update(0.4, 41.0) and h.update(0.6, 60.0)  # not 30 s below half yet
    assert h.update(0.4, 61.0) and h.update(0.4, 90.0) and not h.update(0.4, 91.0)
    h.update(0.95, 100.0)
    h.update(0.95, 121.0)
    h.reset()
    assert not h.on and not h.update(0.95, 122.0)
    with pytest.raises(ValueError):
        Hysteresis(on_at=0.5, on_after_s=1, off_at=0.6, off_after_s=1)


@pytest.mark.unit
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_healthy_half_hour_raises_no_signal_loss_alert(seed):
    proc, out = processor()
    feed(proc, healthy_half_hour(seed))
    assert proc.recording is not None and proc.recording.active is not None
    assert signal_loss(out) == []


@pytest.mark.unit
def test_a_two_minute_loss_raises_one_alert_and_clears_it_once():
    proc, out = processor()
    proc.apply_settings({"risk_colour": "red"}, {})  # escalates medium alerts, not this one
    feed(proc, with_loss(8, 3, 120))
    assert signal_loss(out) == [("raised", "low"), ("cleared", "low")]


@pytest.mark.unit
def test_a_loss_broken_by_a_few_seconds_of_rate_is_one_alert():
    fhr = with_loss(10, 2, 150)
    fhr[int(2 * 240 + 110 * 4) : int(2 * 240 + 125 * 4)] = 140.0  # 15 s of rate in the middle
    proc, out = processor()
    feed(proc, fhr)
    assert signal_loss(out) == [("raised", "low"), ("cleared", "low")]


@pytest.mark.unit
def test_no_signal_loss_alert_outside_a_recording_session():
    # the probe put down on the table: the session ends, the loss that follows is no alarm
    proc, out = processor()
    feed(proc, np.full(240, 140.0))
    proc.session.state.on_skin = False
    feed(proc, np.full(5 * 240, np.nan), first=241)
    assert signal_loss(out) == []
    # a monitor whose probe never found a heart starts no session, so raises nothing
    proc, out = processor()
    feed(proc, np.full(5 * 240, np.nan))
    assert proc.recording is not None and proc.recording.active is None
    assert signal_loss(out) == []


@pytest.mark.unit
def test_the_alert_clears_at_once_when_the_session_ends():
    proc, out = processor()
    feed(proc, with_loss(6, 1, 300))
    assert signal_loss(out) == [("raised", "low")]
    proc.session.state.on_skin = False  # the mother takes the probe off
    feed(proc, np.full(4, np.nan), first=6 * 240 + 1)
    assert signal_loss(out) == [("raised", "low"), ("cleared", "low")]


# ---- through the estimator: simulated Doppler, faster than real time ----


def simulated_session(minutes: float, seed: int, absent: list[tuple[float, float]]):
    """A fetal monitor's Doppler and PPG (the mother's pulse at 80 bpm in the beam too) fed to
    the processor second by second, as fast as it goes; what it published."""
    from simulators.doppler import DopplerSignal
    from simulators.maternal import MaternalBeats
    from simulators.ppg import PpgSignal

    n = int(minutes * 240)
    mhr = np.full(n, 80.0)
    beats = MaternalBeats.from_rate(mhr, seed=seed + 100)
    doppler = DopplerSignal(np.full(n, 140.0), mhr, 4000, 15.0, seed=seed, beats=beats,
                            fetal_absent=absent)  # fmt: skip
    ppg = PpgSignal(mhr, 50, seed=seed + 200, beats=beats)
    proc, out = processor()
    for sec in range(int(minutes * 60)):
        proc.on_samples(p.Stream.DOPPLER, sec * 4000, 3000 + sec * 1000, doppler.read(4000))
        proc.on_samples(p.Stream.PPG, sec * 50, 3000 + sec * 1000, ppg.read(50))
        proc.flush()
    return out


@pytest.mark.system  # 30 min of Doppler synthesis and estimation: ~30 s
def test_a_simulated_healthy_half_hour_raises_no_signal_loss_alert():
    # seed 3: the most loss of ten simulated half-hours, 20% of the points without a rate,
    # with probe fades back to back (the rule before raised 5 alerts on it)
    out = simulated_session(30, seed=3, absent=[])
    assert signal_loss(out) == []


@pytest.mark.system
def test_a_simulated_two_minute_loss_raises_one_alert_and_clears_it_once():
    out = simulated_session(10, seed=13, absent=[(240.0, 360.0)])  # the probe off the fetus
    assert signal_loss(out) == [("raised", "low"), ("cleared", "low")]
