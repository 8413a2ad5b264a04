"""Maternal heart rate from the PPG channel, at the CTG point rate of 4 Hz.

The maternal rate is what the FHR channel must not report as fetal (the classic CTG
failure), so it is measured independently on the mother's pulse: the PPG is band-passed
to the cardiac band and autocorrelated over the 8 s window ending 1.5 s after each point
(the window trails the point so that a point is ready 1.5 s after its time, before the FHR
point it screens, whose window ends 1.9 s after it; the maternal rate moves slowly, so the
2.5 s lag of the window centre costs well under 1 bpm); the beat period is the shortest lag
whose multiples all correlate (so a dicrotic notch, half a beat away, does not double the
rate). `MhrStream` is the implementation; `mhr_from_ppg` is the stream fed once and flushed.

A window with no pulse gives no rate: the normalised autocorrelation does not care how small
a signal is, and locks onto the band-pass filter's own decaying ringing (amplitudes down to
1e-60) once a PPG goes flat or rails. So a window whose raw PPG is stuck at the ADC's rail,
spans fewer than MIN_PULSE_RANGE_STEPS steps of its own quantisation, or whose band-passed
PPG is under MIN_PULSE_RMS_STEPS steps RMS is pulseless (`pulseless`). A window is measured
only if the pulse is present across it: every PULSE_SEGMENT_S part of it must pass that test
(`pulse_throughout`), so a window straddling the moment a finger comes back to the sensor (or
leaves it) gives no rate rather than one made of a second of pulse and seconds of flat line.
The beat detector applies the same test to the PPG around each beat, and finds beats only
where at least MIN_WINDOW_S of complete PPG before them has a rate (a sensor's noise gives
"beats" at random otherwise, and so do the first seconds of a PPG, whose beats nothing has yet
shown to be a pulse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import signal

from dsp.arrays import Floats

POINT_S = 0.25  # 4 Hz, same time base as the FHR points
WINDOW_S = 8.0  # several maternal beats even at 40 bpm
LOOKAHEAD_S = 1.5  # the window ends this long after the point: the emission lag
MIN_WINDOW_S = 5.0
MHR_RANGE_BPM = (40.0, 200.0)
CARDIAC_BAND_HZ = (0.6, 5.0)
MIN_ACF = 0.40
COMB_RATIO = 0.90
MIN_FS_HZ, MAX_FS_HZ = 10.0, 1000.0
# A pulse must stand clear of the PPG front end's quantisation and noise. The monitor sends
# its PPG as centred PCM16 (docs/protocol.md, stream 1): the ESP32's 12-bit ADC1 read with
# MicroPython's ADC.read_u16() (0-65535) minus 32768 (firmware/fetal_heart/hal_esp32.py), so
# one ADC step is 16 counts, and the ESP32 ADC's own noise is a few steps. The step is taken
# from the window itself (the smallest difference between two of its sample values: 16 on
# the device, 1 for integer counts, far less for a synthetic float PPG), so the test holds
# for any input scale. A window spanning fewer than 8 steps (a finger-off reading: the ADC's
# noise of a few steps either side), or whose band-passed PPG is under 2 steps RMS (a pulse
# of about 6 steps peak to peak: its upstroke cannot be timed to the few ms the lock check
# needs), has no pulse to measure. Judgement, from the ADC's step and noise; a real pulse
# spans tens to hundreds of steps.
MIN_PULSE_RANGE_STEPS = 8.0
MIN_PULSE_RMS_STEPS = 2.0
# The rails of the centred PCM16 PPG: a sample there is the ADC saturated (a detached or
# over-lit sensor), no pulse shape. A window with more than 5% of its samples on a rail (a
# pulse clipped for a part of every beat, or a sensor stuck) is not measured. Judgement.
PPG_RAILS_COUNTS = (-32768.0, 32767.0)
MAX_RAILED_FRACTION = 0.05
# The pulse must be present across a measured window, not in a part of it: each part of
# PULSE_SEGMENT_S (the window split into whole parts of at least this length) must hold a
# pulse by the test above. 2 s is longer than one beat at the slowest rate measured (40 bpm:
# 1.5 s), so a part of a pulsing PPG always holds an upstroke. Before this, as a finger came
# back after a pulseless spell the first rates came from windows of 1 s of pulse and 7 s of
# flat line and were 5-10 bpm off (146.9 for 138), and FHR points at her true rate passed the
# coincidence check against them (docs/fhr.md step 8). Judgement, from the slowest beat.
PULSE_SEGMENT_S = 2.0
# A part whose band-passed PPG is under 0.4 of the strongest part's (RMS) does not hold that
# window's pulse either: the sensor's noise, above the absolute floor (an ESP32 ADC off the
# finger: 8 steps RMS), before or after her pulse. A pulse changes its amplitude far less
# within 8 s (breathing: 5-15%), so only a window straddling the pulse's start or end, or a
# movement of the arm, fails this. Judgement; a quarter still let windows with 3.5 s of the
# ADC's noise beside a pulse of 50 steps be measured (tests/test_mhr.py's second shape).
MIN_PART_PULSE_RATIO = 0.4


@dataclass(frozen=True)
class MhrPoints:
    """4 Hz maternal rate points; t_s in s since the first PPG sample."""

    t_s: Floats
    mhr_bpm: Floats  # NaN = no estimate
    quality: Floats  # [0, 1]

    @staticmethod
    def concat(parts: list[MhrPoints]) -> MhrPoints:
        if not parts:
            z = np.zeros(0)
            return MhrPoints(z, z.copy(), z.copy())
        return MhrPoints(
            np.concatenate([p.t_s for p in parts]),
            np.concatenate([p.mhr_bpm for p in parts]),
            np.concatenate([p.quality for p in parts]),
        )


def _ppg_rate(fs_hz: float) -> float:
    fs = float(fs_hz)
    if not np.isfinite(fs) or not MIN_FS_HZ <= fs <= MAX_FS_HZ:
        raise ValueError(f"PPG sample rate must be {MIN_FS_HZ:.0f}-{MAX_FS_HZ:.0f} Hz")
    return fs


def pulseless(raw: Floats, band_passed: Floats) -> bool:
    """Whether a stretch of PPG (raw samples and the same band-passed) holds no measurable
    pulse: railed, flat, or within a few ADC steps (MIN_PULSE_RANGE_STEPS, MIN_PULSE_RMS_STEPS:
    see there). NaN samples are ignored here (the callers void windows holding them)."""
    x = raw[np.isfinite(raw)]
    if x.size < 2:
        return True
    if np.mean((x <= PPG_RAILS_COUNTS[0]) | (x >= PPG_RAILS_COUNTS[1])) > MAX_RAILED_FRACTION:
        return True
    levels = np.unique(x)
    if levels.size < 2:
        return True
    step = float(np.min(np.diff(levels)))
    if float(levels[-1] - levels[0]) < MIN_PULSE_RANGE_STEPS * step:
        return True
    y = band_passed[np.isfinite(band_passed)]
    return not (y.size and float(np.sqrt(np.mean(y * y))) >= MIN_PULSE_RMS_STEPS * step)


def pulse_throughout(raw: Floats, band_passed: Floats, fs_hz: float) -> bool:
    """Whether the pulse is present across a stretch of PPG: none of its parts of about
    PULSE_SEGMENT_S (whole parts, spread evenly) is `pulseless`, and none is under
    MIN_PART_PULSE_RATIO of the strongest part's band-passed RMS."""
    n = raw.size
    parts = max(1, int(n // max(1, int(round(PULSE_SEGMENT_S * fs_hz)))))
    edges = np.linspace(0, n, parts + 1).astype(int)
    rms = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if pulseless(raw[a:b], band_passed[a:b]):
            return False
        y = band_passed[a:b]
        y = y[np.isfinite(y)]
        rms.append(float(np.sqrt(np.mean(y * y))))
    return min(rms) >= MIN_PART_PULSE_RATIO * max(rms)


def _band_pass(band_hz: tuple[float, float], fs: float) -> Floats:
    """Second-order Butterworth band-pass (sos), its top kept below Nyquist."""
    hi = min(band_hz[1], 0.45 * fs)
    return signal.butter(2, [band_hz[0], hi], btype="bandpass", fs=fs, output="sos")


def mhr_from_ppg(ppg: ArrayLike, fs_hz: float) -> MhrPoints:
    """Maternal rate points for a whole PPG recording: one per 0.25 s up to its end."""
    stream = MhrStream(fs_hz)
    return MhrPoints.concat([stream.feed(np.asarray(ppg)), stream.flush()])


class MhrStream:
    """Streaming maternal rate: feed PPG chunks of any size, get newly completed points.

    A point at t is emitted once PPG up to t + LOOKAHEAD_S (1.5 s) has arrived.
    """

    def __init__(self, fs_hz: float) -> None:
        self.fs_hz = fs = _ppg_rate(fs_hz)
        self._sos = _band_pass(CARDIAC_BAND_HZ, fs)
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._ahead = int(round(LOOKAHEAD_S * fs))
        self._behind = int(round(WINDOW_S * fs)) - self._ahead
        self._min_len = int(round(MIN_WINDOW_S * fs))
        self._lag_min = int(np.floor(60.0 / MHR_RANGE_BPM[1] * fs))
        self._lag_max = int(np.ceil(60.0 / MHR_RANGE_BPM[0] * fs))
        self._buf = np.zeros(0)  # band-passed PPG (NaN where missing)
        self._raw = np.zeros(0)  # the PPG as fed, same samples
        self._start = 0  # sample index of _buf[0]
        self._n = 0
        self._next_k = 1

    def feed(self, ppg: ArrayLike) -> MhrPoints:
        """Points newly completed by this chunk (any size, including 0 or 1 sample)."""
        x = np.asarray(ppg, dtype=float)
        if x.ndim != 1:
            raise ValueError("ppg must be one-dimensional")
        bad = ~np.isfinite(x)
        x = np.where(bad, 0.0, x)
        if x.size:
            y, self._zi = signal.sosfilt(self._sos, x, zi=self._zi)
            y[bad] = np.nan  # missing samples invalidate the windows that contain them
            self._buf = np.concatenate([self._buf, y])
            self._raw = np.concatenate([self._raw, np.where(bad, np.nan, x)])
            self._n += x.size
        return self._points(final=False)

    def flush(self) -> MhrPoints:
        """Points up to the end of the PPG fed so far, with truncated windows."""
        return self._points(final=True)

    def _points(self, final: bool) -> MhrPoints:
        last_k = int(np.floor(self._n / self.fs_hz / POINT_S + 1e-9))
        ts, bpm, q = [], [], []
        k = self._next_k
        while k <= last_k:
            at = int(round(k * POINT_S * self.fs_hz))
            lo, hi = at - self._behind, at + self._ahead
            if hi > self._n and not final:
                break
            lo, hi = max(lo, 0), min(hi, self._n)
            b, quality = np.nan, 0.0
            if hi - lo >= self._min_len:
                a, z = lo - self._start, hi - self._start
                b, quality = self._estimate(self._buf[a:z], self._raw[a:z])
            ts.append(k * POINT_S)
            bpm.append(b)
            q.append(quality)
            k += 1
        self._next_k = k
        drop = max(0, int(round(k * POINT_S * self.fs_hz)) - self._behind - 1) - self._start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._raw = self._raw[drop:]
            self._start += drop
        return MhrPoints(np.array(ts, dtype=float), np.array(bpm, dtype=float), np.array(q))

    def _estimate(self, x: Floats, raw: Floats) -> tuple[float, float]:
        return _window_rate(x, raw, self.fs_hz, self._lag_min, self._lag_max)


def _window_rate(
    x: Floats, raw: Floats, fs_hz: float, lag_min: int, lag_max: int
) -> tuple[float, float]:
    """(rate, quality) of one window: x band-passed to the cardiac band, raw as fed; beat
    periods of lag_min-lag_max samples."""
    if not np.all(np.isfinite(x)) or not pulse_throughout(raw, x, fs_hz):
        return np.nan, 0.0
    x = x - x.mean()
    e0 = float(np.dot(x, x))
    if e0 <= 0:
        return np.nan, 0.0
    n = x.size
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(x, nfft)
    r = np.fft.irfft(f.real**2 + f.imag**2, nfft)[: n // 2 + 2]
    a = (r / np.maximum(n - np.arange(r.size), 1)) / (e0 / n)
    lmax = min(lag_max, a.size - 2)
    seg = a[lag_min - 1 : lmax + 2]
    inner = seg[1:-1]
    peaks = np.flatnonzero((inner > seg[:-2]) & (inner >= seg[2:]) & (inner > 0))
    peaks = peaks + lag_min
    if peaks.size == 0:
        return np.nan, 0.0
    y0, y1, y2 = a[peaks - 1], a[peaks], a[peaks + 1]
    den = y0 - 2 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        lags = peaks + np.clip(np.where(den < 0, 0.5 * (y0 - y2) / den, 0.0), -0.5, 0.5)
    span = a.size - 3
    comb = np.empty(peaks.size)
    for i, lag in enumerate(lags):
        idx = np.rint(lag * np.arange(1, 1 + int(span // lag))).astype(int)
        comb[i] = np.mean([a[max(j - 1, 0) : j + 2].max() for j in idx])
    if not comb.max() > 0:
        return np.nan, 0.0
    i = int(np.flatnonzero(comb >= COMB_RATIO * comb.max())[0])
    peak = float(a[peaks[i]])
    if peak < MIN_ACF:
        return np.nan, float(np.clip(peak, 0.0, 1.0)) * 0.5
    return 60.0 * fs_hz / float(lags[i]), float(np.clip((peak - 0.3) / 0.5, 0.0, 1.0))


# -- maternal beats ----------------------------------------------------------------------
# The FHR channel needs the mother's individual beats, not only her rate: a maternal vessel
# in the ultrasound beam pulses in lock-step with them (dsp/maternal_lock.py). The fiducial
# of a PPG beat is the peak of its slope sum function (SSF: the rises of the filtered PPG
# summed over 128 ms, Zong et al., Computers in Cardiology 2003;30:259-262), which marks
# the systolic upstroke, the most reproducible PPG timing point, and is robust to sample
# noise on the slope. Its delay after the heart beat (pulse arrival time) is constant within
# a recording apart from a few ms of jitter, which is all the lock check needs.
BEAT_BAND_HZ = (0.5, 3.0)  # the upstroke's fundamental; a merged dicrotic wave is cut
SSF_WINDOW_S = 0.128  # Zong et al. 2003
BEAT_STEP_S = 1.0  # the detector advances in fixed steps: any chunking gives the same beats
BEAT_CONTEXT_S = 5.0  # the threshold looks at this much PPG before each step
MIN_BEAT_INTERVAL_S = 60.0 / MHR_RANGE_BPM[1]  # 0.3 s: refractory period
# An upstroke is at least half the steepest slopes (99th centile) of the last 5 s: a dicrotic
# wave (about a third of the systolic slope) or a breathing swing is not a beat.
BEAT_THRESHOLD = 0.5
# Two beats are at least 0.6 beat periods apart: RR shortens by at most ~40% from one beat to
# the next outside ectopy (judgement); the dicrotic wave at ~0.3-0.5 of a beat is excluded.
BEAT_GAP_FRACTION = 0.6
# Beats come only from a PPG that pulses: the threshold above is relative, so the noise of a
# sensor off the finger (a few ADC steps and more: its band-passed level can exceed the
# `pulseless` floor) gives "beats" at random, which would pass for her rhythm in the checks
# of dsp/maternal_coincidence.py. A step gives beats only when the PPG ending LOOKAHEAD_S
# (1.5 s) after it, up to WINDOW_S (8 s) of it and at least MIN_WINDOW_S (5 s) since the last
# missing sample, has a maternal rate (`MhrStream`'s own test, on the window a rate point
# there would have: a pulse across it, periodic, MIN_ACF). Measured: noise of 1-15 ADC steps
# RMS gave no rate in any window, and before this 24-136 beats in 2 minutes from 5-15 steps.
# A stretch too short to tell (the first seconds of a PPG, or after samples were lost) gives
# no beats: before, its beats were taken as hers unproven, and the rates of the first ones,
# off by up to 10 bpm (147.4 for 138), let FHR points at 1.0-1.25 s pass the coincidence
# check. The window reaches past the step: the last beats before an arm movement in the PPG
# (rates 132.5 and 147.0 for 138) let 7 FHR points at her rate pass before it did.


class MaternalBeatStream:
    """Streaming maternal beat detector: feed PPG chunks, get the beat fiducials (s since
    the first sample) that each chunk makes final. Missing (NaN) samples, and a PPG with no
    pulse (`pulseless`: railed, flat or noise only), give no beats."""

    def __init__(self, fs_hz: float) -> None:
        self.fs_hz = fs = _ppg_rate(fs_hz)
        self._sos = _band_pass(BEAT_BAND_HZ, fs)
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._step = max(1, int(round(BEAT_STEP_S * fs)))
        self._context = int(round(BEAT_CONTEXT_S * fs))
        self._refractory = int(np.ceil(MIN_BEAT_INTERVAL_S * fs))
        self._slope = np.zeros(0)  # SSF of the filtered PPG, from sample _start
        self._deriv = np.zeros(0)  # its first derivative, from sample _start
        self._raw = np.zeros(0)  # the PPG as fed, from sample _start (`pulseless`)
        self._filtered = np.zeros(0)  # the filtered PPG, from sample _start
        # The PPG in the cardiac band, from sample _start, for its periodicity (`_pulses`).
        self._cardiac_sos = _band_pass(CARDIAC_BAND_HZ, fs)
        self._cardiac_zi = np.zeros((self._cardiac_sos.shape[0], 2))
        self._cardiac = np.zeros(0)
        self._window = int(round(WINDOW_S * fs))
        self._ahead = int(round(LOOKAHEAD_S * fs))
        self._min_window = int(round(MIN_WINDOW_S * fs))
        self._lag_min = int(np.floor(60.0 / MHR_RANGE_BPM[1] * fs))
        self._lag_max = int(np.ceil(60.0 / MHR_RANGE_BPM[0] * fs))
        self._start = 0
        self._n = 0
        self._done = 0  # samples up to which beats have been decided
        self._last_beat = -np.inf  # sample position of the last beat emitted
        self._last_y = 0.0
        self._ssf_n = max(2, int(round(SSF_WINDOW_S * fs)))
        self._rises = np.zeros(self._ssf_n - 1)  # the last rises, for the next SSF values

    def feed(self, ppg: ArrayLike) -> Floats:
        x = np.asarray(ppg, dtype=float)
        if x.ndim != 1:
            raise ValueError("ppg must be one-dimensional")
        if x.size:
            bad = ~np.isfinite(x)
            y, self._zi = signal.sosfilt(self._sos, np.where(bad, 0.0, x), zi=self._zi)
            y[bad] = np.nan
            dy = np.diff(y, prepend=self._last_y if self._n else y[0])
            d = np.maximum(dy, 0.0)
            self._deriv = np.concatenate([self._deriv, dy])
            self._raw = np.concatenate([self._raw, np.where(bad, np.nan, x)])
            self._filtered = np.concatenate([self._filtered, y])
            c, self._cardiac_zi = signal.sosfilt(
                self._cardiac_sos, np.where(bad, 0.0, x), zi=self._cardiac_zi
            )
            c[bad] = np.nan
            self._cardiac = np.concatenate([self._cardiac, c])
            self._last_y = y[-1]
            r = np.concatenate([self._rises, d])
            self._rises = r[-(self._ssf_n - 1) :]
            ssf = np.convolve(r, np.ones(self._ssf_n), "valid")
            self._slope = np.concatenate([self._slope, ssf])
            self._n += x.size
        return self._beats(final=False)

    def flush(self) -> Floats:
        return self._beats(final=True)

    def _beats(self, final: bool) -> Floats:
        out: list[float] = []
        # A step's beats are final once the PPG a refractory period, and LOOKAHEAD_S for its
        # pulse test, beyond it has arrived.
        beyond = max(self._refractory + 1, self._ahead)
        while self._done + self._step + beyond <= self._n or (final and self._done < self._n):
            end = min(self._done + self._step, self._n)
            out.extend(self._detect(self._done, end))
            self._done = end
        keep = max(self._context + self._refractory + 2, self._window)
        drop = self._done - keep - self._start
        if drop > 0:
            self._slope = self._slope[drop:]
            self._deriv = self._deriv[drop:]
            self._raw = self._raw[drop:]
            self._filtered = self._filtered[drop:]
            self._cardiac = self._cardiac[drop:]
            self._start += drop
        return np.array(out) / self.fs_hz

    def _detect(self, a: int, b: int) -> list[float]:
        """Beats with fiducials in samples [a, b)."""
        s = self._start
        ctx = self._slope[max(a - self._context, s) - s : b - s]
        ok = ctx[np.isfinite(ctx)]
        if ok.size < self._refractory * 2:
            return []
        thr = BEAT_THRESHOLD * float(np.percentile(ok, 99))
        if not thr > 0:
            return []
        gap = max(self._refractory, int(BEAT_GAP_FRACTION * self._period(ok)))
        lo = max(a - self._refractory, s + 1)
        hi = min(b + self._refractory, self._start + self._slope.size - 1)
        # No pulse around the step (a railed, flat or noise-only PPG): the threshold above is
        # relative, and would find beats in the filter's ringing or the ADC's noise.
        if pulseless(self._raw[lo - s : hi - s], self._filtered[lo - s : hi - s]):
            return []
        if not self._pulses(min(b + self._ahead, self._n)):
            return []
        seg = self._slope[lo - s : hi - s]
        seg = np.where(np.isfinite(seg), seg, -np.inf)
        peaks, _ = signal.find_peaks(seg, height=thr, distance=gap)
        beats = []
        for pk in peaks + lo:
            if not a <= pk < b or pk - self._last_beat < gap:
                continue
            y0, y1, y2 = self._slope[pk - 1 - s : pk + 2 - s]
            den = y0 - 2 * y1 + y2
            frac = 0.5 * (y0 - y2) / den if den < 0 and np.isfinite(den) else 0.0
            beats.append(pk + min(max(frac, -0.5), 0.5))
            self._last_beat = float(pk)
        return beats

    def _pulses(self, b: int) -> bool:
        """Whether the PPG pulses up to sample b: the WINDOW_S ending there, from its last
        missing sample on, is at least MIN_WINDOW_S long and has a maternal rate."""
        s = self._start
        lo = max(b - self._window, s)
        c, raw = self._cardiac[lo - s : b - s], self._raw[lo - s : b - s]
        gone = np.flatnonzero(~np.isfinite(raw))
        if gone.size:
            c, raw = c[gone[-1] + 1 :], raw[gone[-1] + 1 :]
        if c.size < self._min_window:
            return False
        bpm, _ = _window_rate(c, raw, self.fs_hz, self._lag_min, self._lag_max)
        return bool(np.isfinite(bpm))

    def _period(self, ssf: Floats) -> float:
        """Beat period (samples) of the recent SSF: the shortest lag whose autocorrelation is
        near the highest, so a dicrotic wave half a beat away does not halve it."""
        x = ssf - ssf.mean()
        n = x.size
        nfft = 1 << int(np.ceil(np.log2(2 * n)))
        f = np.fft.rfft(x, nfft)
        r = np.fft.irfft(f.real**2 + f.imag**2, nfft)[: n // 2]
        lo = self._refractory
        hi = min(int(np.ceil(60.0 / MHR_RANGE_BPM[0] * self.fs_hz)), r.size - 1)
        seg = r[lo : hi + 1] if hi > lo else np.zeros(0)
        if not seg.size or not seg.max() > 0:
            return 0.0
        return float(lo + np.flatnonzero(seg >= 0.9 * seg.max())[0])


def maternal_beats_from_ppg(ppg: ArrayLike, fs_hz: float) -> Floats:
    """Beat fiducials (s since the first sample) of a whole PPG recording."""
    stream = MaternalBeatStream(fs_hz)
    return np.concatenate([stream.feed(np.asarray(ppg)), stream.flush()])
