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
- maternal vessel pulses: long, low-shift pulses give broad autocorrelation peaks and
  carry their periodicity in the low band; such windows are withheld, and when a maternal
  rate is given, points within 5 bpm of it are flagged `maternal` and withheld (the
  manufacturers' cross-channel coincidence check).

`FhrStream` is the implementation; `fhr_from_doppler` is the stream fed once and flushed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d

POINT_RATE_HZ = 4.0  # CTG standard
POINT_S = 1.0 / POINT_RATE_HZ
WINDOW_S = 3.75  # Dawes-Redman epoch; Valderrama & Clifford 2019 analysis window
MIN_WINDOW_S = 2.5  # shortest (truncated) window at the ends of a recording
ENVELOPE_RATE_HZ = 200.0  # nominal envelope rate (hop ~5 ms)
ENVELOPE_SMOOTH_S = 0.02  # Hann smoothing of the envelope (~20 Hz low-pass)
FETAL_BAND_HZ = (150.0, 600.0)  # valve and fast wall Doppler shifts at 2 MHz
LOW_BAND_HZ = (25.0, 150.0)  # slow wall and maternal vessel shifts
FHR_RANGE_BPM = (50.0, 240.0)  # physiological search range
MIN_ACF = 0.30  # periodicity below which there is no estimate (noise ACF ~0.2 peak)
SUBMULTIPLE_RATIO = 0.80  # L/k is the period if its extra multiples are this strong
# Rates above 200 bpm are rare (tachyarrhythmia) while S1-S2 doubling is common: demand
# more evidence before doubling into that range.
HIGH_RATE_BPM = 200.0
HIGH_RATE_RATIO = 0.95
COMB_SPAN = 0.6  # multiples are checked up to this fraction of the window
ACF_TAPER = 0.0  # 0 = biased ACF (favours short lags), 1 = unbiased (noisy at long lags)
MAX_PEAK_HALF_WIDTH_S = 0.06  # broader periodic pulses are maternal vessel pulses
MOVEMENT_FACTOR = (
    10.0  # broadband level x background (75th centile) above which a frame is artefact
)
MAX_ARTEFACT_FRACTION = 0.35
MATERNAL_TOLERANCE_BPM = 5.0  # coincidence with the maternal rate
MATERNAL_WAIT_S = 5.0  # how long a point waits for the maternal channel in streaming
REFERENCE_S = 20.0  # history for the background level
MIN_FS_HZ, MAX_FS_HZ = 1000.0, 16000.0


@dataclass(frozen=True)
class FhrPoints:
    """4 Hz FHR points; arrays of equal length, t_s in s since the first audio sample."""

    t_s: np.ndarray
    fhr_bpm: np.ndarray  # NaN = no estimate
    quality: np.ndarray  # [0, 1]
    maternal: np.ndarray  # bool: coincided with the maternal rate and was withheld

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
        )


def fhr_from_doppler(
    audio: np.ndarray,
    fs_hz: float,
    mhr_t_s: np.ndarray | None = None,
    mhr_bpm: np.ndarray | None = None,
) -> FhrPoints:
    """FHR points for a whole recording: one per 0.25 s up to its end."""
    stream = FhrStream(fs_hz)
    if mhr_t_s is not None and mhr_bpm is not None:
        stream.feed_maternal(mhr_t_s, mhr_bpm)
    first = stream.feed(np.asarray(audio))
    return FhrPoints.concat([first, stream.flush()])


def maternal_coincidence(
    t_s: np.ndarray,
    fhr_bpm: np.ndarray,
    mhr_t_s: np.ndarray,
    mhr_bpm: np.ndarray,
    tolerance_bpm: float = MATERNAL_TOLERANCE_BPM,
) -> np.ndarray:
    """True where the FHR estimate is within tolerance of the maternal rate at that time."""
    t_s, fhr_bpm = np.asarray(t_s, float), np.asarray(fhr_bpm, float)
    mt, mb = np.asarray(mhr_t_s, float), np.asarray(mhr_bpm, float)
    ok = np.isfinite(mt) & np.isfinite(mb)
    mt, mb = mt[ok], mb[ok]
    out = np.zeros(t_s.size, dtype=bool)
    if mt.size == 0 or t_s.size == 0:
        return out
    order = np.argsort(mt)
    mt, mb = mt[order], mb[order]
    # Maternal rate at each point: nearest maternal estimate within 2 s, and the range of
    # the maternal rate over +-2 s (the maternal rate moves too).
    idx = (
        np.clip(np.searchsorted(mt, t_s), 1, mt.size - 1)
        if mt.size > 1
        else np.zeros(t_s.size, dtype=int)
    )
    for shift in (-1, 0):
        j = np.clip(idx + shift, 0, mt.size - 1)
        near = np.abs(mt[j] - t_s) <= 2.0
        out |= near & (np.abs(fhr_bpm - mb[j]) <= tolerance_bpm)
    return out


class FhrStream:
    """Streaming FHR: feed audio chunks of any size, get the points each chunk completes.

    A point at t needs audio up to t + 1.875 s (the centred window); `flush()` completes
    the last points with truncated windows at the end of a recording.
    """

    def __init__(self, fs_hz: float) -> None:
        fs = float(fs_hz)
        if not np.isfinite(fs) or not MIN_FS_HZ <= fs <= MAX_FS_HZ:
            raise ValueError(f"sample rate must be {MIN_FS_HZ:.0f}-{MAX_FS_HZ:.0f} Hz, got {fs_hz}")
        self.fs_hz = fs
        self._hop = max(1, int(round(fs / ENVELOPE_RATE_HZ)))
        self._frame = 8 * self._hop  # ~40 ms Hann frames, ~25 Hz bins
        self._env_fs = fs / self._hop
        freqs = np.fft.rfftfreq(self._frame, 1.0 / fs)
        hi = min(FETAL_BAND_HZ[1], 0.45 * fs)
        self._fetal_bins = (freqs >= FETAL_BAND_HZ[0]) & (freqs <= hi)
        self._low_bins = (freqs >= LOW_BAND_HZ[0]) & (freqs < LOW_BAND_HZ[1])
        self._all_bins = freqs >= LOW_BAND_HZ[0]
        self._win = np.hanning(self._frame + 2)[1:-1]
        k = max(3, int(round(ENVELOPE_SMOOTH_S * self._env_fs)) | 1)
        self._smoother = np.hanning(k + 2)[1:-1] / np.hanning(k + 2)[1:-1].sum()
        self._half_frames = int(round(WINDOW_S / 2 * self._env_fs))
        self._min_frames = int(round(MIN_WINDOW_S * self._env_fs))
        self._ref_frames = int(round(REFERENCE_S * self._env_fs))
        lo, hi_bpm = FHR_RANGE_BPM
        self._lag_min = int(np.floor(60.0 / hi_bpm * self._env_fs))
        self._lag_max = int(np.ceil(60.0 / lo * self._env_fs))
        self._nfft = 1 << int(np.ceil(np.log2(2 * (2 * self._half_frames + 1))))
        # State.
        self._audio_tail = np.zeros(0)
        self._n_audio = 0  # samples fed so far
        self._env_start = 0  # frame index of _fetal[0]
        self._fetal = np.zeros(0)
        self._low = np.zeros(0)
        self._all = np.zeros(0)
        self._next_point = 1  # index k of the next point (t = k / 4)
        self._mhr_t = np.zeros(0)
        self._mhr_bpm = np.zeros(0)
        self._maternal_seen = False
        self._pending: list[FhrPoints] = []

    # -- maternal channel ------------------------------------------------------------
    def feed_maternal(self, t_s: np.ndarray, mhr_bpm: np.ndarray) -> None:
        """Maternal rate points known so far (same time base as the audio)."""
        t = np.asarray(t_s, dtype=float).ravel()
        b = np.asarray(mhr_bpm, dtype=float).ravel()
        if t.size != b.size:
            raise ValueError("maternal t_s and mhr_bpm must have equal length")
        self._maternal_seen = True
        self._mhr_t = np.concatenate([self._mhr_t, t])
        self._mhr_bpm = np.concatenate([self._mhr_bpm, b])
        keep = self._mhr_t >= self._n_audio / self.fs_hz - 2 * MATERNAL_WAIT_S - WINDOW_S
        if not keep.all():
            self._mhr_t, self._mhr_bpm = self._mhr_t[keep], self._mhr_bpm[keep]

    # -- audio ----------------------------------------------------------------------
    def feed(self, audio: np.ndarray) -> FhrPoints:
        """Points newly completed by this chunk (any size, including 0 or 1 sample)."""
        x = np.asarray(audio)
        if x.ndim != 1:
            raise ValueError("audio must be one-dimensional")
        x = x.astype(float)
        x[~np.isfinite(x)] = 0.0  # NaN/inf samples carry no signal; they give quality 0
        self._n_audio += x.size
        self._append_frames(x)
        new = self._compute_points(final=False)
        return self._release(new, final=False)

    def flush(self) -> FhrPoints:
        """Points up to the end of the audio fed so far, with truncated windows."""
        new = self._compute_points(final=True)
        return self._release(new, final=True)

    # -- internals ------------------------------------------------------------------
    def _append_frames(self, x: np.ndarray) -> None:
        buf = np.concatenate([self._audio_tail, x]) if self._audio_tail.size else x
        n_frames = 0 if buf.size < self._frame else (buf.size - self._frame) // self._hop + 1
        if n_frames:
            frames = np.lib.stride_tricks.sliding_window_view(buf, self._frame)[:: self._hop]
            frames = frames[:n_frames]
            spec = np.fft.rfft((frames - frames.mean(axis=1, keepdims=True)) * self._win, axis=1)
            power = spec.real**2 + spec.imag**2
            self._fetal = np.concatenate([self._fetal, np.sqrt(power[:, self._fetal_bins].sum(1))])
            self._low = np.concatenate([self._low, np.sqrt(power[:, self._low_bins].sum(1))])
            self._all = np.concatenate([self._all, np.sqrt(power[:, self._all_bins].sum(1))])
        self._audio_tail = buf[n_frames * self._hop :].copy()

    def _frame_range(self, k: int) -> tuple[int, int]:
        """Frames whose centres fall in the window of point k: [lo, hi)."""
        centre = k * POINT_S * self._env_fs - (self._frame / 2) / self._hop
        c = int(np.floor(centre))
        return c - self._half_frames, c + self._half_frames + 1

    def _compute_points(self, final: bool) -> FhrPoints:
        n_frames = self._env_start + self._fetal.size
        last_k = int(np.floor(self._n_audio / self.fs_hz / POINT_S + 1e-9))
        ks = []
        k = self._next_point
        while k <= last_k:
            lo, hi = self._frame_range(k)
            if hi > n_frames and not final:
                break
            ks.append(k)
            k += 1
        if not ks:
            return FhrPoints.empty()
        self._next_point = ks[-1] + 1
        t = np.array(ks, dtype=float) * POINT_S
        fhr = np.full(len(ks), np.nan)
        qual = np.zeros(len(ks))
        for i, kk in enumerate(ks):
            lo, hi = self._frame_range(kk)
            lo, hi = max(lo, 0), min(hi, n_frames)
            if hi - lo < self._min_frames:
                continue
            fhr[i], qual[i] = self._estimate(lo, hi)
        self._trim(ks[-1] + 1)
        return FhrPoints(t, fhr, qual, np.zeros(len(ks), dtype=bool))

    def _trim(self, next_k: int) -> None:
        lo, _ = self._frame_range(next_k)
        keep_from = max(0, lo - self._ref_frames)
        drop = keep_from - self._env_start
        if drop > 0:
            self._fetal, self._low, self._all = (
                self._fetal[drop:],
                self._low[drop:],
                self._all[drop:],
            )
            self._env_start += drop

    def _estimate(self, lo: int, hi: int) -> tuple[float, float]:
        s = self._env_start
        env = self._fetal[lo - s : hi - s]
        low = self._low[lo - s : hi - s]
        broad = self._all[lo - s : hi - s]
        ref_lo = max(lo - self._ref_frames, self._env_start)
        history = self._all[ref_lo - s : hi - s]
        background = np.percentile(history[::4], 75) if history.size else 0.0
        if background <= 0:
            return np.nan, 0.0
        # Movement: broadband frames far above the background, dilated by ~50 ms.
        art = broad > MOVEMENT_FACTOR * background
        if art.any():
            pad = int(round(0.05 * self._env_fs))
            art = np.convolve(art, np.ones(2 * pad + 1), mode="same") > 0
        frac = art.mean()
        if frac > MAX_ARTEFACT_FRACTION:
            return np.nan, 0.0
        env = env.copy()
        if art.any():
            env[art] = np.median(env[~art])
        # Smooth to ~20 Hz: beat-to-beat jitter of a few ms must not decorrelate the beats.
        env = np.convolve(env, self._smoother, mode="same")
        acf = _autocorr(env, self._nfft, int(COMB_SPAN * env.size) + 4)
        if acf is None:
            return np.nan, 0.0
        lag, peak = self._choose_lag(acf, env.size)
        if lag is None or peak < MIN_ACF:
            return np.nan, float(np.clip(peak, 0, 1)) * 0.5 if lag is not None else 0.0
        # Maternal vessel signature: a broad periodic pulse (long bursts).
        width = _half_width(acf, lag) / self._env_fs
        if width > MAX_PEAK_HALF_WIDTH_S:
            return np.nan, 0.0
        low_env = low.copy()
        if art.any():
            low_env[art] = np.median(low_env[~art])
        low_acf = _autocorr(low_env, self._nfft, self._lag_max + 2)
        bpm = 60.0 * self._env_fs / lag
        quality = float(np.clip((peak - 0.2) / 0.5, 0.0, 1.0) * (1.0 - frac))
        if low_acf is not None:
            li = int(round(lag))
            if li < low_acf.size and low_acf[li] > peak + 0.15:
                # The periodicity lives in the low (maternal) band, not the fetal band.
                quality *= 0.5
        return bpm, quality

    def _choose_lag(self, acf: np.ndarray, n_env: int) -> tuple[float | None, float]:
        """Beat period (lags) and its autocorrelation, guarded against octave errors.

        Start from the strongest peak L. If the true period is L/k (halving: the same beat
        seen k times), the autocorrelation is also high at the multiples of L/k that are
        not multiples of L (L/2, 3L/2, ...). If L/2 is only the systolic-diastolic spacing
        (the doubling trap), those lags are clearly weaker than L, 2L. So L/k is taken only
        when its extra multiples reach SUBMULTIPLE_RATIO of the multiples of L.
        """
        a = acf
        lmin, lmax = self._lag_min, self._lag_max
        seg = a[lmin - 1 : lmax + 2]
        inner = seg[1:-1]
        is_peak = (inner > seg[:-2]) & (inner >= seg[2:]) & (inner > 0)
        peaks = np.flatnonzero(is_peak) + lmin
        if peaks.size == 0:
            return None, 0.0
        span = min(int(COMB_SPAN * n_env), a.size - 3)
        a_near = maximum_filter1d(a, 5)
        best = int(peaks[np.argmax(a[peaks])])
        lag = _refine(a, best)
        on_l = a_near[np.rint(lag * np.arange(1, 1 + max(1, int(span // lag)))).astype(int)]
        for k in (3, 2):
            c = lag / k
            near = peaks[np.abs(peaks - c) <= max(2.0, 0.06 * c)]
            if near.size == 0:
                continue
            c = _refine(a, int(near[np.argmax(a[near])]))
            j = np.arange(1, 1 + max(1, int(span // c)))
            j = j[np.abs(j / k - np.round(j / k)) > 1e-9]  # not multiples of L
            extra = a_near[np.rint(c * j).astype(int)]
            need = (
                SUBMULTIPLE_RATIO if 60.0 * self._env_fs / c <= HIGH_RATE_BPM else HIGH_RATE_RATIO
            )
            if extra.mean() >= need * on_l.mean():
                return c, float(a[int(round(c))])
        return lag, float(a[best])

    def _release(self, new: FhrPoints, final: bool) -> FhrPoints:
        """Apply the maternal coincidence check, waiting for the maternal channel if needed."""
        if new.t_s.size:
            self._pending.append(new)
        if not self._pending:
            return FhrPoints.empty()
        pend = FhrPoints.concat(self._pending)
        if self._maternal_seen and not final:
            known = self._mhr_t.max() if self._mhr_t.size else -np.inf
            now = self._n_audio / self.fs_hz
            ready = (pend.t_s <= known) | (pend.t_s <= now - MATERNAL_WAIT_S - WINDOW_S / 2)
            n = int(np.argmin(ready)) if not ready.all() else ready.size
        else:
            n = pend.t_s.size
        out = FhrPoints(pend.t_s[:n], pend.fhr_bpm[:n], pend.quality[:n], pend.maternal[:n])
        rest = FhrPoints(pend.t_s[n:], pend.fhr_bpm[n:], pend.quality[n:], pend.maternal[n:])
        self._pending = [rest] if rest.t_s.size else []
        if out.t_s.size and self._mhr_t.size:
            mat = maternal_coincidence(out.t_s, out.fhr_bpm, self._mhr_t, self._mhr_bpm)
            fhr = np.where(mat, np.nan, out.fhr_bpm)
            out = FhrPoints(out.t_s, fhr, np.where(mat, 0.0, out.quality), mat)
        return out


def _autocorr(env: np.ndarray, nfft: int, n_lags: int) -> np.ndarray | None:
    """Unbiased autocorrelation normalised to 1 at lag 0, or None for a flat envelope."""
    x = env - env.mean()
    e0 = float(np.dot(x, x))
    if not np.isfinite(e0) or e0 <= 1e-20 * max(1.0, float(np.dot(env, env))):
        return None
    f = np.fft.rfft(x, nfft)
    r = np.fft.irfft(f.real**2 + f.imag**2, nfft)[:n_lags]
    n = x.size
    lags = np.arange(n_lags)
    denom = n - ACF_TAPER * lags
    return (r / denom) / (e0 / n)


def _refine(a: np.ndarray, i: int) -> float:
    """Parabolic interpolation of a peak position."""
    y0, y1, y2 = a[i - 1], a[i], a[i + 1]
    den = y0 - 2 * y1 + y2
    return i + (float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) if den < 0 else 0.0)


def _half_width(acf: np.ndarray, lag: float) -> float:
    """Half-width (in lags) of the autocorrelation peak at `lag` at half its height."""
    i = int(round(lag))
    top = acf[i]
    floor = min(acf[max(i - int(0.3 * i), 1) : i + int(0.3 * i) + 1].min(), 0.0)
    half = floor + 0.5 * (top - floor)
    left = i
    while left > 1 and acf[left] > half and i - left < i // 2:
        left -= 1
    right = i
    while right < acf.size - 1 and acf[right] > half and right - i < i // 2:
        right += 1
    return 0.5 * (right - left)
