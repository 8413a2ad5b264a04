"""Synthetic continuous-wave Doppler audio from a fetal heart rate trace.

A ~2 MHz CW probe hears moving tissue and blood as Doppler-shifted noise: shift
f_d = 2 f0 v cos(theta) / c, so at f0 = 2 MHz a heart wall moving at 2-8 cm/s gives
~50-200 Hz and valve leaflets at 20-40 cm/s give ~500-1000 Hz. Each fetal beat therefore
produces several short bursts of band-limited noise (atrial and ventricular wall motion,
AV and semilunar valve closure and opening) whose timing follows the systolic time
intervals, with beat-to-beat jitter in timing and strength. The probe usually also hears
maternal arterial blood flow (uterine and placental-bed arteries): a continuous noise whose
spectrum reaches up to the Doppler shift of the fastest blood, hundreds of Hz in diastole
and up to ~2 kHz at the systolic peak, so its pitch (not so much its loudness) pulses at
the maternal rate; with it a weaker low-shift thump of the vessel wall. Fetal movement
gives loud broadband bursts lasting seconds, and probe displacement fades the fetal signal
(sometimes onto a maternal vessel). White noise is added at a chosen SNR, defined as fetal
Doppler power over noise power across the full audio band, measured where the fetal
signal is not faded.

The synthesizer is not tuned to any estimator: the event physiology is fixed by the
numbers below (typical fetal systolic time intervals, e.g. ejection time ~0.17-0.19 s,
isovolumic times ~30-40 ms).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import signal

from simulators.looping import render_looped

if TYPE_CHECKING:
    from simulators.maternal import MaternalBeats

FS_TRACE_HZ = 4.0  # CTG standard point rate

# Doppler equation f_d = 2 f0 v cos(theta) / c (e.g. Hoskins, Martin & Thrush, Diagnostic
# Ultrasound: Physics and Equipment, 3rd ed. 2019, ch. 10), c = 1540 m/s in soft tissue:
# at f0 = 2 MHz, 1 cm/s along the beam gives ~26 Hz.
PROBE_HZ = 2.0e6
SOUND_SPEED_M_S = 1540.0
HZ_PER_M_S = 2.0 * PROBE_HZ / SOUND_SPEED_M_S
# Doppler-shift bands of the sources (Hz).
_BANDS_HZ = {
    # Fetal myocardial tissue velocities are ~3-10 cm/s peak (fetal tissue Doppler, e.g.
    # Comas et al., Ultrasound Obstet Gynecol 2011;37:57-64): ~60-250 Hz.
    "wall": (60.0, 250.0),
    # Valve leaflets move faster (~10-35 cm/s; less well documented): ~200-900 Hz.
    "valve": (200.0, 900.0),
    # Maternal arterial wall and surrounding tissue: slow (mm/s to ~cm/s), low shifts.
    "maternal": (25.0, 150.0),
    "movement": (15.0, 1200.0),  # fetal body and limb movement, broadband
}
# Maternal arterial flow heard by the probe (uterine and placental-bed arteries, third
# trimester). Peak systolic velocity of the order of 40-100 cm/s (Joern et al., Ultrasound
# Med Biol 1996;22:823-835; Bower et al., Ultrasound Obstet Gynecol 1992;2:261-265).
# End-diastolic velocity is more than half the systolic in normal pregnancy (Trudinger et
# al., Br J Obstet Gynaecol 1985;92:39-45, with a CW Doppler); lower ratios (higher
# resistance: complicated pregnancy, iliac branches) are included.
_ARTERY_PSV_M_S = (0.4, 1.0)
_ARTERY_DIASTOLIC_RATIO = (0.3, 0.7)
_ARTERY_ANGLE_DEG = (20.0, 70.0)  # beam-to-vessel angle: unknown, wide range
_SYSTOLE_PEAK_S = 0.08  # flow peaks ~80 ms after the pulse arrives, decays over ~0.2 s
_PULSE_ARRIVAL_S = 0.27  # R wave to pulse arrival at the pelvic arteries (approximate)
# With shared MaternalBeats the arrival at the uterine and iliac arteries is drawn per
# recording: a pre-ejection period of ~50-70 ms (Kortekaas et al., PLoS One
# 2018;13:e0205208) plus the aorto-iliac transit (~40-50 cm at a few m/s in pregnancy):
# judgement, a wide range. Its respiratory swing (s, peak) has a phase of its own, so its
# lag behind the finger PPG wanders slowly by a few ms (judgement).
UTERINE_ARRIVAL_RANGE_S = (0.15, 0.30)
UTERINE_RESP_MOD_RANGE_S = (0.001, 0.005)
# Maternal models: which maternal sources the probe hears (see synthesize_doppler).
MATERNAL_MODELS = ("flow_thump", "wall_inband", "flow", "thump", "mixture", "random")
_RANDOM_MODELS = ("wall_inband", "flow", "thump", "mixture")
_MIXTURE_PARTS = ("wall_inband", "flow", "thump")
_MIXTURE_REL_DB = (-10.0, 0.0)  # level of each part of a mixture (judgement)
# In-band maternal pulsation: the pulsating wall of a large vessel (aorta, iliac) and the
# tissue it moves, and slow flow in small myometrial arteries, at ~4-10 cm/s along the
# beam: ~100-250 Hz at 2 MHz, in the fetal band, as pulses about as long as a fetal wall
# event. Not well documented: judgement, wide ranges. The centre and width of the band
# (Hz), the pulse length (s), and an optional rebound (the dicrotic wave) a fraction of the
# beat interval later, weaker.
_INBAND_CENTRE_HZ = (110.0, 220.0)
_INBAND_WIDTH_HZ = (50.0, 120.0)
_INBAND_PULSE_S = (0.10, 0.15)
_INBAND_REBOUND_P = 0.4
_INBAND_REBOUND_FRAC_RR = (0.35, 0.45)
_INBAND_REBOUND_REL = (0.3, 0.6)
_INBAND_REBOUND_LENGTH = 0.8  # of the main pulse's length
_MATERNAL_BEAT_LOG_SD = 0.15  # beat-to-beat spread of a maternal pulse's strength
_PULSE_LENGTH_SPREAD = (0.9, 1.1)  # beat-to-beat spread of an in-band pulse's length
# Breathing moves the abdomen, the uterus and the probe against the vessel: its signal
# swells and fades by up to this fraction with each breath (judgement).
_MATERNAL_RESP_AM = (0.0, 0.3)
_FLOW_BAND_STEP_HZ = 100.0  # the flow spectrum is built from sub-bands this wide
_FLOW_MIN_HZ = 25.0
_WALL_DB = (-10.0, -3.0)  # vessel-wall thump relative to the flow (after the probe's
# wall filter; not well documented, so a wide range)
# Fetal events per beat: (name, class, offset from AV closure in s, plus this many ejection
# times, duration in s). Isovolumic contraction ~35 ms, relaxation ~40 ms; the ejection
# time (~0.18 s at 140 bpm) scales with the square root of the beat interval.
_FETAL_EVENTS = (
    ("atrial", "wall", -0.09, 0, 0.07),
    ("av_close", "valve", 0.0, 0, 0.025),
    ("sl_open", "valve", 0.035, 0, 0.02),
    ("ventricle", "wall", 0.06, 0, 0.11),
    ("sl_close", "valve", 0.035, 1, 0.02),
    ("av_open", "valve", 0.075, 1, 0.025),
    ("filling", "wall", 0.095, 1, 0.08),
)
_TEMPLATE_S = 8.0


@dataclass(frozen=True)
class DopplerScene:
    """A synthesized recording and its ground truth at 4 Hz (t_s = 0.25, 0.50, ...)."""

    fs_hz: int
    audio: np.ndarray  # float, fetal RMS ~ 1 where not faded
    t_s: np.ndarray
    fhr_bpm: np.ndarray  # the driving trace
    fetal_gain: np.ndarray  # 0..1: fetal signal strength relative to unfaded
    movement: np.ndarray  # bool: a movement burst overlaps the point
    mhr_bpm: np.ndarray | None
    fetal_absent: np.ndarray | None = None  # bool: the fetal heart is out of the beam
    maternal_model: str | None = None  # the maternal sources heard, e.g. "mixture:flow+thump"
    maternal_arrival_s: float | None = None  # beat to pulse arrival at the probe's vessels


def beat_times(rate_bpm_4hz: np.ndarray, rng: np.random.Generator, jitter_s: float) -> np.ndarray:
    """Beat instants (s) whose instantaneous rate follows a 4 Hz rate trace."""
    rate = np.asarray(rate_bpm_4hz, dtype=float)
    dt = 0.01
    duration = rate.size / FS_TRACE_HZ
    t = np.arange(0.0, duration, dt)
    r = np.interp(t, (np.arange(rate.size) + 1) / FS_TRACE_HZ, rate)
    phase = np.cumsum(r / 60.0 * dt) + rng.uniform(0, 1)
    k = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    # Interpolate the crossing instant within the step.
    frac = (np.floor(phase[k]) - phase[k - 1]) / (phase[k] - phase[k - 1])
    beats = t[k - 1] + frac * dt
    beats = beats + rng.normal(0.0, jitter_s, beats.size)
    return np.sort(beats)


class _EventRenderer:
    """Bursts of band-limited noise placed at event times, rendered on demand."""

    def __init__(self, fs_hz: int, rng: np.random.Generator) -> None:
        self.fs = fs_hz
        n = int(_TEMPLATE_S * fs_hz)
        self.bank: dict[str, np.ndarray] = {}
        for cls, (lo, hi) in _BANDS_HZ.items():
            hi = min(hi, 0.45 * fs_hz)
            sos = signal.butter(4, [lo, hi], btype="bandpass", fs=fs_hz, output="sos")
            x = rng.standard_normal(n + 2000)
            if cls == "movement":  # body movement: energy concentrated at low shifts
                x = np.cumsum(x) * 0.05 + x
            y = signal.sosfilt(sos, x)[2000:]
            self.bank[cls] = y / np.std(y)
        self.start = np.zeros(0, dtype=np.int64)
        self.length = np.zeros(0, dtype=np.int64)
        self.cls: list[str] = []
        self.amp = np.zeros(0)
        self.offset = np.zeros(0, dtype=np.int64)
        self.shape: list[str] = []

    def add_band(self, cls: str, lo: float, hi: float, rng: np.random.Generator) -> None:
        """A further class of bursts: noise band-limited to lo-hi Hz."""
        n = int(_TEMPLATE_S * self.fs)
        sos = signal.butter(4, [lo, min(hi, 0.45 * self.fs)], "bandpass", fs=self.fs, output="sos")
        y = signal.sosfilt(sos, rng.standard_normal(n + 2000))[2000:]
        self.bank[cls] = y / np.std(y)

    def set_events(self, start, length, cls, amp, offset, shape) -> None:
        order = np.argsort(start, kind="stable")
        self.start = np.asarray(start, dtype=np.int64)[order]
        self.length = np.asarray(length, dtype=np.int64)[order]
        self.cls = [cls[i] for i in order]
        self.amp = np.asarray(amp, dtype=float)[order]
        self.offset = np.asarray(offset, dtype=np.int64)[order]
        self.shape = [shape[i] for i in order]
        self.max_len = int(self.length.max()) if self.length.size else 0

    def render(self, n0: int, n1: int, classes: set[str] | None = None) -> np.ndarray:
        out = np.zeros(n1 - n0)
        lo = np.searchsorted(self.start, n0 - self.max_len)
        hi = np.searchsorted(self.start, n1)
        for i in range(lo, hi):
            cls = self.cls[i]
            if classes is not None and cls not in classes:
                continue
            s, L = int(self.start[i]), int(self.length[i])
            if s + L <= n0 or L < 2:
                continue
            burst = self.bank[cls][self.offset[i] : self.offset[i] + L] * _window(self.shape[i], L)
            a, b = max(s, n0), min(s + L, n1)
            out[a - n0 : b - n0] += self.amp[i] * burst[a - s : b - s]
        return out


class _ArterialFlow:
    """Maternal arterial flow: noise with a flat spectrum from ~0 up to the Doppler shift of
    the fastest blood (parabolic flow insonated whole has a near-uniform velocity
    distribution), whose upper edge follows the arterial velocity waveform. The power of
    the blood signal is set by the volume of blood in the beam, not by its speed, so the
    total power is constant over the cycle and only its distribution over frequency moves:
    in systole the spectrum spreads up to the peak shift."""

    def __init__(self, fs_hz: int, rng: np.random.Generator, arrivals: np.ndarray) -> None:
        self.fs = fs_hz
        cos = np.cos(np.radians(rng.uniform(*_ARTERY_ANGLE_DEG)))
        self.f_peak = rng.uniform(*_ARTERY_PSV_M_S) * cos * HZ_PER_M_S
        self.diastolic = rng.uniform(*_ARTERY_DIASTOLIC_RATIO)
        self.beats = np.sort(arrivals)  # pulse arrivals at the vessel
        top = min(max(self.f_peak, 2 * _FLOW_BAND_STEP_HZ), 0.45 * fs_hz)
        self.edges = np.arange(_FLOW_MIN_HZ, top + _FLOW_BAND_STEP_HZ, _FLOW_BAND_STEP_HZ)
        n = int(_TEMPLATE_S * fs_hz)
        bank = []
        for lo, hi in zip(self.edges[:-1], self.edges[1:], strict=True):
            sos = signal.butter(
                4, [lo, min(hi, 0.49 * fs_hz)], btype="bandpass", fs=fs_hz, output="sos"
            )
            y = signal.sosfilt(sos, rng.standard_normal(n + 2000))[2000:]
            bank.append(y / np.std(y))
        self.bank = np.array(bank)
        self.gain_4hz = np.ones(1)
        self.scale = 1.0

    def max_shift_hz(self, t: np.ndarray) -> np.ndarray:
        """Doppler shift of the fastest blood at times t (s)."""
        pulse = np.zeros(t.size)
        if t.size == 0:
            return pulse
        lo = np.searchsorted(self.beats, t[0] - 1.0)
        hi = np.searchsorted(self.beats, t[-1])
        for b in self.beats[lo:hi]:
            a, z = np.searchsorted(t, [b, b + 1.0])
            x = (t[a:z] - b) / _SYSTOLE_PEAK_S
            pulse[a:z] = np.maximum(pulse[a:z], x * x * np.exp(2.0 * (1.0 - x)))
        return self.f_peak * (self.diastolic + (1.0 - self.diastolic) * pulse)

    def render(self, n0: int, n1: int) -> np.ndarray:
        t = np.arange(n0, n1) / self.fs
        fmax = np.maximum(self.max_shift_hz(t), self.edges[1])
        idx = np.arange(n0, n1) % self.bank.shape[1]
        out = np.zeros(n1 - n0)
        for k in range(self.edges.size - 1):
            share = np.clip(fmax - self.edges[k], 0.0, _FLOW_BAND_STEP_HZ) / fmax
            if share.any():
                out += np.sqrt(share) * self.bank[k, idx]
        g = np.interp(t, (np.arange(self.gain_4hz.size) + 1) / FS_TRACE_HZ, self.gain_4hz)
        return self.scale * g * out


def _window(shape: str, n: int) -> np.ndarray:
    if shape == "pulse":  # vessel pulse: fast systolic rise, slow diastolic decay
        x = np.linspace(0.0, 1.0, n)
        w = (x / 0.2) ** 2 * np.exp(2.0 * (1.0 - x / 0.2))
        w[x > 0.2] = np.exp(-(x[x > 0.2] - 0.2) / 0.25)
        return w * np.hanning(n) ** 0.25
    if shape == "tukey":
        return signal.windows.tukey(n, 0.3)
    return np.hanning(n)


def _slow_gain(n_points: int, rng: np.random.Generator, sd_db: float, tau_s: float) -> np.ndarray:
    """Slowly wandering gain (probe angle, breathing) as a 4 Hz array."""
    x = rng.standard_normal(n_points + 400)
    a = np.exp(-1.0 / (tau_s * FS_TRACE_HZ))
    y = signal.lfilter([np.sqrt(1 - a * a)], [1, -a], x)[400:]
    return 10 ** (sd_db * y / 20.0)


def _fades(n_points: int, rng: np.random.Generator, per_10min: float) -> np.ndarray:
    """Probe-displacement fades: gain 1, ramping to ~0 for 5-60 s."""
    gain = np.ones(n_points)
    n_fades = rng.poisson(per_10min * n_points / 2400.0)
    for _ in range(n_fades):
        dur = rng.uniform(5.0, 60.0) * FS_TRACE_HZ
        ramp = rng.uniform(1.0, 3.0) * FS_TRACE_HZ
        c = rng.uniform(0, n_points)
        depth = rng.uniform(0.0, 0.05)
        idx = np.arange(n_points)
        d = np.maximum(np.abs(idx - c) - dur / 2, 0.0) / ramp  # 0 inside, rises over the ramp
        g = depth + (1 - depth) * np.clip(d, 0.0, 1.0)
        gain = np.minimum(gain, g)
    return gain


def absent_mask(intervals: Sequence[tuple[float, float]], t_s: np.ndarray) -> np.ndarray:
    """True at the times t_s that fall in one of the (t0_s, t1_s) intervals."""
    t = np.asarray(t_s, dtype=float)
    out = np.zeros(t.shape, dtype=bool)
    for iv in intervals:
        try:
            t0, t1 = (float(v) for v in iv)
        except (TypeError, ValueError):
            raise ValueError("fetal_absent must be a list of (t0_s, t1_s) pairs") from None
        if not (np.isfinite(t0) and np.isfinite(t1) and 0.0 <= t0 < t1):
            raise ValueError("fetal_absent intervals must have finite 0 <= t0_s < t1_s")
        out |= (t >= t0) & (t <= t1)
    return out


class _Scene:
    """Event list of a whole trace; renders any sample range."""

    def __init__(
        self,
        fhr_bpm_4hz: np.ndarray,
        mhr_bpm_4hz: np.ndarray | None,
        fs_hz: int,
        seed: int,
        fades_per_10min: float,
        movements_per_10min: float,
        maternal_db: float,
        maternal_model: str = "flow_thump",
        beats: MaternalBeats | None = None,
        fetal_absent: Sequence[tuple[float, float]] = (),
        absent_maternal_db: float = 0.0,
        maternal_arrival_s: float | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        fhr = np.asarray(fhr_bpm_4hz, dtype=float)
        if fhr.ndim != 1 or fhr.size < 8 or not np.all(np.isfinite(fhr)):
            raise ValueError("fhr_bpm_4hz must be a finite 1-D trace of at least 2 s")
        if not 1000 <= fs_hz <= 16000:
            raise ValueError("fs_hz must be 1000-16000")
        if maternal_model not in MATERNAL_MODELS:
            raise ValueError(f"maternal_model must be one of {', '.join(MATERNAL_MODELS)}")
        if not (np.isfinite(maternal_db) and np.isfinite(absent_maternal_db)):
            raise ValueError("maternal_db and absent_maternal_db must be finite")
        if beats is not None and beats.duration_s < fhr.size / FS_TRACE_HZ - 1e-9:
            raise ValueError("beats must cover the whole FHR trace")
        if maternal_arrival_s is not None and not 0.0 <= maternal_arrival_s <= 1.0:
            raise ValueError("maternal_arrival_s must be 0-1 s")
        self.fs = int(fs_hz)
        self.n_points = fhr.size
        self.n_samples = int(round(fhr.size / FS_TRACE_HZ * fs_hz))
        self.fhr = fhr
        t4 = (np.arange(self.n_points) + 1) / FS_TRACE_HZ
        self.absent = absent_mask(fetal_absent, t4)
        if mhr_bpm_4hz is not None:
            self.mhr = np.asarray(mhr_bpm_4hz, dtype=float)
        elif beats is not None:
            r = beats.rate_bpm_4hz
            self.mhr = r[np.minimum(np.arange(self.n_points), r.size - 1)].copy()
        else:
            self.mhr = None
        self.renderer = _EventRenderer(self.fs, rng)
        self.fetal_gain = _fades(self.n_points, rng, fades_per_10min)
        probe_gain = _slow_gain(self.n_points, rng, 2.0, 20.0)
        maternal_gain = np.where(self.fetal_gain < 0.5, rng.uniform(1.0, 3.0), 1.0) * _slow_gain(
            self.n_points, rng, 2.0, 30.0
        )
        starts, lens, classes, amps, offs, shapes = [], [], [], [], [], []
        n_bank = int(_TEMPLATE_S * fs_hz)

        def add(
            t: np.ndarray,
            dur: np.ndarray,
            cls: str,
            amp: np.ndarray,
            shape: str,
            r: np.random.Generator = rng,
        ) -> None:
            L = np.maximum((dur * fs_hz).astype(np.int64), 2)
            starts.extend((t * fs_hz).astype(np.int64) - L // 2)
            lens.extend(L)
            classes.extend([cls] * t.size)
            amps.extend(amp)
            offs.extend(r.integers(0, n_bank - L.max() - 1, t.size))
            shapes.extend([shape] * t.size)

        def at(trace: np.ndarray, t: np.ndarray) -> np.ndarray:
            idx = np.clip(np.round(t * FS_TRACE_HZ).astype(int) - 1, 0, self.n_points - 1)
            return trace[idx]

        fetal_beats = beat_times(fhr, rng, 0.002)
        rr = 60.0 / at(fhr, fetal_beats)
        ejection = 0.18 * np.sqrt(rr / 0.43)
        # Which events this probe position hears, and how strongly (per recording).
        vis = rng.lognormal(0.0, 0.5, len(_FETAL_EVENTS)) * (rng.uniform(size=7) > 0.25)
        if np.count_nonzero(vis) < 2:
            vis[[1, 3]] = 1.0
        for (_, cls, off, n_ej, dur), v in zip(_FETAL_EVENTS, vis, strict=True):
            if v == 0:
                continue
            off_t = off + n_ej * ejection
            t = fetal_beats + off_t + rng.normal(0, 0.004, fetal_beats.size)
            keep = (t > 0) & (t < self.n_samples / fs_hz)
            t = t[keep]
            amp = v * at(probe_gain * self.fetal_gain, t) * rng.lognormal(0, 0.25, t.size)
            d = dur * rng.uniform(0.8, 1.2, t.size)
            add(t, d, cls, amp, "hann")
        self.fetal_classes = {"wall", "valve"}
        self.maternal_classes = {"maternal", "maternal_wall"}
        self.flow: _ArterialFlow | None = None
        self.model: str | None = None
        self.arrival_s: float | None = None
        # Relative level (linear) of each maternal part, when the parts are levelled.
        rel: dict[str, float] = {}
        end_s = self.n_samples / fs_hz
        if (self.mhr is not None or beats is not None) and maternal_db > -90:
            if beats is None and maternal_model == "flow_thump":
                # Today's maternal model from beats of its own (the draws of the main stream
                # are kept, so existing seeds give the same recordings).
                self.model = "flow_thump"
                self.arrival_s = _PULSE_ARRIVAL_S
                mbeats = beat_times(self.mhr, rng, 0.01)
                self.flow = _ArterialFlow(self.fs, rng, mbeats + _PULSE_ARRIVAL_S)
                self.flow.gain_4hz = maternal_gain
                mbeats = mbeats[(mbeats > 0) & (mbeats < end_s)]
                mrr = 60.0 / at(self.mhr, mbeats)
                wall = 10 ** (rng.uniform(*_WALL_DB) / 20.0)
                amp = wall * at(maternal_gain, mbeats) * rng.lognormal(0, 0.15, mbeats.size)
                add(mbeats + _PULSE_ARRIVAL_S, 0.3 * np.sqrt(mrr / 0.8), "maternal", amp, "pulse")
            else:
                # A stream of its own: the fetal events and movements do not depend on which
                # maternal model is heard.
                mrng = np.random.default_rng([seed, 3])
                rel = self._maternal_parts(
                    mrng, beats, maternal_model, maternal_arrival_s, maternal_gain, add, at, end_s
                )
        self.movement = np.zeros(self.n_points, dtype=bool)
        n_mov = rng.poisson(movements_per_10min * self.n_points / 2400.0)
        if n_mov:
            t = rng.uniform(0, self.n_samples / fs_hz, n_mov)
            d = rng.uniform(1.0, 6.0, n_mov)
            amp = 10 ** (rng.uniform(6.0, 20.0, n_mov) / 20.0) * 2.0
            if self.absent.any():  # the probe is off the fetus: no movement heard either
                heard = ~absent_mask(fetal_absent, t) & ~absent_mask(fetal_absent, t - d / 2)
                heard &= ~absent_mask(fetal_absent, t + d / 2)
                t, d, amp = t[heard], d[heard], amp[heard]
            if t.size:
                add(t, d, "movement", amp, "tukey")
            for ti, di in zip(t, d, strict=True):
                a = int(np.floor((ti - di / 2) * FS_TRACE_HZ))
                b = int(np.ceil((ti + di / 2) * FS_TRACE_HZ))
                self.movement[max(a, 0) : max(b, 0)] = True
        self.renderer.set_events(starts, lens, classes, amps, offs, shapes)
        # Fetal and maternal RMS where the fetal signal is unfaded: the SNR, the maternal
        # level and the output scale are defined there (before any fetal-absent interval).
        seg = min(self.n_samples, 120 * fs_hz)
        g = np.repeat(self.fetal_gain, int(round(fs_hz / FS_TRACE_HZ)))[:seg]
        sel = g >= 0.5
        if sel.sum() < fs_hz:
            sel = np.ones(seg, dtype=bool)
        fetal = self.renderer.render(0, seg, self.fetal_classes)[: sel.size]
        self.fetal_rms = max(float(np.sqrt(np.mean(fetal[sel] ** 2))), 1e-9)
        is_cls = {c: np.array([x == c for x in self.renderer.cls]) for c in self.maternal_classes}
        for part, level in rel.items():  # level each part of the maternal signal
            if part == "flow" and self.flow is not None:
                x = self.flow.render(0, seg)[: sel.size]
            else:
                x = self.renderer.render(0, seg, {_PART_CLASS[part]})[: sel.size]
            p_rms = float(np.sqrt(np.mean(x[sel] ** 2)))
            if p_rms <= 0:
                continue
            if part == "flow" and self.flow is not None:
                self.flow.scale *= level / p_rms
            else:
                self.renderer.amp[is_cls[_PART_CLASS[part]]] *= level / p_rms
        maternal = self.renderer.render(0, seg, self.maternal_classes)[: sel.size]
        if self.flow is not None:
            maternal = maternal + self.flow.render(0, seg)[: sel.size]
        m_rms = float(np.sqrt(np.mean(maternal[sel] ** 2)))
        is_m = is_cls["maternal"] | is_cls["maternal_wall"]
        if m_rms > 0:
            scale = self.fetal_rms * 10 ** (maternal_db / 20.0) / m_rms
            self.renderer.amp[is_m] *= scale
            if self.flow is not None:
                self.flow.scale *= scale
        if self.absent.any():
            # The probe is off the fetal heart: no fetal events there, and the maternal
            # vessel, still in the beam, possibly louder.
            centre = (self.renderer.start + self.renderer.length // 2) / fs_hz
            inside = absent_mask(fetal_absent, centre)
            is_f = np.array([x in self.fetal_classes for x in self.renderer.cls])
            self.renderer.amp[is_f & inside] = 0.0
            boost = 10 ** (absent_maternal_db / 20.0)
            self.renderer.amp[is_m & inside] *= boost
            if self.flow is not None:
                self.flow.gain_4hz = np.where(self.absent, boost, 1.0) * self.flow.gain_4hz
            self.fetal_gain = np.where(self.absent, 0.0, self.fetal_gain)

    def _maternal_parts(self, mrng, beats, model, arrival_s, maternal_gain, add, at, end_s):
        """Add the maternal sources of `model`; returns the relative level of each part."""
        if beats is None:
            arrival_s = _PULSE_ARRIVAL_S if arrival_s is None else arrival_s
            arrivals = beat_times(self.mhr, mrng, 0.01) + arrival_s
            resp = np.zeros(self.n_points)
            mrr_all = None
        else:
            if arrival_s is None:
                arrival_s = mrng.uniform(*UTERINE_ARRIVAL_RANGE_S)
            resp_mod = mrng.uniform(*UTERINE_RESP_MOD_RANGE_S)
            lag = mrng.uniform(0.0, 2 * np.pi)
            arrivals = beats.arrivals(arrival_s, mrng, resp_mod_s=resp_mod, resp_lag_rad=lag)
            resp = beats.respiration((np.arange(self.n_points) + 1) / FS_TRACE_HZ)
            mrr_all = beats.rr_s()
        self.arrival_s = float(arrival_s)
        if model == "random":
            model = str(mrng.choice(_RANDOM_MODELS))
        if model == "mixture":
            k = int(mrng.integers(2, len(_MIXTURE_PARTS) + 1))
            chosen = sorted(mrng.choice(len(_MIXTURE_PARTS), k, replace=False))
            parts = [_MIXTURE_PARTS[i] for i in chosen]
            rel = {p: 10 ** (mrng.uniform(*_MIXTURE_REL_DB) / 20.0) for p in parts}
            self.model = "mixture:" + "+".join(parts)
        elif model == "flow_thump":
            parts, rel = ["flow", "thump"], {}  # today's relative levels
            self.model = model
        else:
            parts, rel = [model], {}
            self.model = model
        gain = maternal_gain * (1.0 + mrng.uniform(*_MATERNAL_RESP_AM) * resp)
        keep = (arrivals > 0) & (arrivals < end_s)
        t = arrivals[keep]
        if mrr_all is None:
            mrr = 60.0 / at(self.mhr, t)
        else:
            mrr = mrr_all[keep]
        if "flow" in parts:
            self.flow = _ArterialFlow(self.fs, mrng, arrivals)
            self.flow.gain_4hz = gain
        if "thump" in parts:
            wall = 10 ** (mrng.uniform(*_WALL_DB) / 20.0) if model == "flow_thump" else 1.0
            amp = wall * at(gain, t) * mrng.lognormal(0, _MATERNAL_BEAT_LOG_SD, t.size)
            d = 0.3 * np.sqrt(mrr / 0.8)
            add(t + d / 2, d, "maternal", amp, "pulse", mrng)  # starts at the arrival
        if "wall_inband" in parts:
            centre = mrng.uniform(*_INBAND_CENTRE_HZ)
            width = mrng.uniform(*_INBAND_WIDTH_HZ)
            self.renderer.add_band(
                "maternal_wall", max(centre - width / 2, 40.0), centre + width / 2, mrng
            )
            length = mrng.uniform(*_INBAND_PULSE_S)
            shape = str(mrng.choice(["hann", "pulse"]))
            d = length * mrng.uniform(*_PULSE_LENGTH_SPREAD, t.size)
            amp = at(gain, t) * mrng.lognormal(0, _MATERNAL_BEAT_LOG_SD, t.size)
            add(t + d / 2, d, "maternal_wall", amp, shape, mrng)  # starts at the arrival
            if mrng.uniform() < _INBAND_REBOUND_P:
                frac = mrng.uniform(*_INBAND_REBOUND_FRAC_RR)
                tr = t + np.minimum(frac * mrr, 0.35)
                a2 = amp * mrng.uniform(*_INBAND_REBOUND_REL)
                d2 = _INBAND_REBOUND_LENGTH * d
                ok = tr + d2 < end_s
                add(tr[ok] + d2[ok] / 2, d2[ok], "maternal_wall", a2[ok], shape, mrng)
        return rel

    def to_doppler_scene(self, audio: np.ndarray) -> DopplerScene:
        return DopplerScene(
            fs_hz=self.fs,
            audio=audio,
            t_s=(np.arange(self.n_points) + 1) / FS_TRACE_HZ,
            fhr_bpm=self.fhr.copy(),
            fetal_gain=self.fetal_gain.copy(),
            movement=self.movement.copy(),
            mhr_bpm=None if self.mhr is None else self.mhr.copy(),
            fetal_absent=self.absent.copy(),
            maternal_model=self.model,
            maternal_arrival_s=self.arrival_s,
        )

    def render(self, n0: int, n1: int) -> np.ndarray:
        out = self.renderer.render(n0, n1)
        if self.flow is not None:
            out += self.flow.render(n0, n1)
        return out / self.fetal_rms


_PART_CLASS = {"thump": "maternal", "wall_inband": "maternal_wall"}


def synthesize_doppler(
    fhr_bpm_4hz: np.ndarray,
    mhr_bpm_4hz: np.ndarray | None = None,
    fs_hz: int = 4000,
    snr_db: float = 15.0,
    seed: int = 0,
    fades_per_10min: float = 2.0,
    movements_per_10min: float = 3.0,
    maternal_db: float = -6.0,
    *,
    maternal_model: str = "flow_thump",
    beats: MaternalBeats | None = None,
    fetal_absent: Sequence[tuple[float, float]] = (),
    absent_maternal_db: float = 0.0,
    maternal_arrival_s: float | None = None,
) -> DopplerScene:
    """Doppler audio for a whole 4 Hz FHR trace, with its ground truth.

    `maternal_db` is the maternal vessel signal power relative to the fetal Doppler power
    (both where the fetal signal is unfaded); it grows by up to +10 dB while the probe is
    displaced off the fetal heart. The maternal sources heard (`maternal_model`):

    - "flow_thump" (default): arterial flow, whose pitch pulses up to ~0.5-2 kHz in systole
      with a diastolic tail, plus a weaker low-shift (25-150 Hz) wall thump;
    - "wall_inband": pulsation at ~100-250 Hz, in the fetal band, pulses 100-150 ms long
      (as long as a fetal wall event), sometimes with a weaker rebound later in the beat;
    - "flow": the arterial flow alone; "thump": the low-shift thump alone;
    - "mixture": two or three of wall_inband, flow and thump, each at -10..0 dB;
    - "random": one of wall_inband, flow, thump and mixture, drawn from the seed.

    The maternal pulses follow `beats` (shared with a PPG: they arrive at the vessel
    `maternal_arrival_s` after each beat, drawn from 0.15-0.30 s when None) or, without
    them, beats of the scene's own following `mhr_bpm_4hz`; each maternal pulse starts at its
    arrival (only the default model without `beats` keeps, as before, its thump centred on
    the arrival). With `beats` and no `mhr_bpm_4hz`, the truth `mhr_bpm` is the beats'
    mean-rate trace.

    `fetal_absent` lists (t0_s, t1_s) intervals where the probe is off the fetus: no fetal
    heart (nor movement) is heard and `fetal_gain` is 0 there, while the maternal vessel
    stays in the beam, `absent_maternal_db` louder.
    """
    scene = _Scene(
        fhr_bpm_4hz,
        mhr_bpm_4hz,
        fs_hz,
        seed,
        fades_per_10min,
        movements_per_10min,
        maternal_db,
        maternal_model,
        beats,
        fetal_absent,
        absent_maternal_db,
        maternal_arrival_s,
    )
    if not np.isfinite(snr_db):
        raise ValueError("snr_db must be finite")
    rng = np.random.default_rng([seed, 1])
    audio = scene.render(0, scene.n_samples)
    audio += rng.standard_normal(audio.size) * 10 ** (-snr_db / 20.0)
    return scene.to_doppler_scene(audio)


class DopplerSignal:
    """Endless Doppler source for the firmware simulation (loops the trace)."""

    ADC_COUNTS_PER_FETAL_RMS = 1500.0

    def __init__(
        self,
        fhr_bpm_4hz: np.ndarray,
        mhr_bpm_4hz: np.ndarray | None = None,
        fs_hz: int = 4000,
        snr_db: float = 15.0,
        seed: int = 0,
        *,
        maternal_model: str = "flow_thump",
        beats: MaternalBeats | None = None,
        fetal_absent: Sequence[tuple[float, float]] = (),
        absent_maternal_db: float = 0.0,
        maternal_db: float = -6.0,
    ) -> None:
        self._scene = _Scene(
            fhr_bpm_4hz,
            mhr_bpm_4hz,
            fs_hz,
            seed,
            2.0,
            3.0,
            maternal_db,
            maternal_model,
            beats,
            fetal_absent,
            absent_maternal_db,
        )
        self._noise_sd = 10 ** (-snr_db / 20.0)
        self._rng = np.random.default_rng([seed, 2])
        self._pos = 0  # samples since start, not wrapped
        self.fs_hz = fs_hz
        move = self._scene.movement
        began = np.flatnonzero(move & ~np.concatenate(([False], move[:-1])))
        self._movement_starts = (began * fs_hz / FS_TRACE_HZ).astype(np.int64)  # in the trace

    def movements_starting(self, n: int) -> int:
        """How many fetal movements begin in the next `n` samples (those the next read(n)
        gives): what a mother would feel, for a simulated one who marks them."""
        period = self._scene.n_samples
        a = self._pos % period
        starts = self._movement_starts
        hits = np.count_nonzero((starts >= a) & (starts < a + n))
        if a + n > period:  # the read wraps round to the start of the trace
            hits += np.count_nonzero(starts < a + n - period)
        return int(hits)

    def read(self, n: int) -> np.ndarray:
        """Next n samples as int16 ADC counts (centred), looping the trace when it ends."""
        x = render_looped(self._scene.render, self._scene.n_samples, self._pos, n)
        x = x + self._rng.standard_normal(x.size) * self._noise_sd
        self._pos += n
        return np.clip(np.round(x * self.ADC_COUNTS_PER_FETAL_RMS), -32768, 32767).astype(np.int16)

    def truth_fhr_bpm(self, t_s: np.ndarray | float) -> np.ndarray:
        """Driving FHR at time t_s (s since the first sample read), NaN where faded."""
        t = np.asarray(t_s, dtype=float)
        period = self._scene.n_points / FS_TRACE_HZ
        idx = np.clip(np.round((t % period) * FS_TRACE_HZ).astype(int) - 1, 0, None)
        idx = np.minimum(idx, self._scene.n_points - 1)
        return np.where(self._scene.fetal_gain[idx] >= 0.5, self._scene.fhr[idx], np.nan)
