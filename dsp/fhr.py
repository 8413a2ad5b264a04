"""Fetal heart rate from continuous-wave Doppler audio, at the CTG point rate of 4 Hz.

Method (see docs/fhr.md): short-time spectra every ~5 ms give band envelopes of the Doppler
audio; the fetal-band envelope (valve and wall shifts, 150-600 Hz) is autocorrelated over a
3.75 s window centred on each 4 Hz point (Dawes-Redman epoch length; Valderrama & Clifford,
Physiol Meas 2019). On top of the classic chain:

- movement bursts: frames far above the recent background level (broadband, loud) are
  neutralised before the autocorrelation, and a window dominated by them gives no estimate;
- halving/doubling: the strongest autocorrelation peak L is replaced by L/2 or L/3 only if
  the autocorrelation is as high at the multiples of L/k as at those of L;
- probe displacement: a weak periodicity gives no estimate (quality 0);
- maternal vessel pulses: a maternal arterial flow wave is long (~0.2-0.3 s) and gives a
  broad autocorrelation peak; such windows are withheld. When a maternal rate is given,
  points within 5 bpm of it are flagged `maternal` and withheld (the manufacturers'
  cross-channel coincidence check), unless the window's pulses are clearly fetal (short
  valve clicks) or the trace reached the maternal rate continuously from a clearly
  different rate and has not stayed there for 30 s (a fetal deceleration or acceleration
  passing through the maternal rate);
- a causal rate tracker: the FHR does not jump by more than 25 bpm between 0.25 s points,
  so a jump is withheld (or, for a halving slip, replaced by the supported sub-multiple
  that continues the rhythm) until the new rate has persisted for 2 s.

All points due in one call are estimated together (vectorised); the tracker
(dsp/fhr_tracker.py) then runs point by point, so streaming and batch give identical points;
the maternal checks are dsp/maternal_coincidence.py. `FhrStream` is the implementation and
composes them; `fhr_from_doppler` is the stream fed once and flushed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import overload

import numpy as np
from numpy.typing import ArrayLike
from scipy.fft import next_fast_len
from scipy.ndimage import maximum_filter1d, minimum_filter1d

from dsp.arrays import Bools, Floats, Ints
from dsp.fhr_tracker import ALT_FACTORS, MIN_ACF, MIN_ACF_TRACKED, RateTracker, RawEstimates
from dsp.maternal_coincidence import (
    MATERNAL_WAIT_S,
    MaternalCoincidence,
    covered_windows,
    maternal_coincidence,
)
from dsp.maternal_lock import MaternalCanceller

__all__ = ["FhrPoints", "FhrStream", "fhr_from_doppler", "maternal_coincidence"]

POINT_RATE_HZ = 4.0  # CTG standard
POINT_S = 1.0 / POINT_RATE_HZ
WINDOW_S = 3.75  # Dawes-Redman epoch; Valderrama & Clifford 2019 analysis window
MIN_WINDOW_S = 2.5  # shortest (truncated) window at the ends of a recording
ENVELOPE_RATE_HZ = 200.0  # nominal envelope rate (hop ~5 ms)
ENVELOPE_SMOOTH_S = 0.02  # Hann smoothing of the envelope (~20 Hz low-pass)
FETAL_BAND_HZ = (150.0, 600.0)  # valve and fast wall Doppler shifts at 2 MHz
BROADBAND_MIN_HZ = 25.0  # lower edge of the broadband level (movement detection)
LOW_BAND_HZ = (25.0, 150.0)  # below the fetal band: vessel walls, slow tissue motion
FHR_RANGE_BPM = (50.0, 240.0)  # physiological search range
SUBMULTIPLE_RATIO = 0.80  # L/k is the period if its extra multiples are this strong
# Rates above 200 bpm are rare (tachyarrhythmia) while S1-S2 doubling is common: demand
# more evidence before doubling into that range.
HIGH_RATE_BPM = 200.0
HIGH_RATE_RATIO = 0.95
COMB_SPAN = 0.6  # multiples are checked up to this fraction of the window
# Pulse width: fetal valve and wall events last ~20-110 ms (isovolumic times ~30-40 ms,
# atrial and ventricular wall motion ~70-110 ms), while a maternal arterial pulse is a
# systolic flow wave ~0.2-0.3 s long. The autocorrelation peak of a train of pulses of
# duration D has a half-width of about D/2, so 80 ms lies between the two.
MAX_PEAK_HALF_WIDTH_S = 0.08
# Low-shift source: fetal cardiac structures move at ~3-35 cm/s (~80-900 Hz at 2 MHz), so
# their beat-synchronous modulation is spread over both sides of 150 Hz, while a maternal
# vessel wall or slow tissue motion (mm/s to ~2 cm/s) pulses below it and reaches the
# fetal band only through its spectral skirt. A window whose periodic power at the period
# is over 3x (~5 dB) larger in LOW_BAND_HZ than in the fetal band is withheld. 3 was set
# between fetal windows (ratio ~0.4-1) and strong low-shift maternal pulses (4-12) of
# two synthesizer versions; a fetal wall seen at a very oblique angle also shifts low and
# would be withheld (lost coverage, not a wrong rate).
LOW_SHIFT_RATIO = 3.0
# Above the fetal band: blood flow (maternal arteries 40-100 cm/s peak: up to ~2 kHz at
# 2 MHz). A maternal arterial flow wave carries its systolic high shifts as a broad pulse;
# a window whose high band repeats at the period (>= MIN_ACF) with a broad peak (half-width
# > MAX_PEAK_HALF_WIDTH_S) is withheld unless its fetal-band pulses are clearly fetal
# (half-width <= FETAL_PULSE_HALF_WIDTH_S): fetal outflow (aorta, ductus; ejection
# ~0.18 s) is broad up there too, but comes with valve clicks.
HIGH_BAND_HZ = (600.0, 1800.0)
FRAME_BLOCK = 2048  # frames per FFT block (cache-sized)
ROW_BLOCK = 256  # points estimated together
MOVEMENT_FACTOR = (
    10.0  # broadband level x background (75th centile) above which a frame is artefact
)
MAX_ARTEFACT_FRACTION = 0.35
# Fetal movement and probe handling last seconds; the longest cardiac Doppler event (a
# ventricular wall motion) ~0.1 s. Loud frames count as artefact only in runs this long.
MIN_MOVEMENT_S = 0.25
# Clearly fetal pulses: a periodicity of pulses no longer than ~80 ms (autocorrelation
# half-width <= 40 ms, half the maternal limit MAX_PEAK_HALF_WIDTH_S): valve clicks and
# isovolumic events, which a maternal arterial flow wave (~0.2-0.3 s) cannot produce. They
# exempt a window from the high-band check above.
FETAL_PULSE_HALF_WIDTH_S = 0.04
REFERENCE_S = 20.0  # history for the background level
MIN_FS_HZ, MAX_FS_HZ = 1000.0, 16000.0
# Rows of the envelope buffer: the four band envelopes as heard, the same four with the
# mother's beat-locked pulses cancelled, and whether a frame's cancellation was done.
_RAW, _CANCELLED, _COVERED, _ENV_ROWS = slice(0, 4), slice(4, 8), 8, 9


@dataclass(frozen=True)
class FhrPoints:
    """4 Hz FHR points; arrays of equal length, t_s in s since the first audio sample."""

    t_s: Floats
    fhr_bpm: Floats  # NaN = no estimate
    quality: Floats  # [0, 1]
    maternal: Bools  # coincided with the maternal rate and was withheld
    # Withheld because nothing of the mother's channel covered it (her finger off the PPG, a
    # PPG with no pulse, samples lost: dsp/maternal_coincidence.py): her pulse was not being
    # watched there. Points made without the maternal checks (a loss, the classic estimator)
    # may leave it out: then none is.
    unchecked: Bools = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        if self.unchecked.size == 0 and np.size(self.t_s):
            object.__setattr__(self, "unchecked", np.zeros(np.size(self.t_s), dtype=bool))

    @staticmethod
    def empty() -> FhrPoints:
        z = np.zeros(0)
        return FhrPoints(z, z.copy(), z.copy(), np.zeros(0, dtype=bool))

    @staticmethod
    def concat(parts: list[FhrPoints]) -> FhrPoints:
        if not parts:
            return FhrPoints.empty()
        return FhrPoints(
            np.concatenate([p.t_s for p in parts]),
            np.concatenate([p.fhr_bpm for p in parts]),
            np.concatenate([p.quality for p in parts]),
            np.concatenate([p.maternal for p in parts]),
            np.concatenate([p.unchecked for p in parts]),
        )


def fhr_from_doppler(
    audio: ArrayLike,
    fs_hz: float,
    mhr_t_s: ArrayLike | None = None,
    mhr_bpm: ArrayLike | None = None,
) -> FhrPoints:
    """FHR points for a whole recording: one per 0.25 s up to its end."""
    stream = FhrStream(fs_hz)
    if mhr_t_s is not None and mhr_bpm is not None:
        stream.feed_maternal(mhr_t_s, mhr_bpm)
    first = stream.feed(np.asarray(audio))
    return FhrPoints.concat([first, stream.flush()])


class FhrStream:
    """Streaming FHR: feed audio chunks of any size, get the points each chunk completes.

    A point at t needs audio up to t + 1.875 s (the centred window); `flush()` completes
    the last points with truncated windows at the end of a recording. Audio is framed only
    when a point becomes due, and all due points are estimated together (vectorised), then
    tracked (`RateTracker`) and checked against the mother (`MaternalCoincidence`).
    `maternal_channel`: the recording has the mother's channel (a monitor with a PPG), so
    its points wait for it from the first and are never shown unchecked, even before any of
    it has arrived.
    """

    def __init__(self, fs_hz: float, maternal_channel: bool = False) -> None:
        fs = float(fs_hz)
        if not np.isfinite(fs) or not MIN_FS_HZ <= fs <= MAX_FS_HZ:
            raise ValueError(f"sample rate must be {MIN_FS_HZ:.0f}-{MAX_FS_HZ:.0f} Hz, got {fs_hz}")
        self.fs_hz = fs
        self._hop = max(1, int(round(fs / ENVELOPE_RATE_HZ)))
        self._frame = 8 * self._hop  # ~40 ms Hann frames, ~25 Hz bins
        self._env_fs = fs / self._hop
        freqs = np.fft.rfftfreq(self._frame, 1.0 / fs)
        hi = min(FETAL_BAND_HZ[1], 0.45 * fs)
        # Spectral bins of the bands (contiguous ranges): fetal, broadband, low, high. Summed
        # as slices, not by a matrix product (a BLAS call may start threads: one core).
        masks = (
            (freqs >= FETAL_BAND_HZ[0]) & (freqs <= hi),
            freqs >= BROADBAND_MIN_HZ,
            (freqs >= LOW_BAND_HZ[0]) & (freqs < LOW_BAND_HZ[1]),
            (freqs > HIGH_BAND_HZ[0]) & (freqs <= min(HIGH_BAND_HZ[1], 0.45 * fs)),
        )
        self._bands = [
            (int(np.argmax(m)), int(np.argmax(m)) + int(m.sum())) if m.any() else (0, 0)
            for m in masks
        ]
        self._win = np.hanning(self._frame + 2)[1:-1]
        k = max(3, int(round(ENVELOPE_SMOOTH_S * self._env_fs)) | 1)
        self._smoother = np.hanning(k + 2)[1:-1] / np.hanning(k + 2)[1:-1].sum()
        self._smoother_power: dict[tuple[int, int], tuple[int, Floats]] = {}
        self._half_frames = int(round(WINDOW_S / 2 * self._env_fs))
        self._min_frames = int(round(MIN_WINDOW_S * self._env_fs))
        self._ref_frames = int(round(REFERENCE_S * self._env_fs))
        self._pad = int(round(0.05 * self._env_fs))  # movement mask dilation, ~50 ms
        self._min_art = int(round(MIN_MOVEMENT_S * self._env_fs)) | 1
        lo, hi_bpm = FHR_RANGE_BPM
        self._lag_min = int(np.floor(60.0 / hi_bpm * self._env_fs))
        self._lag_max = int(np.ceil(60.0 / lo * self._env_fs))
        # State.
        self._audio_parts: list[Floats] = []  # audio not yet framed (incl. frame overlap)
        self._n_audio = 0  # samples fed so far
        # Band envelopes (rows: fetal, broadband, low, high; then the same four with the
        # mother's beat-locked pulses cancelled, and whether that was done: _RAW, _CANCELLED,
        # _COVERED) of frames _env_start.. in _env[:, _off : _off + _len]; the buffer is
        # reused, not reallocated per chunk.
        self._env = np.zeros((_ENV_ROWS, 0))
        self._off = 0
        self._len = 0
        self._env_start = 0  # frame index of the first kept frame
        self._next_point = 1  # index k of the next point (t = k / 4)
        self._set_need()
        # Once her PPG's beats are fed: the cancellation of her beat-locked pulses.
        self._lock: MaternalCanceller | None = None
        self._maternal = MaternalCoincidence(self._env_fs, WINDOW_S, maternal_channel)
        self._tracker = RateTracker()

    # -- maternal channel ------------------------------------------------------------
    def feed_maternal(self, t_s: ArrayLike, mhr_bpm: ArrayLike) -> None:
        """Maternal rate points known so far (same time base as the audio)."""
        t = np.asarray(t_s, dtype=float).ravel()
        b = np.asarray(mhr_bpm, dtype=float).ravel()
        if t.size != b.size:
            raise ValueError("maternal t_s and mhr_bpm must have equal length")
        self._maternal.feed_rate(t, b, self._n_audio / self.fs_hz)

    def feed_maternal_beats(self, t_s: ArrayLike) -> None:
        """The mother's beats known so far: PPG beat fiducials in s on the audio's time base
        (dsp.mhr.MaternalBeatStream), in order. With them the points are estimated with the
        mother's beat-locked pulses cancelled, and her rate comes from them too."""
        t = np.asarray(t_s, dtype=float).ravel()
        t = t[np.isfinite(t)]
        if self._lock is None:
            self._lock = MaternalCanceller(self._env_fs, 4)
        if not t.size:
            return
        centre = (self._frame / 2) / self._hop  # frame f is centred at (f + centre) / env_fs
        self._lock.add_beats(t * self._env_fs - centre)
        self._maternal.feed_beats(t, self._n_audio / self.fs_hz)

    # -- audio ----------------------------------------------------------------------
    def feed(self, audio: ArrayLike) -> FhrPoints:
        """Points newly completed by this chunk (any size, including 0 or 1 sample)."""
        x = np.array(audio, dtype=float)
        if x.ndim != 1:
            raise ValueError("audio must be one-dimensional")
        if x.size:
            if not math.isfinite(x.sum()):  # NaN/inf samples carry no signal: quality 0
                x[~np.isfinite(x)] = 0.0
            self._audio_parts.append(x)
            self._n_audio += x.size
        if self._n_audio < self._need:  # audio up to the end of the next point's window
            none = np.zeros(0, dtype=bool)
            return self._release(FhrPoints.empty(), none, none, final=False)
        self._append_frames()
        return self._release(*self._compute_points(final=False), final=False)

    def flush(self) -> FhrPoints:
        """Points up to the end of the audio fed so far, with truncated windows."""
        self._append_frames()
        return self._release(*self._compute_points(final=True), final=True)

    # -- internals ------------------------------------------------------------------
    def _append_frames(self) -> None:
        if not self._audio_parts:
            return
        parts = self._audio_parts
        buf = parts[0] if len(parts) == 1 else np.concatenate(parts)
        n_frames = 0 if buf.size < self._frame else (buf.size - self._frame) // self._hop + 1
        if n_frames:
            bands = []
            for f0 in range(0, n_frames, FRAME_BLOCK):
                f1 = min(f0 + FRAME_BLOCK, n_frames)
                seg = buf[f0 * self._hop : (f1 - 1) * self._hop + self._frame]
                frames = np.lib.stride_tricks.as_strided(
                    seg,
                    (f1 - f0, self._frame),
                    (seg.strides[0] * self._hop, seg.strides[0]),
                    writeable=False,
                )
                frames = frames - frames.sum(axis=1, keepdims=True) * (1.0 / self._frame)
                spec = np.fft.rfft(frames * self._win, axis=1)
                power = spec.real**2 + spec.imag**2
                b = np.empty((f1 - f0, len(self._bands)))
                for j, (a, z) in enumerate(self._bands):
                    b[:, j] = power[:, a:z].sum(axis=1)
                bands.append(np.sqrt(b))
            b = np.concatenate(bands) if len(bands) > 1 else bands[0]
            self._store(b.T)
        rest = buf[n_frames * self._hop :]
        self._audio_parts = [rest.copy()] if rest.size else []

    def _set_need(self) -> None:
        self._need = (self._frame_range(self._next_point)[1] - 1) * self._hop + self._frame

    @overload
    def _frame_range(self, k: int) -> tuple[int, int]: ...
    @overload
    def _frame_range(self, k: Ints) -> tuple[Ints, Ints]: ...
    def _frame_range(self, k: int | Ints) -> tuple[int, int] | tuple[Ints, Ints]:
        """Frames whose centres fall in the window of point k: [lo, hi) (k may be an array)."""
        frame_centre = (self._frame / 2) / self._hop
        if isinstance(k, np.ndarray):
            c = np.floor(k * POINT_S * self._env_fs - frame_centre).astype(np.intp)
            return c - self._half_frames, c + self._half_frames + 1
        i = math.floor(k * POINT_S * self._env_fs - frame_centre)
        return i - self._half_frames, i + self._half_frames + 1

    def _compute_points(self, final: bool) -> tuple[FhrPoints, Bools, Bools]:
        """The points now due, and per point: estimated with the mother's pulses cancelled
        (covered), and the mother's pulses may have made it (MaternalCoincidence.locked)."""
        n_frames = self._env_start + self._len
        last_k = int(np.floor(self._n_audio / self.fs_hz / POINT_S + 1e-9))
        ks = np.arange(self._next_point, last_k + 1)
        lo, hi = self._frame_range(ks)
        if not final:
            ready = n_frames
            if self._lock is not None:  # wait for the cancellation of the window
                self._run_lock()
                ready = min(ready, self._lock.done)
            n = int(np.searchsorted(hi, ready, side="right"))
            ks, lo, hi = ks[:n], lo[:n], hi[:n]
        if ks.size == 0:
            return FhrPoints.empty(), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
        self._next_point = int(ks[-1]) + 1
        self._set_need()
        t = ks.astype(np.float64) * POINT_S
        lo, hi = np.maximum(lo, 0), np.minimum(hi, n_frames)
        width = 2 * self._half_frames + 1
        est = _Estimates(ks.size, self._env_fs, (self._lag_min, self._lag_max))
        covered = self._covered(lo, hi)
        full = np.flatnonzero(hi - lo == width)
        for i0 in range(0, full.size, ROW_BLOCK):
            rows = full[i0 : i0 + ROW_BLOCK]
            for c in (False, True):
                sub = rows[covered[rows] == c]
                if sub.size:
                    self._estimate_rows(lo[sub], width, est, sub, c)
        part = np.flatnonzero((hi - lo != width) & (hi - lo >= self._min_frames))
        for r in part:
            one = np.array([r])
            self._estimate_rows(lo[r : r + 1], int(hi[r] - lo[r]), est, one, bool(covered[r]))
        fhr, qual = self._tracker.track(t, est)
        live = slice(self._off, self._off + self._len)
        raw, cancelled = self._env[_RAW, live], self._env[_CANCELLED, live]
        locked = self._maternal.locked(
            t, lo, hi, covered, fhr, qual, raw, cancelled, self._env_start
        )
        self._trim(int(ks[-1]) + 1)
        return FhrPoints(t, fhr, qual, np.zeros(ks.size, dtype=bool)), covered, locked

    def _trim(self, next_k: int) -> None:
        lo, _ = self._frame_range(next_k)
        keep_from = max(0, lo - self._ref_frames)
        drop = keep_from - self._env_start
        if drop > 0:
            self._off += drop
            self._len -= drop
            self._env_start += drop

    def _store(self, b: Floats) -> None:
        """Append envelope columns b (one row per envelope band, n columns), compacting or growing the buffer as needed."""
        n = b.shape[1]
        if self._off + self._len + n > self._env.shape[1]:
            cap = max(2 * (self._len + n), 4 * self._ref_frames)
            live = self._env[:, self._off : self._off + self._len]
            if cap > self._env.shape[1] or self._len + n > self._env.shape[1]:
                new = np.empty((_ENV_ROWS, cap))
                new[:, : self._len] = live
                self._env = new
            else:
                self._env[:, : self._len] = live.copy()
            self._off = 0
        at = self._off + self._len
        self._env[_RAW, at : at + n] = b
        self._env[_CANCELLED, at : at + n] = b
        self._env[_COVERED, at : at + n] = 0.0
        self._len += n
        self._run_lock()

    def _run_lock(self) -> None:
        """Cancel the mother's pulses in every beat segment now complete (PPG and audio)."""
        if self._lock is None:
            return
        s = self._env_start - self._off
        self._lock.done = max(self._lock.done, self._env_start)
        n_frames = self._env_start + self._len
        self._lock.cancel(self._env[_RAW], self._env[_CANCELLED], self._env[_COVERED], s, n_frames)
        # A PPG that stopped (finger off, lost samples) must not hold the FHR back for
        # long: after MATERNAL_WAIT_S without a beat the frames go on uncovered.
        stalled = n_frames - int(MATERNAL_WAIT_S * self._env_fs)
        if self._lock.last_beat() < stalled:
            self._lock.skip_to(stalled)

    def _covered(self, lo: Ints, hi: Ints) -> Bools:
        """Windows [lo, hi) whose frames (nearly all) had the mother's pulses cancelled."""
        if self._lock is None:
            return np.zeros(lo.size, dtype=bool)
        live = self._env[_COVERED, self._off : self._off + self._len]
        return covered_windows(live, self._env_start, lo, hi)

    def _estimate_rows(
        self, lo: Ints, width: int, est: _Estimates, rows: Ints, cancelled: bool = False
    ) -> None:
        """Raw estimates for windows [lo, lo + width) of the envelopes, all at once (of the
        envelopes with the mother's pulses cancelled if `cancelled`)."""
        s = self._env_start - self._off  # buffer column of frame f is f - s
        r0 = 4 if cancelled else 0
        all_env = self._env[1]  # movement and background: the broadband level as heard
        rows_used = [r0, 1, r0 + 2, r0 + 3]
        if lo.size == 1:
            env, broad, low, high = self._env[rows_used, None, lo[0] - s : lo[0] - s + width]
        else:
            env = _windows(self._env[r0], lo - s, width)
            broad = _windows(all_env, lo - s, width)
            low = _windows(self._env[r0 + 2], lo - s, width)
            high = _windows(self._env[r0 + 3], lo - s, width)
        n = lo.size
        # Background level: 75th centile of the broadband level over the last 20 s.
        bg = np.empty(n)
        for row, l0 in enumerate(lo):
            a = max(int(l0) - self._ref_frames, 0)
            a = -(-a // 4) * 4  # every 4th frame on a fixed grid
            h = all_env[a - s : int(l0) + width - s : 4]
            j = int(0.75 * (h.size - 1))
            bg[row] = np.partition(h, j)[j] if h.size else 0.0
        ok = bg > 0
        # Movement: broadband frames far above the background for longer than any cardiac
        # event (a sparse train of loud valve clicks is not movement), dilated by ~50 ms.
        art = broad > MOVEMENT_FACTOR * bg[:, None]
        if art.any():
            art = minimum_filter1d(art.view(np.uint8), self._min_art, axis=1, mode="nearest")
            art = maximum_filter1d(art, self._min_art + 2 * self._pad, axis=1, mode="constant")
            art = art > 0
            frac = art.mean(axis=1)
            for i in np.flatnonzero(art.any(axis=1) & (frac <= MAX_ARTEFACT_FRACTION)):
                m = art[i]
                env[i, m] = np.median(env[i, ~m])
                low[i, m] = np.median(low[i, ~m])
                high[i, m] = np.median(high[i, ~m])
        else:
            frac = np.zeros(n)
        ok &= frac <= MAX_ARTEFACT_FRACTION
        n_lags = min(int(COMB_SPAN * width) + 4, width)
        acf, flat = self._autocorr_rows(env, n_lags)
        ok &= ~flat
        lag, peak = self._choose_lags(acf, width)
        ok &= np.isfinite(lag)
        weak = ok & (peak < MIN_ACF_TRACKED)
        if not np.any(ok & ~weak):  # nothing to report: skip the signature checks
            est.quality[rows] = np.where(weak, 0.5 * np.maximum(peak, 0.0), 0.0)
            return
        lag_i = np.where(ok, np.rint(np.where(ok, lag, 0.0)), self._lag_min).astype(int)
        half_w = _half_widths(acf, lag_i) / self._env_fs
        # Maternal vessel signature: a broad periodic pulse (arterial flow wave), a
        # periodicity that lives below the fetal band (vessel wall, tissue motion), or a
        # broad periodic pulse of high-shift flow without clearly fetal valve clicks.
        maternal_like = half_w > MAX_PEAK_HALF_WIDTH_S
        strong = ok & (peak >= MIN_ACF_TRACKED)  # the windows that can give an estimate
        for i in np.flatnonzero(strong & ~maternal_like):
            li = lag_i[i]
            xf = env[i] - env[i].mean()
            xl = low[i] - low[i].mean()
            periodic_low = np.dot(xl[:-li], xl[li:])
            periodic_fetal = peak[i] * np.dot(xf, xf)
            maternal_like[i] = periodic_low > LOW_SHIFT_RATIO * periodic_fetal
        # (only where the fetal-band pulses are not clearly fetal; a flat high band, empty
        # at low sample rates, is skipped)
        chk = np.flatnonzero(strong & ~maternal_like & (half_w > FETAL_PULSE_HALF_WIDTH_S))
        if chk.size:
            hacf, hflat = self._autocorr_rows(high[chk], acf.shape[1])
            li = lag_i[chk]
            hpk = hacf[np.arange(chk.size), li]
            hw = _half_widths(hacf, li) / self._env_fs
            broad_high = ~hflat & (hpk >= MIN_ACF) & (hw > MAX_PEAK_HALF_WIDTH_S)
            maternal_like[chk] |= broad_high
        good = strong & ~maternal_like
        est.tracked_only[rows] = peak < MIN_ACF
        est.half_w[rows] = np.where(ok, half_w, np.inf)
        quality = np.minimum(np.maximum((peak - 0.2) / 0.5, 0.0), 1.0) * (1.0 - frac)
        # Kept for the tracker, which may look for a sub-multiple of the period on a jump.
        est.peak[rows] = peak
        est.lag_i[rows] = lag_i
        for j, r in enumerate(rows):
            est.acf_of[r] = (acf, j)
        est.bpm[rows] = np.where(good, 60.0 * self._env_fs / np.where(good, lag, 1.0), np.nan)
        est.quality[rows] = np.where(
            good, quality, np.where(weak, 0.5 * np.maximum(peak, 0.0), 0.0)
        )

    def _autocorr_rows(self, env: Floats, n_lags: int) -> tuple[Floats, Bools]:
        """Biased autocorrelation of each row of the smoothed envelope, normalised to 1 at
        lag 0; flat rows flagged. The ~20 Hz smoothing (beat-to-beat jitter of a few ms
        must not decorrelate the beats) is applied in the spectrum: |F(x * h)|^2 =
        |F(x)|^2 |F(h)|^2."""
        width = env.shape[1]
        x = env - env.sum(axis=1, keepdims=True) * (1.0 / width)
        cached = self._smoother_power.get((width, n_lags))
        if cached is None:
            nfft = next_fast_len(width + self._smoother.size + n_lags, real=True)
            hf = np.fft.rfft(self._smoother, nfft)
            cached = self._smoother_power[(width, n_lags)] = (nfft, hf.real**2 + hf.imag**2)
        nfft, h2 = cached
        f = np.fft.rfft(x, nfft, axis=1)
        r = np.fft.irfft((f.real**2 + f.imag**2) * h2, nfft, axis=1)[:, :n_lags]
        e0 = r[:, 0]
        scale = np.maximum(1.0, np.einsum("ij,ij->i", env, env))
        flat = ~np.isfinite(e0) | (e0 <= 1e-20 * scale)
        return r / np.where(flat, 1.0, e0)[:, None], flat

    def _choose_lags(self, acf: Floats, n_env: int) -> tuple[Floats, Floats]:
        """Beat period (lags) and its autocorrelation per row, guarded against octave errors.

        Start from the strongest peak L. If the true period is L/k (halving: the same beat
        seen k times), the autocorrelation is also high at the multiples of L/k that are
        not multiples of L (L/2, 3L/2, ...). If L/2 is only the systolic-diastolic spacing
        (the doubling trap), those lags are clearly weaker than L, 2L. So L/k is taken only
        when its extra multiples reach SUBMULTIPLE_RATIO of the multiples of L.
        """
        n = acf.shape[0]
        lmin, lmax = self._lag_min, self._lag_max
        seg = acf[:, lmin - 1 : lmax + 2]
        inner = seg[:, 1:-1]
        is_peak = (inner > seg[:, :-2]) & (inner >= seg[:, 2:]) & (inner > 0)
        grid = np.arange(lmin, lmin + inner.shape[1])
        pk = np.where(is_peak, inner, -np.inf)
        has = is_peak.any(axis=1)
        best = lmin + np.argmax(pk, axis=1)
        rows = np.arange(n)
        span = min(int(COMB_SPAN * n_env), acf.shape[1] - 3)
        lag = _refine_rows(acf, best)
        peak = acf[rows, best]
        on_l = None  # comb over the multiples of L, computed when a sub-multiple is tested
        chosen = lag.copy()
        chosen_peak = peak.copy()
        decided = ~has
        for k in (3, 2):
            c = lag / k
            tol = np.maximum(2.0, 0.06 * c)
            if np.all(decided | (c + tol < lmin)):
                continue  # no candidate sub-multiple in the search range
            near = is_peak & (np.abs(grid[None, :] - c[:, None]) <= tol[:, None])
            found = near.any(axis=1) & ~decided
            if not found.any():
                continue
            j = lmin + np.argmax(np.where(near, inner, -np.inf), axis=1)
            cj = np.where(found, _refine_rows(acf, np.where(found, j, best)), lag)
            if on_l is None:
                on_l = _comb_mean(acf, lag, span, 1)
            extra = _comb_mean(acf, cj, span, k)
            need = np.where(
                60.0 * self._env_fs / cj <= HIGH_RATE_BPM, SUBMULTIPLE_RATIO, HIGH_RATE_RATIO
            )
            take = found & (extra >= need * on_l)
            chosen = np.where(take, cj, chosen)
            chosen_peak = np.where(take, acf[rows, np.rint(cj).astype(int)], chosen_peak)
            decided |= take
        chosen = np.where(has, chosen, np.nan)
        chosen_peak = np.where(has, chosen_peak, 0.0)
        return chosen, chosen_peak

    def _release(self, new: FhrPoints, covered: Bools, locked: Bools, final: bool) -> FhrPoints:
        """Apply the maternal checks, waiting for the maternal channel if needed."""
        now_s = self._n_audio / self.fs_hz
        args = (new.t_s, new.fhr_bpm, new.quality, covered, locked)
        return FhrPoints(*self._maternal.release(*args, now_s, final))


class _Estimates(RawEstimates):
    """Raw estimates of one batch, with what it takes to find the sub-multiples of a
    point's period when the tracker asks for them (on a jump)."""

    __slots__ = ("half_w", "lag_i", "acf_of", "_env_fs", "_lag_range")

    def __init__(self, n: int, env_fs_hz: float, lag_range: tuple[int, int]) -> None:
        super().__init__(n)
        self.half_w: Floats = np.full(n, np.inf)  # half-width (s) of the autocorrelation peak
        self.lag_i: Ints = np.zeros(n, dtype=np.intp)
        self.acf_of: list[tuple[Floats, int] | None] = [None] * n  # (acf rows, row) per point
        self._env_fs = env_fs_hz
        self._lag_range = lag_range

    def alternatives(self, i: int) -> tuple[Floats, Floats]:
        """Sub-multiples of the period of point i (L/2, 2L/3) as rates with their
        autocorrelation, computed on the first request."""
        found = self.acf_of[i]
        if found is not None:
            acf, j = found
            self.acf_of[i] = None
            row = acf[j : j + 1]
            for m, factor in enumerate(ALT_FACTORS):
                lag, val = _peak_near(row, np.array([self.lag_i[i] * factor]), *self._lag_range)
                self.alt_bpm[i, m] = 60.0 * self._env_fs / lag[0]
                self.alt_acf[i, m] = val[0]
        return super().alternatives(i)


def _windows(x: Floats, starts: Ints, width: int) -> Floats:
    """Copies of x[s : s + width] for each start s, as rows."""
    view = np.lib.stride_tricks.as_strided(
        x, (x.size - width + 1, width), (x.strides[0], x.strides[0]), writeable=False
    )
    return view[starts]


def _refine_rows(a: Floats, i: Ints) -> Floats:
    """Parabolic interpolation of peak positions i (one per row)."""
    if a.shape[0] == 1:  # one row (streaming): the same arithmetic on Python floats
        j = min(max(int(i[0]), 1), a.shape[1] - 2)
        y0, y1, y2 = a[0, j - 1 : j + 2].tolist()
        den = y0 - 2 * y1 + y2
        return np.array([j + (min(max(0.5 * (y0 - y2) / den, -0.5), 0.5) if den < 0 else 0.0)])
    rows = np.arange(a.shape[0])
    i = np.minimum(np.maximum(i, 1), a.shape[1] - 2)
    y0, y1, y2 = a[rows, i - 1], a[rows, i], a[rows, i + 1]
    den = y0 - 2 * y1 + y2
    neg = den < 0
    d = 0.5 * (y0 - y2) / np.where(neg, den, -1.0)
    offset: Floats = np.where(neg, np.minimum(np.maximum(d, -0.5), 0.5), 0.0)
    return offset + i


def _peak_near(acf: Floats, target: Floats, lag_min: int, lag_max: int) -> tuple[Floats, Floats]:
    """Highest local autocorrelation peak within +-6% of each row's target lag (in the
    search range lag_min..lag_max), refined; NaN lag and -inf where there is none."""
    n, m = acf.shape
    lo = np.maximum(np.ceil(target * 0.94), lag_min).astype(int)
    hi = np.minimum(np.floor(target * 1.06), min(lag_max, m - 2)).astype(int)
    width = int(max(1, (hi - lo).max() + 1))
    pos = lo[:, None] + np.arange(width)
    inside = pos <= hi[:, None]
    pos = np.minimum(pos, m - 2)
    r = np.arange(n)[:, None]
    v = acf[r, pos]
    is_pk = inside & (v > acf[r, pos - 1]) & (v >= acf[r, pos + 1])
    v = np.where(is_pk, v, -np.inf)
    j = np.argmax(v, axis=1)
    best = v[np.arange(n), j]
    found = np.isfinite(best)
    lag = np.where(found, _refine_rows(acf, pos[np.arange(n), j]), np.nan)
    return lag, best


def _comb_mean(a: Floats, lag: Floats, span: int, k: int) -> Floats:
    """Mean over the multiples j*lag up to span (for k > 1 only j not divisible by k) of the
    highest autocorrelation within +-2 lags of each multiple."""
    n_mult = np.maximum(1, (span / lag).astype(int))
    j = np.arange(1, int(n_mult.max()) + 1)
    use = j <= n_mult[:, None]
    if k > 1:
        use &= j % k != 0
    pos = np.rint(lag[:, None] * j).astype(int)[:, :, None] + np.arange(-2, 3)
    pos = np.minimum(pos, a.shape[1] - 1)
    vals = a[np.arange(lag.size)[:, None, None], pos].max(axis=2)
    cnt = use.sum(axis=1)
    return np.where(cnt > 0, (vals * use).sum(axis=1) / np.maximum(cnt, 1), -np.inf)


def _half_widths(acf: Floats, lag_i: Ints) -> Floats:
    """Half-width (in lags) of the autocorrelation peak at lag_i, at half its height.

    Half height is taken above the lowest point within +-30% of the lag (or above 0); the
    edges are the first lags on either side at or below it, at most lag/2 away.
    """
    n, m = acf.shape
    if n == 1:  # one row (streaming): the same rule on slices
        return np.array([_half_width_1(acf[0], int(lag_i[0]))])
    i = np.minimum(np.maximum(lag_i, 2), m - 2)
    lim = i // 2
    d = np.arange(-int(lim.max()) - 1, int(lim.max()) + 2)
    pos = i[:, None] + d
    nb = acf[np.arange(n)[:, None], np.minimum(np.maximum(pos, 0), m - 1)]
    c = d.size // 2  # column of the peak itself
    top = nb[:, c]
    inside = np.abs(d) <= (0.3 * i).astype(int)[:, None]
    floor = np.minimum(np.where(inside, nb, np.inf).min(axis=1), 0.0)
    half = floor + 0.5 * (top - floor)
    go = (nb > half[:, None]) & (np.abs(d) < lim[:, None]) & (pos > 1) & (pos < m - 1)
    dl = np.argmin(go[:, c::-1], axis=1)
    dr = np.argmin(go[:, c:], axis=1)
    half_width: Floats = 0.5 * (dl + dr)
    return half_width


def _half_width_1(row: Floats, i: int) -> float:
    """_half_widths for one row."""
    m = row.size
    i = min(max(i, 2), m - 2)
    lim, sp = i // 2, int(0.3 * i)
    top = float(row[i])
    floor = min(float(row[max(i - sp, 0) : i + sp + 1].min()), 0.0)
    half = floor + 0.5 * (top - floor)
    left = row[i - lim : i + 1][::-1] > half  # d = 0..lim to the left
    left[lim] = False
    if i - lim <= 1:
        left[i - 1 :] = False  # positions <= 1
    right = row[i : min(i + lim, m - 1) + 1] > half  # d = 0..lim to the right
    if i + lim >= m - 1:
        right[-1] = False  # position m - 1
    else:
        right[lim] = False
    return 0.5 * (int(np.argmin(left)) + int(np.argmin(right)))
