"""The fetal-heart monitor's processing on the gateway: Doppler and PPG in, FHR, maternal
rate, CTG findings and alerts out (published as docs/mqtt.md describes).

All signal processing is dsp/; this module keeps the time bases straight (device sample
indices, device milliseconds, wall clock) and decides what to publish when.

CTG messages carry both analyses, FIGO 2015 over the rolling window and Dawes-Redman over the
recording session (or, outside one, the rolling window), and say which one heads them: the
device's `ctg_mode` setting (gateway/state/settings.py), antenatal unless set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dsp.arrays import Bools, Floats
from dsp.ctg import analyse_ctg
from dsp.ctg_reference import BASELINE_NORMAL_BPM, POINT_S
from dsp.dawes_redman import LAST_EVALUATION_MIN, DawesRedmanResult, dawes_redman
from dsp.fhr import FhrPoints, FhrStream
from dsp.mhr import MaternalBeatStream, MhrPoints, MhrStream
from gateway import protocol as p
from gateway.processing.alerts import AlertTracker, Hysteresis, Publish
from gateway.processing.fhir import TraceWindow, publish_trace_observations, resume_trace_window
from gateway.publish.mqtt import QOS_TRACE
from gateway.state.settings import DEFAULT_CTG_MODE, ctg_mode, escalates
from gateway.times import iso_time

if TYPE_CHECKING:
    from gateway.config import ProcessingSection
    from gateway.device.session import DeviceSession
    from gateway.processing.recording import SessionTracker

log = logging.getLogger(__name__)

DOPPLER_HZ = 4000  # fixed by the hardware (docs/protocol.md)
PPG_HZ = 50
_RATE_HZ: dict[int, int] = {p.Stream.DOPPLER: DOPPLER_HZ, p.Stream.PPG: PPG_HZ}
# A point stream starts on a sample whose time is a whole number of points into the boot, so
# its points fall on the boot's 0.25 s grid: Doppler every 1000 samples; PPG has 12.5 samples
# a point, so every 25 (every second point).
_START_STEP: dict[int, int] = {p.Stream.DOPPLER: 1000, p.Stream.PPG: 25}
# A Doppler loss longer than this (a gateway down for hours) is not run through the estimator
# as silence, which would cost about 1% of a core per second lost (docs/performance.md): its
# points are null at once, and the estimator restarts after it. The estimator first gets 2 s
# of silence, so the points just before the loss complete as after a short one (+-1.875 s).
_LONG_LOSS_S = 10.0
_LOSS_TAIL_S = 2.0

# FIGO 2015 (Ayres-de-Campos et al., Int J Gynaecol Obstet 2015;131:13-24): normal baseline
# 110-160 bpm. Alerts here are on the running rate; the CTG finding uses the FIGO baseline.
BRADYCARDIA_BPM, TACHYCARDIA_BPM = BASELINE_NORMAL_BPM
_RATE_WINDOW_S = 180.0  # running-rate alerts look at the last 3 minutes
# Signal loss (docs/fhr.md, "Signal-loss alert"): only during a recording session, and only
# for a loss the mother could not mend herself (the monitor's own light and tone ask her to
# move the probe at once, FEEDBACK below). The level is the share of the last 90 s without a
# rate; the alert is raised once it has stayed at 90% or more for 20 s (about 100 s of loss)
# and cleared once it has stayed at half or less for 30 s; a loss that comes back within
# those 30 s is the same alert. perimon's choice: on simulated healthy half-hours (probe
# fades of 5-60 s, sometimes back to back, and fetal movement) the level held at 90% for at
# most ~11 s, on a 2-minute loss for 45 s or more.
_LOSS_WINDOW_S = 90.0
_LOSS_RAISE, _LOSS_RAISE_AFTER_S = 0.9, 20.0
_LOSS_CLEAR, _LOSS_CLEAR_AFTER_S = 0.5, 30.0
_COINCIDENCE_WINDOW_S = 60.0
_COINCIDENCE_RAISE = 0.3  # a third of the last minute locked to the mother's rate
# Half or more of the last minute withheld because her pulse did not cover it (her finger off
# the PPG, a PPG with no pulse, PPG samples lost): the nurse is told her pulse is not being
# monitored, not left with a bare gap (docs/fhr.md step 8). The level is that share of the
# minute; the alert is raised once it has stayed at half or more for 10 s and cleared once it
# has stayed at a quarter or less for 10 s, so a finger going on and off the sensor, the level
# swinging about a half, is one alert rather than one each swing (as the signal-loss alert).
# perimon's choice: the same minute as the coincidence alert, a majority so a few seconds of
# a moving finger do not raise it; cleared when three quarters of the minute are checked
# again (about 45 s after her pulse is steadily back).
_UNMONITORED_RAISE, _UNMONITORED_RAISE_AFTER_S = 0.5, 10.0
_UNMONITORED_CLEAR, _UNMONITORED_CLEAR_AFTER_S = 0.25, 10.0
# Device feedback (FEEDBACK, docs/protocol.md): the level from the last 3 s of FHR points, sent
# when it changes (at most once a second) and repeated every 2 s so the device knows the
# gateway is there (after 5 s without one it falls back to its own estimate).
_FEEDBACK_POINTS = 12
_FEEDBACK_GOOD = 0.75  # share of those points with a rate
_FEEDBACK_WEAK = 0.25
_FEEDBACK_MATERNAL = 0.5  # share of those points withheld as the mother's pulse: move the probe
_FEEDBACK_MIN_S = 1.0
_FEEDBACK_REPEAT_S = 2.0


def _nan_to_none(a: Floats, digits: int) -> list[float | None]:
    return [None if math.isnan(v) else round(float(v), digits) for v in a]


def _half_way_after(stream: int, point: int) -> int:
    """The first sample past the half-way mark between `point` and the next (0.25 s apart)."""
    return math.ceil((point + 0.5) * POINT_S * _RATE_HZ[stream])


def _lost_field(lost: Bools) -> dict[str, list[bool]]:
    """`lost` (docs/mqtt.md): in a message with points whose samples never reached the gateway."""
    return {"lost": [bool(v) for v in lost]} if lost.any() else {}


_Stream = TypeVar("_Stream", FhrStream, MhrStream)


class BootPoints(Generic[_Stream]):
    """A point stream (dsp FhrStream / MhrStream) fed from sample `first` of a boot rather than
    from sample 0: a gateway that meets a device part-way through a boot (a restart, a resume)
    does. Its point times are moved to the boot's time base (seconds since sample 0), so point
    k is always point k of the boot, at device time t0 + k * 0.25 s."""

    def __init__(self, stream: _Stream, offset_s: float) -> None:
        self._stream: _Stream = stream
        self.offset_s = offset_s

    @overload
    def _shift(self, pts: FhrPoints) -> FhrPoints: ...
    @overload
    def _shift(self, pts: MhrPoints) -> MhrPoints: ...
    def _shift(self, pts: FhrPoints | MhrPoints) -> FhrPoints | MhrPoints:
        return dataclasses.replace(pts, t_s=np.asarray(pts.t_s) + self.offset_s)

    @overload
    def feed(self: BootPoints[FhrStream], x: ArrayLike) -> FhrPoints: ...
    @overload
    def feed(self: BootPoints[MhrStream], x: ArrayLike) -> MhrPoints: ...
    def feed(self, x: ArrayLike) -> FhrPoints | MhrPoints:
        return self._shift(self._stream.feed(x))

    @overload
    def flush(self: BootPoints[FhrStream]) -> FhrPoints: ...
    @overload
    def flush(self: BootPoints[MhrStream]) -> MhrPoints: ...
    def flush(self) -> FhrPoints | MhrPoints:
        return self._shift(self._stream.flush())

    def feed_maternal(self: BootPoints[FhrStream], t_s: ArrayLike, bpm: ArrayLike) -> None:
        self._stream.feed_maternal(np.asarray(t_s, dtype=float) - self.offset_s, bpm)

    def feed_maternal_beats(self: BootPoints[FhrStream], t_s: ArrayLike) -> None:
        self._stream.feed_maternal_beats(np.asarray(t_s, dtype=float) - self.offset_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class FetalProcessor:
    def __init__(self, session: DeviceSession, publish: Publish, processing: ProcessingSection,
                 recording: SessionTracker | None = None, gateway_id: str = "") -> None:  # fmt: skip
        self.session = session
        self.publish = publish
        self.cfg = processing
        self.alerts = AlertTracker(session.state.device_id, publish)
        self.recording = recording  # recording sessions (gateway/processing/recording/)
        self.gateway_id = gateway_id  # FHIR Observations name the gateway as their device
        self.ctg_mode = DEFAULT_CTG_MODE  # which CTG analysis heads the messages (settings)
        self._feedback_sent: tuple[object, int, int] | None = None  # (link, level, flags)
        self._feedback_at = -1e9
        self._feedback_task: asyncio.Task[p.Reply | None] | None = None
        self._reset()

    @property
    def device_id(self) -> str:
        return self.session.state.device_id

    def _reset(self) -> None:
        # The monitor has her PPG: points wait for it from the first (docs/fhr.md, Streaming)
        self.fhr: FhrStream | BootPoints[FhrStream] = FhrStream(DOPPLER_HZ, maternal_channel=True)
        self.mhr: MhrStream | BootPoints[MhrStream] = MhrStream(PPG_HZ)
        # The mother's beats from the PPG waveform: the FHR estimator cancels what the Doppler
        # hears in lock-step with them and never shows it as fetal (dsp/maternal_lock.py).
        self.beats = MaternalBeatStream(PPG_HZ)
        self.beats_offset_s = 0.0  # PPG boot time of the beat stream's first sample
        # Device ms of sample 0 of the boot, from the frames' t_ms and seq (see on_samples):
        # every point's time follows from its number, whichever sample or loss came first.
        self.doppler_t0_ms: int | None = None
        self.ppg_t0_ms: int | None = None
        self.timed: set[str] = set()  # the traces published with their origin, now fixed
        self.fed: dict[int, int] = {}  # stream -> next seq its point stream expects
        self.fhr_emitted = 0  # the last FHR point the estimator gave
        self.lost: dict[int, list[tuple[int, int]]] = {}  # stream -> [first, end) seqs lost
        self.lost_counted: dict[int, int] = {}  # stream -> seq up to which losses are counted
        self.fhir_windows: dict[str, TraceWindow] = {}  # kind -> Observation window (fhir.py)
        self.audio_in: list[NDArray[np.float32]] = []  # Doppler received since the last estimate
        self.pending: list[FhrPoints] = []
        self.pending_mhr: list[tuple[Floats, Floats]] = []
        # Numbers of the next FHR and MHR points to publish (t_s = index * 0.25): a resumed boot
        # re-estimates a few points already published before a restart, withheld here.
        self.next_point = 1
        self.next_mhr_point = 1
        n = int(self.cfg.ctg_window_min * 60 / POINT_S)
        self.history_fhr: deque[float] = deque(maxlen=n)
        self.history_maternal: deque[bool] = deque(maxlen=n)
        # points withheld because her pulse did not cover them (FhrPoints.unchecked)
        self.history_unchecked: deque[bool] = deque(maxlen=int(_COINCIDENCE_WINDOW_S / POINT_S))
        self.history_unchecked_n = 0
        self.unmonitored_alarm = Hysteresis(_UNMONITORED_RAISE, _UNMONITORED_RAISE_AFTER_S,
                                            _UNMONITORED_CLEAR, _UNMONITORED_CLEAR_AFTER_S)  # fmt: skip
        # signal loss during the recording session: its last _LOSS_WINDOW_S of points
        self.session_lost: deque[bool] = deque(maxlen=int(_LOSS_WINDOW_S / POINT_S))
        self.session_lost_n = 0
        self.loss_alarm = Hysteresis(_LOSS_RAISE, _LOSS_RAISE_AFTER_S, _LOSS_CLEAR,
                                     _LOSS_CLEAR_AFTER_S)  # fmt: skip
        self.last_quality = 0.0
        self._last_publish = time.monotonic()
        self._last_ctg = time.monotonic()

    def on_boot(self, boot: int) -> None:
        self.flush(rate_unknown_withheld=True)
        self._reset()

    def resume(self, marks: dict[str, int], recent: dict[str, list[dict[str, Any]]]) -> None:
        """A restarted gateway continues this boot (gateway/processing/resume.py)."""
        for kind in ("fhr", "mhr"):
            if kind in marks:
                self.published_upto(kind, marks[kind], recent.get(kind, []))

    def apply_settings(self, settings: dict[str, Any], baby: dict[str, Any]) -> None:
        self.alerts.escalate = escalates(settings)
        self.ctg_mode = ctg_mode(settings)

    def published_upto(self, kind: str, last_point: int, published: list[dict[str, Any]]) -> None:
        """A restarted gateway resumes this boot: points up to `last_point` of the `kind` trace
        ("fhr", "mhr") were published before (with the losses under them counted), and their
        re-estimates are withheld; `published` holds the last of those trace messages, which
        complete the FHIR window in progress."""
        stream = p.Stream.DOPPLER if kind == "fhr" else p.Stream.PPG
        if kind == "fhr":
            self.next_point = last_point + 1
        else:
            self.next_mhr_point = last_point + 1
        self.lost_counted[stream] = _half_way_after(stream, last_point)
        resume_trace_window(self, kind, last_point, published)

    # ---- samples in ----

    def on_samples(self, stream: int, seq: int, t_ms: int, samples: NDArray[np.int16]) -> None:
        # A frame is stamped when the device has read its samples, never before: the earliest
        # origin implied before the first point is published is the least delayed one.
        t0 = t_ms - round(seq * 1000 / _RATE_HZ.get(stream, 1))
        if stream == p.Stream.DOPPLER:
            if self.doppler_t0_ms is None or (t0 < self.doppler_t0_ms and "fhr" not in self.timed):
                self.doppler_t0_ms = t0
            x = self._fed_part(stream, seq, samples)
            if len(x):
                self.audio_in.append(x)
        elif stream == p.Stream.PPG:
            if self.ppg_t0_ms is None or (t0 < self.ppg_t0_ms and "mhr" not in self.timed):
                self.ppg_t0_ms = t0
            x = self._fed_part(stream, seq, samples)
            self._feed_beats(x)
            self._feed_mhr(x)

    def _feed_mhr(self, ppg: NDArray[np.float32]) -> None:
        """PPG samples (NaN where lost) to the maternal rate; its points, with or without a
        rate, to the FHR estimator on the Doppler's time base: they tell it how far her channel
        has come, so a PPG loss is known as one at once rather than after the estimator's 30 s
        wait (dsp/maternal_coincidence.py)."""
        m = self.mhr.feed(ppg)
        if len(m.t_s):
            self.pending_mhr.append((m.t_s, m.mhr_bpm))
            if self.doppler_t0_ms is not None and self.ppg_t0_ms is not None:
                shift = (self.ppg_t0_ms - self.doppler_t0_ms) / 1000.0
                self.fhr.feed_maternal(m.t_s + shift, m.mhr_bpm)

    def _feed_beats(self, ppg: NDArray[np.float32]) -> None:
        """PPG samples (NaN where lost) to the beat detector; its beats to the FHR estimator on
        the Doppler's time base. Beats found before the Doppler's time is known are dropped:
        the cancellation builds its template from the beats after them."""
        beats = self.beats.feed(ppg)
        if len(beats) and self.doppler_t0_ms is not None and self.ppg_t0_ms is not None:
            shift = (self.ppg_t0_ms - self.doppler_t0_ms) / 1000.0
            self.fhr.feed_maternal_beats(beats + self.beats_offset_s + shift)

    def on_lost(self, stream: int, seq: int, count: int) -> None:
        """Lost samples take their place in the stream (Doppler as silence, PPG as missing
        samples, which void the windows holding them), so every later sample keeps its time;
        the points they cover are published null, marked lost. This holds when the loss is the
        first thing a restarted gateway hears of a stream."""
        if stream not in _RATE_HZ:
            return
        if stream == p.Stream.DOPPLER and count > _LONG_LOSS_S * DOPPLER_HZ:
            self._skip_long_loss(seq, count)
            return
        fill = 0.0 if stream == p.Stream.DOPPLER else np.nan
        x = self._fed_part(stream, seq, np.full(count, fill, np.float32))
        if not len(x):
            return
        end = self.fed[stream]
        self.lost.setdefault(stream, []).append((end - len(x), end))
        if stream == p.Stream.DOPPLER:
            self.audio_in.append(x)
        else:
            self._feed_beats(x)
            self._feed_mhr(x)

    def _skip_long_loss(self, seq: int, count: int) -> None:
        tail = int(_LOSS_TAIL_S * DOPPLER_HZ)
        self.on_lost(p.Stream.DOPPLER, seq, tail)
        self.estimate_fhr()
        emitted = self.fhr_emitted
        restart = self._start(p.Stream.DOPPLER, seq + count)
        # the restarted stream's first point is the one after its start
        k = np.arange(emitted + 1, restart // 1000 + 1, dtype=np.float64)
        none = np.full(len(k), np.nan)
        self.pending.append(FhrPoints(k * POINT_S, none, np.zeros(len(k)), np.zeros(len(k), bool)))
        self.lost.setdefault(p.Stream.DOPPLER, []).append((seq + tail, seq + count))

    def _start(self, stream: int, seq: int) -> int:
        """Start a stream's point estimator at the next point boundary at or after `seq`, its
        points on the boot's time base (BootPoints); returns that sample's seq."""
        step = _START_STEP[stream]
        start = -(-seq // step) * step
        offset_s = start / _RATE_HZ[stream]
        if stream == p.Stream.DOPPLER:
            self.fhr = BootPoints(FhrStream(DOPPLER_HZ, maternal_channel=True), offset_s)
            self.fhr_emitted = start // 1000
        else:
            self.mhr = BootPoints(MhrStream(PPG_HZ), offset_s)
            self.beats, self.beats_offset_s = MaternalBeatStream(PPG_HZ), offset_s
        self.fed[stream] = start
        return start

    def _fed_part(
        self, stream: int, seq: int, samples: NDArray[np.int16] | NDArray[np.float32]
    ) -> NDArray[np.float32]:
        """The part of an in-order chunk its point stream takes: all of it, but for the first
        chunk of a boot (or after a long loss), which starts at the next point boundary."""
        start = self.fed.get(stream)
        if start is None:
            start = self._start(stream, seq)
        x = samples[max(0, start - seq) :].astype(np.float32)
        self.fed[stream] = max(start, seq) + len(x)
        return x

    def on_record(self, stream: int, seq: int, t_ms: int, payload: bytes) -> None:
        """A movement mark is published (docs/mqtt.md, "Movement marks"); status and the other
        events are kept by the session."""
        if stream != p.Stream.EVENT or payload[:1] != bytes((p.Event.MOVEMENT,)):
            return
        try:
            number = p.decode_movement(payload)
        except p.FrameError as exc:
            self.session.state.stats.malformed += 1
            log.warning("%s: bad movement mark: %s", self.device_id, exc)
            return
        boot = self.session.state.boot
        # t_ms is when the press began, on the clock of the trace's samples: the mark lands
        # where she pressed, however late its frame came (a resend after an outage)
        self.publish(
            ("device", self.device_id, "movement"),
            {
                "msg_id": f"{self.device_id}:{boot}:movement:{number}",
                "device_id": self.device_id,
                "boot": boot,
                "seq": number,
                "t": iso_time(self.session.unix_time(t_ms)),
                "t_device_ms": t_ms,
            },
        )

    # ---- publishing ----

    def tick(self, now: float) -> None:
        self._send_feedback(now)
        if not self._recording_session():  # a session ended with no points coming any more
            self._check_signal_loss(np.zeros(0), 0)
        if now - self._last_publish >= self.cfg.fhr_publish_interval_s:
            self._last_publish = now
            self.flush()
        if now - self._last_ctg >= self.cfg.ctg_interval_s:
            self._last_ctg = now
            self.publish_ctg()

    def estimate_fhr(self) -> None:
        """Run the Doppler received since the last call through the FHR estimator in one piece.

        Points are needed only when they are published (every `fhr_publish_interval_s`), so the
        estimator is fed then, not per radio frame: the points are the same (the stream gives
        the batch result however it is chunked) and one call a second costs about half the CPU
        of ten (docs/performance.md, FHR speed). Without new audio it is still asked: points
        waiting for her PPG (docs/fhr.md, Streaming) are released once the PPG came, which the
        device may resend after the Doppler."""
        x = np.zeros(0, np.float32)
        if self.audio_in:
            x = self.audio_in[0] if len(self.audio_in) == 1 else np.concatenate(self.audio_in)
            self.audio_in.clear()
        pts = self.fhr.feed(x)
        if len(pts.t_s):
            self.pending.append(pts)
            self.fhr_emitted = int(round(pts.t_s[-1] / POINT_S))

    def flush(self, rate_unknown_withheld: bool = False) -> None:
        """Publish the points ready. They wait for the time origin (a loss may come before any
        frame with a t_ms) and for their streams' rates to be known (`_rate_unknown`): the FHR
        for the Doppler's and the PPG's (her channel checked them), the MHR for the PPG's.
        `rate_unknown_withheld` (the boot ends): points still waiting for a rate are published
        withheld."""
        self.estimate_fhr()
        ppg_unknown = self._rate_unknown(p.Stream.PPG)
        fhr_unknown = self._rate_unknown(p.Stream.DOPPLER) or ppg_unknown
        if self.pending and self.doppler_t0_ms is not None:
            if not fhr_unknown or rate_unknown_withheld:
                self._publish_fhr(self.doppler_t0_ms, rate_unknown=fhr_unknown)
        if self.pending_mhr and self.ppg_t0_ms is not None:
            if not ppg_unknown or rate_unknown_withheld:
                self._publish_mhr(self.ppg_t0_ms, rate_unknown=ppg_unknown)

    def _rate_unknown(self, stream: int) -> bool:
        """Whether samples of the stream have come at a rate not yet known, right or wrong
        (the session's StreamRate: neither bound by the frames' stamps nor measured over a
        span, gateway/device/sample_rate.py) and not found wrong. Before, a 2.8 kHz Doppler
        ADC showed 140 bpm as 200 for the minute before the session's check. No samples yet
        (points made of lost samples only): nothing to wait for."""
        rate = self.session.rates.get(stream)
        name = p.Stream(stream).name.lower()
        return not (rate is None or rate.known or name in self.session.state.rate_errors)

    def _device_ms(self, t0: int, t_s: float) -> int:
        return int(t0 + round(t_s * 1000))

    def _publish_fhr(self, t0_ms: int, rate_unknown: bool = False) -> None:
        """The pending FHR points, as one trace message (device time from `t0_ms`, the Doppler's
        sample 0); `rate_unknown`: a stream's rate was never known for them, so they are
        withheld."""
        t_s = np.concatenate([q.t_s for q in self.pending])
        fhr = np.concatenate([q.fhr_bpm for q in self.pending])
        quality = np.concatenate([q.quality for q in self.pending])
        maternal = np.concatenate([q.maternal for q in self.pending])
        unchecked = np.concatenate([q.unchecked for q in self.pending])
        self.pending.clear()
        new = np.round(t_s / POINT_S) >= self.next_point
        t_s, fhr, quality, maternal = t_s[new], fhr[new], quality[new], maternal[new]
        unchecked = unchecked[new]
        if not len(t_s):
            return
        lost = self._lost_points(p.Stream.DOPPLER, t_s)
        unchecked &= ~lost  # a radio loss, not her pulse unwatched: counted as signal loss
        fhr[lost] = np.nan
        quality[lost] = 0.0
        errors = self.session.state.rate_errors
        rate_error = errors.get("doppler")
        if rate_error is not None or rate_unknown:  # every rate may be off by the clock error
            fhr = np.full_like(fhr, np.nan)
            quality = np.zeros_like(quality)
        ppg_error = errors.get("ppg")
        if ppg_error is not None:
            # Her rate and beats are off by the PPG's clock error: nothing checked these points
            # against her pulse. Withheld as unchecked (her pulse is not being monitored).
            fhr = np.full_like(fhr, np.nan)
            quality = np.zeros_like(quality)
            maternal = np.zeros_like(maternal)
            unchecked = ~lost
        faults = [f"{name} sampled at {hz} Hz instead of {nominal} Hz"
                  for name, hz, nominal in (("Doppler", rate_error, DOPPLER_HZ),
                                            ("PPG", ppg_error, PPG_HZ)) if hz is not None]  # fmt: skip
        self.alerts.set("sample_rate", bool(faults), "; ".join(faults) + ": device fault", "high")
        first, at = self._publish_trace(
            "fhr",
            t0_ms,
            t_s,
            {
                "fhr_bpm": _nan_to_none(fhr, 1),
                "quality": [round(float(q), 2) for q in quality],
                "maternal": [bool(m) for m in maternal],
                **_lost_field(lost),
            },
        )
        publish_trace_observations(self, "fhr", first, at, fhr)
        boot = self.session.state.boot  # known: samples came in frames, which name their boot
        if self.recording is not None and boot is not None:  # recording sessions: once per batch
            self.recording.feed(boot, first, fhr, quality, self.session.state.on_skin, at)
        self.next_point = first + len(t_s)
        self.history_fhr.extend(fhr.tolist())
        self.history_maternal.extend(maternal.tolist())
        self._count_unchecked(unchecked, first)
        self.last_quality = float(np.mean(quality))
        self._check_signal_loss(fhr, first)
        self._check_alerts()

    def _publish_mhr(self, t0_ms: int, rate_unknown: bool = False) -> None:
        """The pending maternal rate points (device time from `t0_ms`, the PPG's sample 0),
        null where lost, and all null when the PPG's rate is wrong or was never known."""
        t_s = np.concatenate([a for a, _ in self.pending_mhr])
        mhr = np.concatenate([b for _, b in self.pending_mhr])
        self.pending_mhr.clear()
        new = np.round(t_s / POINT_S) >= self.next_mhr_point
        t_s, mhr = t_s[new], mhr[new]
        if not len(t_s):
            return
        lost = self._lost_points(p.Stream.PPG, t_s)
        mhr[lost] = np.nan
        if rate_unknown or "ppg" in self.session.state.rate_errors:
            mhr[:] = np.nan  # off by the PPG's clock error
        first, at = self._publish_trace(
            "mhr", t0_ms, t_s, {"mhr_bpm": _nan_to_none(mhr, 1), **_lost_field(lost)}
        )
        publish_trace_observations(self, "mhr", first, at, mhr)
        self.next_mhr_point = first + len(t_s)

    def _lost_points(self, stream: int, t_s: Floats) -> Bools:
        """Which points (times in the boot) fall on samples that never arrived.

        The lost samples are counted (`lost_samples`) here, as the points over them are
        published, up to half-way to the next point: a gateway killed between learning of a
        loss and publishing it leaves it to the next one, which counts from the same place."""
        at = np.round(t_s * _RATE_HZ[stream])
        ranges = self.lost.get(stream, [])
        out = np.zeros(len(at), dtype=bool)
        for a, b in ranges:
            out |= (at >= a) & (at < b)
        upto = _half_way_after(stream, round(t_s[-1] / POINT_S))
        since = self.lost_counted.get(stream, 0)
        n = sum(max(0, min(b, upto) - max(a, since)) for a, b in ranges)
        if n:
            self.session.state.stats.lost_samples += n
        self.lost_counted[stream] = max(since, upto)
        self.lost[stream] = [r for r in ranges if r[1] > upto]
        return out

    def _publish_trace(
        self, kind: str, t0_ms: int, t_s: Floats, values: dict[str, Any]
    ) -> tuple[int, float]:
        """One live-trace message (docs/mqtt.md): `count` contiguous 4 Hz points from `seq`.

        Returns the first point's number and its wall-clock time."""
        first = int(round(t_s[0] / POINT_S))
        boot = self.session.state.boot
        self.timed.add(kind)
        t_dev = self._device_ms(t0_ms, float(t_s[0]))
        at = self.session.unix_time(t_dev)
        self.publish(
            ("device", self.device_id, kind),
            {
                "msg_id": f"{self.device_id}:{boot}:{kind}:{first}",
                "device_id": self.device_id,
                "boot": boot,
                "seq": first,
                "count": len(t_s),
                "interval_s": POINT_S,
                "t_start": iso_time(at),
                "t_device_ms": t_dev,
                **values,
            },
            qos=QOS_TRACE,
        )
        return first, at

    def publish_ctg(self) -> None:
        n = len(self.history_fhr)
        if n < 60 / POINT_S:
            return
        fhr = np.array(self.history_fhr, dtype=float)
        t_s = (np.arange(n) + 1) * POINT_S
        findings = analyse_ctg(t_s, fhr)
        session_id, antenatal = self._dawes_redman(fhr)
        st = self.session.state
        end_point = self.next_point - 1
        self.publish(
            ("device", self.device_id, "ctg"),
            {
                "msg_id": f"{self.device_id}:{st.boot}:ctg:{end_point}",
                "device_id": self.device_id,
                "boot": st.boot,
                "window_s": n * POINT_S,
                "t": iso_time(time.time()),
                "ctg_mode": self.ctg_mode,
                **findings.to_dict(),
                "dawes_redman": antenatal.to_dict(),
                "dawes_redman_session_id": session_id,
            },
        )
        # An indeterminate window (too much signal loss, say) says nothing about the heart: a
        # pathological trace stays raised until a window is classed normal or suspicious.
        if findings.figo_class != "indeterminate":
            self.alerts.set(
                "ctg_pathological",
                findings.figo_class == "pathological",
                f"FIGO class {findings.figo_class}: " + "; ".join(findings.reasons),
                severity="high",
            )

    def _dawes_redman(self, window: Floats) -> tuple[str | None, DawesRedmanResult]:
        """(session id, result): Dawes-Redman over the recording session in progress, from its
        start (the criteria are evaluated from 10 to 60 min into a recording); outside a
        session, over the rolling window (session id None)."""
        a = None if self.recording is None else self.recording.active
        fhr, session_id = window, None
        if a is not None and a.fhr:
            fhr = np.array(a.fhr[: int(LAST_EVALUATION_MIN * 60 / POINT_S)], dtype=float)
            session_id = a.session_id
        return session_id, dawes_redman((np.arange(len(fhr)) + 1) * POINT_S, fhr)

    def _recording_session(self) -> bool:
        """Whether a session is being recorded with the probe on: only then does signal loss
        matter (a probe put away loses it by design). A processor without session tracking
        (built on its own) takes a probe on the skin as one."""
        if self.session.state.on_skin is False:
            return False
        return self.recording is None or self.recording.active is not None

    def _check_signal_loss(self, fhr: Floats, first: int) -> None:
        """Points `first`... of the trace (NaN: no rate) through the signal-loss hysteresis;
        outside a recording session the alert is cleared at once and nothing is counted."""
        lost, full = self.session_lost, int(_LOSS_WINDOW_S / POINT_S)
        recording = self._recording_session()
        if recording:
            for k, v in enumerate(np.isnan(fhr).tolist()):
                if len(lost) == full:
                    self.session_lost_n -= lost[0]
                lost.append(v)
                self.session_lost_n += v
                if len(lost) == full:
                    self.loss_alarm.update(self.session_lost_n / full, (first + k) * POINT_S)
        else:
            lost.clear()
            self.session_lost_n = 0
            self.loss_alarm.reset()
        on = self.loss_alarm.on
        if on:
            detail = (f"no fetal heart rate for {self.session_lost_n / full:.0%} of the last "
                      f"{_LOSS_WINDOW_S:.0f} s of the recording session: the probe needs moving")  # fmt: skip
        else:
            detail = "fetal heart rate found again" if recording else "the recording session ended"
        # the recording's condition, not the baby's: low, never escalated (docs/mqtt.md)
        self.alerts.set("signal_loss", on, detail, severity="low")

    def _count_unchecked(self, unchecked: Bools, first: int) -> None:
        """Points `first`... withheld as unchecked (or not) into the last minute's share, and
        that share through the maternal_unmonitored hysteresis, point by point (the same
        whatever the batches). A probe put away (off the skin) hears no heart to check: the
        alarm starts afresh."""
        h, full = self.history_unchecked, int(_COINCIDENCE_WINDOW_S / POINT_S)
        if self.session.state.on_skin is False:
            self.unmonitored_alarm.reset()
        for k, v in enumerate(unchecked.tolist()):
            if len(h) == full:
                self.history_unchecked_n -= h[0]
            h.append(v)
            self.history_unchecked_n += v
            if len(h) == full and self.session.state.on_skin is not False:
                self.unmonitored_alarm.update(
                    self.history_unchecked_n / full, (first + k) * POINT_S
                )

    def _check_alerts(self) -> None:
        n = int(_COINCIDENCE_WINDOW_S / POINT_S)
        maternal = np.array(list(self.history_maternal)[-n:], dtype=bool)
        if len(maternal) < n:
            return
        # A probe put away (off the skin) hears no heart to check: nothing to tell the nurse.
        off_skin = self.session.state.on_skin is False
        unmonitored = self.unmonitored_alarm.on and not off_skin
        if unmonitored:
            detail = ("the mother's pulse is not being monitored: fetal heart rate withheld; "
                      "check the finger sensor")  # fmt: skip
        else:
            detail = "the probe is off the skin" if off_skin else "the mother's pulse is monitored"
        self.alerts.set("maternal_unmonitored", unmonitored, detail)
        # Not cleared for want of her pulse: the Doppler may still be hearing only her.
        if not unmonitored:
            self.alerts.set(
                "maternal_coincidence",
                float(np.mean(maternal)) > _COINCIDENCE_RAISE,
                "the Doppler rate follows the mother's pulse: reposition the probe",
            )
        window = np.array(list(self.history_fhr)[-int(_RATE_WINDOW_S / POINT_S) :], dtype=float)
        valid = window[~np.isnan(window)]
        if len(window) * POINT_S >= _RATE_WINDOW_S and len(valid) > len(window) / 2:
            rate = float(np.median(valid))
            self.alerts.set(
                "bradycardia", rate < BRADYCARDIA_BPM, f"FHR {rate:.0f} bpm for 3 min", "high"
            )
            self.alerts.set(
                "tachycardia", rate > TACHYCARDIA_BPM, f"FHR {rate:.0f} bpm for 3 min", "medium"
            )

    # ---- feedback to the device (its LED and tones guide the mother) ----

    def feedback_level(self) -> p.FeedbackLevel:
        recent = list(itertools.islice(reversed(self.history_fhr), _FEEDBACK_POINTS))
        if len(recent) < _FEEDBACK_POINTS:
            return p.FeedbackLevel.SEARCHING
        share = sum(1 for v in recent if v == v) / len(recent)
        if share >= _FEEDBACK_GOOD:
            return p.FeedbackLevel.GOOD
        if share >= _FEEDBACK_WEAK:
            return p.FeedbackLevel.WEAK
        return p.FeedbackLevel.SEARCHING

    def feedback_flags(self) -> int:
        # a complete session rests until the probe comes off (gateway/processing/recording/)
        done = self.recording is not None and self.recording.resting_boot is not None
        recent = list(itertools.islice(reversed(self.history_maternal), _FEEDBACK_POINTS))
        maternal = len(recent) == _FEEDBACK_POINTS and sum(recent) >= _FEEDBACK_MATERNAL * len(
            recent
        )
        return (p.FEEDBACK_COMPLETE if done else 0) | (p.FEEDBACK_MATERNAL if maternal else 0)

    def _send_feedback(self, now: float) -> None:
        s = self.session
        if s.link is None or (s.auth is not None and not s.auth.established):
            return
        if self._feedback_task is not None and not self._feedback_task.done():
            return  # one at a time: a slow link is never flooded
        want = (s.link, int(self.feedback_level()), self.feedback_flags())
        since = now - self._feedback_at
        if since < _FEEDBACK_MIN_S or (want == self._feedback_sent and since < _FEEDBACK_REPEAT_S):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._feedback_sent, self._feedback_at = want, now
        args = p.feedback_args(want[1], want[2])
        self._feedback_task = loop.create_task(s.request(p.Op.FEEDBACK, args, timeout_s=2.0))

    def status_fields(self) -> dict[str, Any]:
        return {"signal_quality": round(self.last_quality, 2), "alerts": self.alerts.active()}
