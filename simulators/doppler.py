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

from dataclasses import dataclass

import numpy as np
from scipy import signal

from simulators.looping import render_looped

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

    def __init__(self, fs_hz: int, rng: np.random.Generator, beats: np.ndarray) -> None:
        self.fs = fs_hz
        cos = np.cos(np.radians(rng.uniform(*_ARTERY_ANGLE_DEG)))
        self.f_peak = rng.uniform(*_ARTERY_PSV_M_S) * cos * HZ_PER_M_S
        self.diastolic = rng.uniform(*_ARTERY_DIASTOLIC_RATIO)
        self.beats = np.sort(beats) + _PULSE_ARRIVAL_S
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
    ) -> None:
        rng = np.random.default_rng(seed)
        fhr = np.asarray(fhr_bpm_4hz, dtype=float)
        if fhr.ndim != 1 or fhr.size < 8 or not np.all(np.isfinite(fhr)):
            raise ValueError("fhr_bpm_4hz must be a finite 1-D trace of at least 2 s")
        if not 1000 <= fs_hz <= 16000:
            raise ValueError("fs_hz must be 1000-16000")
        self.fs = int(fs_hz)
        self.n_points = fhr.size
        self.n_samples = int(round(fhr.size / FS_TRACE_HZ * fs_hz))
        self.fhr = fhr
        self.mhr = None if mhr_bpm_4hz is None else np.asarray(mhr_bpm_4hz, dtype=float)
        self.renderer = _EventRenderer(self.fs, rng)
        self.fetal_gain = _fades(self.n_points, rng, fades_per_10min)
        probe_gain = _slow_gain(self.n_points, rng, 2.0, 20.0)
        maternal_gain = np.where(self.fetal_gain < 0.5, rng.uniform(1.0, 3.0), 1.0) * _slow_gain(
            self.n_points, rng, 2.0, 30.0
        )
        starts, lens, classes, amps, offs, shapes = [], [], [], [], [], []
        n_bank = int(_TEMPLATE_S * fs_hz)

        def add(t: np.ndarray, dur: np.ndarray, cls: str, amp: np.ndarray, shape: str) -> None:
            L = np.maximum((dur * fs_hz).astype(np.int64), 2)
            starts.extend((t * fs_hz).astype(np.int64) - L // 2)
            lens.extend(L)
            classes.extend([cls] * t.size)
            amps.extend(amp)
            offs.extend(rng.integers(0, n_bank - L.max() - 1, t.size))
            shapes.extend([shape] * t.size)

        def at(trace: np.ndarray, t: np.ndarray) -> np.ndarray:
            idx = np.clip(np.round(t * FS_TRACE_HZ).astype(int) - 1, 0, self.n_points - 1)
            return trace[idx]

        beats = beat_times(fhr, rng, 0.002)
        rr = 60.0 / at(fhr, beats)
        ejection = 0.18 * np.sqrt(rr / 0.43)
        # Which events this probe position hears, and how strongly (per recording).
        vis = rng.lognormal(0.0, 0.5, len(_FETAL_EVENTS)) * (rng.uniform(size=7) > 0.25)
        if np.count_nonzero(vis) < 2:
            vis[[1, 3]] = 1.0
        for (_, cls, off, n_ej, dur), v in zip(_FETAL_EVENTS, vis, strict=True):
            if v == 0:
                continue
            off_t = off + n_ej * ejection
            t = beats + off_t + rng.normal(0, 0.004, beats.size)
            keep = (t > 0) & (t < self.n_samples / fs_hz)
            t = t[keep]
            amp = v * at(probe_gain * self.fetal_gain, t) * rng.lognormal(0, 0.25, t.size)
            d = dur * rng.uniform(0.8, 1.2, t.size)
            add(t, d, cls, amp, "hann")
        self.fetal_classes = {"wall", "valve"}
        self.flow: _ArterialFlow | None = None
        if self.mhr is not None and maternal_db > -90:
            mbeats = beat_times(self.mhr, rng, 0.01)
            self.flow = _ArterialFlow(self.fs, rng, mbeats)
            self.flow.gain_4hz = maternal_gain
            mbeats = mbeats[(mbeats > 0) & (mbeats < self.n_samples / fs_hz)]
            mrr = 60.0 / at(self.mhr, mbeats)
            wall = 10 ** (rng.uniform(*_WALL_DB) / 20.0)
            amp = wall * at(maternal_gain, mbeats) * rng.lognormal(0, 0.15, mbeats.size)
            add(mbeats + _PULSE_ARRIVAL_S, 0.3 * np.sqrt(mrr / 0.8), "maternal", amp, "pulse")
        self.movement = np.zeros(self.n_points, dtype=bool)
        n_mov = rng.poisson(movements_per_10min * self.n_points / 2400.0)
        if n_mov:
            t = rng.uniform(0, self.n_samples / fs_hz, n_mov)
            d = rng.uniform(1.0, 6.0, n_mov)
            amp = 10 ** (rng.uniform(6.0, 20.0, n_mov) / 20.0) * 2.0
            add(t, d, "movement", amp, "tukey")
            for ti, di in zip(t, d, strict=True):
                a = int(np.floor((ti - di / 2) * FS_TRACE_HZ))
                b = int(np.ceil((ti + di / 2) * FS_TRACE_HZ))
                self.movement[max(a, 0) : max(b, 0)] = True
        self.renderer.set_events(starts, lens, classes, amps, offs, shapes)
        # Fetal and maternal RMS where the fetal signal is unfaded: the SNR, the maternal
        # level and the output scale are defined there.
        seg = min(self.n_samples, 120 * fs_hz)
        g = np.repeat(self.fetal_gain, int(round(fs_hz / FS_TRACE_HZ)))[:seg]
        sel = g >= 0.5
        if sel.sum() < fs_hz:
            sel = np.ones(seg, dtype=bool)
        fetal = self.renderer.render(0, seg, self.fetal_classes)[: sel.size]
        self.fetal_rms = max(float(np.sqrt(np.mean(fetal[sel] ** 2))), 1e-9)
        maternal = self.renderer.render(0, seg, {"maternal"})[: sel.size]
        if self.flow is not None:
            maternal = maternal + self.flow.render(0, seg)[: sel.size]
        m_rms = float(np.sqrt(np.mean(maternal[sel] ** 2)))
        if m_rms > 0:
            scale = self.fetal_rms * 10 ** (maternal_db / 20.0) / m_rms
            is_m = np.array([c == "maternal" for c in self.renderer.cls])
            self.renderer.amp[is_m] *= scale
            if self.flow is not None:
                self.flow.scale = scale

    def render(self, n0: int, n1: int) -> np.ndarray:
        out = self.renderer.render(n0, n1)
        if self.flow is not None:
            out += self.flow.render(n0, n1)
        return out / self.fetal_rms


def synthesize_doppler(
    fhr_bpm_4hz: np.ndarray,
    mhr_bpm_4hz: np.ndarray | None = None,
    fs_hz: int = 4000,
    snr_db: float = 15.0,
    seed: int = 0,
    fades_per_10min: float = 2.0,
    movements_per_10min: float = 3.0,
    maternal_db: float = -6.0,
) -> DopplerScene:
    """Doppler audio for a whole 4 Hz FHR trace, with its ground truth.

    `maternal_db` is the maternal vessel signal power (arterial flow and wall) relative to
    the fetal Doppler power; it grows by up to +10 dB while the probe is displaced off the
    fetal heart.
    """
    scene = _Scene(
        fhr_bpm_4hz,
        mhr_bpm_4hz,
        fs_hz,
        seed,
        fades_per_10min,
        movements_per_10min,
        maternal_db,
    )
    rng = np.random.default_rng([seed, 1])
    audio = scene.render(0, scene.n_samples)
    audio += rng.standard_normal(audio.size) * 10 ** (-snr_db / 20.0)
    t = (np.arange(scene.n_points) + 1) / FS_TRACE_HZ
    return DopplerScene(
        fs_hz=scene.fs,
        audio=audio,
        t_s=t,
        fhr_bpm=scene.fhr.copy(),
        fetal_gain=scene.fetal_gain.copy(),
        movement=scene.movement.copy(),
        mhr_bpm=None if scene.mhr is None else scene.mhr.copy(),
    )


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
    ) -> None:
        self._scene = _Scene(fhr_bpm_4hz, mhr_bpm_4hz, fs_hz, seed, 2.0, 3.0, -6.0)
        self._noise_sd = 10 ** (-snr_db / 20.0)
        self._rng = np.random.default_rng([seed, 2])
        self._pos = 0  # samples since start, not wrapped
        self.fs_hz = fs_hz

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
