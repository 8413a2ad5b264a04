"""A second CW Doppler synthesizer, built from moving scatterers instead of noise bursts.

The same physics as simulators/doppler.py, built differently, to cross-check rules tuned on
one against the other. Each source in the beam (fetal ventricular wall, fetal valve leaflets,
fetal intracardiac blood, and the maternal artery's blood, its wall and the tissue it moves)
is given a velocity waveform v(t) over its cardiac cycle. A source is a set of scatterers,
each with its own velocity factor (the position in the vessel's velocity profile, the angle
to the beam, the part of the wall) and a random phase; the demodulated CW audio is

    sum over scatterers k of  Re{ g_k(t) exp(i (2 pi int f_k dt + phi_k)) },
    f_k(t) = c_k * 2 f0 v(t) cos(theta) / c,

where g_k(t) is a slowly varying complex Gaussian amplitude: scatterers entering and leaving
the beam (transit-time broadening, tens of Hz for blood) and speckle changing with the
heart's motion (a few Hz for tissue). A high-pass wall filter (80-100 Hz, as in a CW
front end) removes the slow tissue motion, so what is heard of the heart is the fast part
of each velocity waveform: valve movements, the peaks of wall motion, blood flow. White
noise is added at a chosen SNR (fetal Doppler power over noise power, whole band, where the
fetal signal is unfaded), and fetal movements, probe fades and fetal-absent intervals as in
simulators/doppler.py; the result is the same `DopplerScene`.

The maternal sources pulse at the pulse arrivals of shared `MaternalBeats`, so a PPG made
from the same beats is locked to them at a constant lag.

Rendering: each source's phase 2 pi int f dt is integrated once at 1 kHz, the scatterers'
amplitudes are drawn at 250 Hz, and the audio is assembled in blocks (a few seconds of CPU
for 10 minutes at 4 kHz).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal

from simulators.doppler import (
    _ARTERY_ANGLE_DEG,
    _ARTERY_DIASTOLIC_RATIO,
    _ARTERY_PSV_M_S,
    _INBAND_REBOUND_FRAC_RR,
    _INBAND_REBOUND_LENGTH,
    _INBAND_REBOUND_P,
    _INBAND_REBOUND_REL,
    _MATERNAL_RESP_AM,
    _MIXTURE_PARTS,
    _MIXTURE_REL_DB,
    _RANDOM_MODELS,
    _WALL_DB,
    FS_TRACE_HZ,
    HZ_PER_M_S,
    MATERNAL_MODELS,
    UTERINE_ARRIVAL_RANGE_S,
    UTERINE_RESP_MOD_RANGE_S,
    DopplerScene,
    _fades,
    _slow_gain,
    absent_mask,
    beat_times,
)
from simulators.maternal import MaternalBeats

_CTRL_HZ = 1000  # velocity waveforms and phases
_BLOCK = 8192  # audio samples per rendering block
FHR_RANGE_BPM = (50.0, 250.0)

# Fetal myocardial velocities along the long axis, third trimester (fetal tissue Doppler:
# Comas et al., Ultrasound Obstet Gynecol 2011;37:57-64, annular peaks of a few cm/s,
# the atrial wave the largest): S' in ejection, E' early in diastole, A' with the atrial
# contraction (m/s; ranges are judgement around those values).
_WALL_S_M_S = (0.03, 0.07)
_WALL_E_M_S = (0.04, 0.09)
_WALL_A_M_S = (0.06, 0.12)
# Valve leaflets open and close in ~15-30 ms at ~15-40 cm/s (less well documented:
# judgement, as in simulators/doppler.py).
_LEAFLET_M_S = (0.15, 0.40)
_LEAFLET_MOVE_S = (0.015, 0.030)
# Fetal intracardiac blood: ventricular inflow E and A waves (A > E in the fetus) and
# outflow in ejection, peak velocities of the order of 30-80 cm/s in the third trimester
# (e.g. Hecher et al., Ultrasound Obstet Gynecol 1994;4:381-390; judgement for the ranges).
_INFLOW_E_M_S = (0.25, 0.45)
_INFLOW_A_M_S = (0.35, 0.60)
_OUTFLOW_M_S = (0.50, 0.90)
# Fetal systolic time intervals (s): isovolumic contraction ~35 ms and relaxation ~40 ms,
# ejection ~0.18 s at 140 bpm scaling with the square root of the beat interval, atrial
# contraction ~70 ms ending at AV closure (as in simulators/doppler.py).
_IVC_S = 0.035
_IVR_S = 0.040
_ATRIAL_S = 0.07
# Beam-to-motion angle of each source: unknown, |cos| anywhere from 0.3 to 1 (judgement).
_COS_RANGE = (0.3, 1.0)
# Level of each fetal source before the wall filter (dB, judgement) and the chance a probe
# position does not hear it.
_FETAL_SOURCE_DB = {
    "wall": (-3.0, 3.0),
    "av_leaflets": (-6.0, 3.0),
    "sl_leaflets": (-6.0, 3.0),
    "inflow": (-15.0, -5.0),
    "outflow": (-15.0, -5.0),
}
_FETAL_MISS_P = 0.25
# Uterine artery waveform: systolic peak ~60-90 ms after the pulse arrives, a diastolic
# decline (a share of the systolic excess decaying over 0.1-0.25 s) and, in some cases, an
# early diastolic notch (persisting in higher-resistance circulations: Bower et al.,
# Ultrasound Obstet Gynecol 1992;2:261-265). Peak and diastolic velocities as in
# simulators/doppler.py. Shapes are judgement.
_FLOW_PEAK_S = (0.06, 0.09)
_FLOW_TAIL_SHARE = (0.2, 0.4)
_FLOW_TAIL_S = (0.10, 0.25)
_FLOW_NOTCH_P = 0.3
_FLOW_NOTCH_DEPTH = (0.2, 0.5)
# Velocity profile v = vmax (1 - r^n), n = 2 (parabolic) to 8 (blunt, systole in a large
# artery): judgement.
_PROFILE_N = (2.0, 8.0)
# In-band maternal pulsation (vessel wall and the tissue it moves): peak shift 100-250 Hz
# (~4-10 cm/s along the beam at 2 MHz), expansion 100-150 ms, recoil weaker and longer;
# a large vessel's wall thump: peak shift 40-130 Hz (1.5-5 cm/s), 0.2-0.3 s. Judgement,
# matching the noise model's bands.
_INBAND_PEAK_HZ = (100.0, 250.0)
_INBAND_PULSE_S = (0.10, 0.15)
_THUMP_PEAK_HZ = (40.0, 130.0)
_THUMP_PULSE_S = (0.20, 0.30)
_RECOIL_REL = (0.3, 0.5)
# Bandwidth of the scatterers' amplitude fluctuation (Hz): blood crossing the beam
# (transit-time broadening ~ velocity / beam width: tens of Hz), tissue speckle changing
# slowly. Judgement.
_G_BW_HZ = {"blood": (30.0, 80.0), "leaflet": (15.0, 40.0), "tissue": (2.0, 8.0)}
# Spread of the beam angle across the aperture (geometric broadening), SD of the cos
# factor (judgement).
_APERTURE_SD = 0.04
# Velocity factors of a tissue source's scatterers (parts of the wall or leaflet moving at
# different speeds and angles): range and number; blood scatterers follow the velocity
# profile instead (_profile). Judgement.
_TISSUE_FACTORS = {
    "wall": (0.6, 1.2, 8),
    "leaflet": (0.7, 1.1, 6),
    "maternal": (0.6, 1.1, 8),
    "movement": (0.5, 1.5, 8),
}
_BLOOD_SCATTERERS = {"fetal": 8, "maternal": 16}
# Beat-to-beat variability (judgement, as in simulators/doppler.py): timing of each fetal
# event (s, SD), its velocity peak and each source's amplitude per beat (log SD), the
# maternal pulses' peaks (log SD); and a recording-to-recording spread of each fetal
# source's level (log SD).
_EVENT_JITTER_S = 0.004
_LENGTH_SPREAD = (0.9, 1.1)  # of the atrial and E' waves, per recording
_BEAT_VELOCITY_LOG_SD = 0.1
_BEAT_AMPLITUDE_LOG_SD = 0.2
_FLOW_BEAT_LOG_SD = 0.05
_MATERNAL_BEAT_LOG_SD = 0.1
_SOURCE_LEVEL_LOG_SD = 0.3
# Fetal wall: motion in isovolumic contraction at 0.4 S'; E' lasts ~90 ms. Leaflets drift
# back at 15 % of their opening speed over 0.1 s and reopen with the atrial contraction at
# half speed. Judgement.
_IVC_REL = 0.4
_E_WAVE_S = 0.09
_LEAFLET_DRIFT_REL, _LEAFLET_DRIFT_S = 0.15, 0.1
_LEAFLET_A_REL = 0.5
# Maternal wall recoil lasts 1.6 times the expansion; the uterine notch comes 0.12-0.18 s
# after the systolic peak. Judgement.
_RECOIL_LENGTH = 1.6
_FLOW_NOTCH_AFTER_S = (0.12, 0.18)
# CW front-end wall filter: high-pass at 80-100 Hz, 2nd or 4th order (judgement; fetal
# Doppler front ends reject the slow tissue motion below ~100 Hz).
_WALL_FILTER_HZ = (80.0, 100.0)
_WALL_FILTER_ORDER = (2, 4)
# Fetal body and limb movements: up to 5-20 cm/s, 1-6 s, 10-25 dB louder than the fetal
# heart while they last (judgement, as in simulators/doppler.py).
_MOVE_M_S = (0.05, 0.20)
_MOVE_S = (1.0, 6.0)
_MOVE_DB = (10.0, 25.0)
_MOVE_VELOCITY_BW_HZ = (1.0, 4.0)  # how fast the movement's velocity changes
_MOVE_G_BW_HZ = (5.0, 20.0)  # and its speckle


class _Amplitudes:
    """Complex Gaussian scatterer amplitudes g_k(t), low-passed to bw_hz, drawn as needed
    (in increasing time) at a rate suited to their bandwidth; total power 1 over k."""

    def __init__(self, rng: np.random.Generator, k: int, bw_hz: float) -> None:
        self.rng, self.k = rng, k
        self.rate = 250.0 if bw_hz > 40 else 125.0 if bw_hz > 10 else 50.0
        self.sos = signal.butter(2, min(bw_hz, 0.4 * self.rate), fs=self.rate, output="sos")
        h = signal.sosfilt(self.sos, np.r_[1.0, np.zeros(int(20 * self.rate))])
        self.norm = np.sqrt(2.0 * np.sum(h * h) * k)
        self.zi = np.zeros((self.sos.shape[0], k, 2), dtype=complex)
        self._draw(int(2 * self.rate))  # settle the filter
        self.buf = self._draw(1)
        self.start = 0

    def _draw(self, m: int) -> np.ndarray:
        z = self.rng.standard_normal((self.k, m)) + 1j * self.rng.standard_normal((self.k, m))
        y, self.zi = signal.sosfilt(self.sos, z, axis=1, zi=self.zi)
        return y / self.norm

    def get(self, i0: int, i1: int) -> np.ndarray:
        """Samples i0..i1 (inclusive); i0 must not go back before an earlier i0."""
        need = i1 + 1 - (self.start + self.buf.shape[1])
        if need > 0:
            self.buf = np.concatenate([self.buf, self._draw(need)], axis=1)
        if i0 > self.start:
            self.buf = self.buf[:, i0 - self.start :]
            self.start = i0
        return self.buf[:, i0 - self.start : i1 + 1 - self.start]


@dataclass
class _Source:
    """Scatterers sharing a velocity waveform."""

    psi: np.ndarray  # 2 pi int f dt of a scatterer with factor 1 (rad), at _CTRL_HZ
    factors: np.ndarray  # (K,) each scatterer's velocity factor
    phases: np.ndarray  # (K,)
    amps: _Amplitudes
    env: Callable[[np.ndarray], np.ndarray]  # amplitude envelope at times t (s)


def _render(src: _Source, n: int, fs: int) -> np.ndarray:
    """The source's audio (n samples at fs), block by block; renders a source once."""
    out = np.zeros(n)
    t_ctrl = np.arange(src.psi.size) / _CTRL_HZ
    for n0 in range(0, n, _BLOCK):
        n1 = min(n, n0 + _BLOCK)
        t = np.arange(n0, n1) / fs
        env = src.env(t)
        if not env.any():
            continue
        psi = np.interp(t, t_ctrl, src.psi)
        x = t * src.amps.rate
        m = x.astype(np.int64)
        fr = x - m
        g = src.amps.get(int(m[0]), int(m[-1]) + 1)
        i = m - m[0]
        g = g[:, i] * (1.0 - fr) + g[:, i + 1] * fr
        ph = src.factors[:, None] * psi + src.phases[:, None]
        out[n0:n1] = env * np.sum(g.real * np.cos(ph) - g.imag * np.sin(ph), axis=0)
    return out


def _half_sine(tau: np.ndarray, d: float) -> np.ndarray:
    return np.where((tau >= 0) & (tau <= d), np.sin(np.pi * np.clip(tau / d, 0, 1)), 0.0)


def _skewed(tau: np.ndarray, d: float, peak_frac: float = 0.3) -> np.ndarray:
    """A systolic wave over 0..d: fast rise to a peak at peak_frac*d, slower fall, 1 at peak."""
    x = np.clip(tau / d, 0.0, 1.0)
    p = peak_frac
    w = (x / p) ** 2 * np.exp(2.0 * (1.0 - x / p)) * np.sin(np.pi * x) ** 0.5
    w[(tau < 0) | (tau > d)] = 0.0
    m = w.max() if w.size else 0.0
    return w / m if m > 0 else w


class _Pulses:
    """A velocity waveform at _CTRL_HZ assembled from pulses: half sines, or systolic waves
    peaking at `skew` of their length."""

    def __init__(self, n_ctrl: int) -> None:
        self.v = np.zeros(n_ctrl)

    def add(self, t0_s, amps, length_s, skew: float | None = None) -> None:
        t0s, amp, lengths = np.broadcast_arrays(
            np.atleast_1d(t0_s), np.atleast_1d(amps), np.atleast_1d(length_s)
        )
        for t0, a, d in zip(t0s, amp, lengths, strict=True):
            n = int(np.ceil(d * _CTRL_HZ)) + 1
            i0 = int(np.ceil(t0 * _CTRL_HZ))
            lo, hi = max(i0, 0), min(i0 + n, self.v.size)
            if hi <= lo:
                continue
            tau = np.arange(lo - i0, hi - i0) / _CTRL_HZ + (i0 / _CTRL_HZ - t0)
            self.v[lo:hi] += a * (_half_sine(tau, d) if skew is None else _skewed(tau, d, skew))


class _ScatterScene:
    def __init__(
        self,
        fhr_bpm_4hz: np.ndarray,
        beats: MaternalBeats | None,
        fs_hz: int,
        seed: int,
        maternal_model: str,
        fetal_absent: Sequence[tuple[float, float]],
        maternal_db: float,
        absent_maternal_db: float,
        fades_per_10min: float,
        movements_per_10min: float,
        maternal_arrival_s: float | None,
        artery_psv_m_s: float | None,
        artery_angle_deg: float | None,
    ) -> None:
        fhr = np.asarray(fhr_bpm_4hz, dtype=float)
        if fhr.ndim != 1 or fhr.size < 8 or not np.all(np.isfinite(fhr)):
            raise ValueError("fhr_bpm_4hz must be a finite 1-D trace of at least 2 s")
        if fhr.min() < FHR_RANGE_BPM[0] or fhr.max() > FHR_RANGE_BPM[1]:
            raise ValueError("fhr_bpm_4hz must be {:g}-{:g} bpm".format(*FHR_RANGE_BPM))
        if not 2000 <= fs_hz <= 16000:
            raise ValueError("fs_hz must be 2000-16000")
        if maternal_model not in MATERNAL_MODELS:
            raise ValueError(f"maternal_model must be one of {', '.join(MATERNAL_MODELS)}")
        if not (np.isfinite(maternal_db) and np.isfinite(absent_maternal_db)):
            raise ValueError("maternal_db and absent_maternal_db must be finite")
        if not (fades_per_10min >= 0 and movements_per_10min >= 0):
            raise ValueError("fades_per_10min and movements_per_10min must be >= 0")
        if beats is not None and beats.duration_s < fhr.size / FS_TRACE_HZ - 1e-9:
            raise ValueError("beats must cover the whole FHR trace")
        if maternal_arrival_s is not None and not 0.0 <= maternal_arrival_s <= 1.0:
            raise ValueError("maternal_arrival_s must be 0-1 s")
        if artery_psv_m_s is not None and not 0.05 <= artery_psv_m_s <= 3.0:
            raise ValueError("artery_psv_m_s must be 0.05-3 m/s")
        if artery_angle_deg is not None and not 0.0 <= artery_angle_deg < 90.0:
            raise ValueError("artery_angle_deg must be 0-90 degrees")
        self.fs = int(fs_hz)
        self.seed = seed
        self.fhr = fhr
        self.n_points = fhr.size
        self.duration_s = fhr.size / FS_TRACE_HZ
        self.n = int(round(self.duration_s * fs_hz))
        self.n_ctrl = int(np.ceil(self.duration_s * _CTRL_HZ)) + 2
        self.t_ctrl = np.arange(self.n_ctrl) / _CTRL_HZ
        self.t4 = (np.arange(self.n_points) + 1) / FS_TRACE_HZ
        self.absent_intervals = list(fetal_absent)
        self.absent = absent_mask(self.absent_intervals, self.t4)
        self.beats = beats
        rng = np.random.default_rng([seed, 20])
        self.fetal_gain = _fades(self.n_points, rng, fades_per_10min)
        self.probe_gain = _slow_gain(self.n_points, rng, 2.0, 20.0)
        self.maternal_gain = np.where(self.fetal_gain < 0.5, rng.uniform(1.0, 3.0), 1.0)
        self.maternal_gain = self.maternal_gain * _slow_gain(self.n_points, rng, 2.0, 30.0)
        hp_order = int(rng.choice(_WALL_FILTER_ORDER))
        self.wall_sos = signal.butter(
            hp_order, rng.uniform(*_WALL_FILTER_HZ), "highpass", fs=self.fs, output="sos"
        )
        self.fetal_sources = self._fetal(np.random.default_rng([seed, 21]))
        self.movement = np.zeros(self.n_points, dtype=bool)
        self.movement_source = self._movement(
            np.random.default_rng([seed, 22]), movements_per_10min
        )
        self.model: str | None = None
        self.arrival_s: float | None = None
        self.maternal_parts: dict[str, _Source] = {}
        self.maternal_rel: dict[str, float] = {}
        if beats is not None and maternal_db > -90:
            self._maternal(
                np.random.default_rng([seed, 23]),
                maternal_model,
                maternal_arrival_s,
                artery_psv_m_s,
                artery_angle_deg,
            )
        self.maternal_db = maternal_db
        self.absent_boost = 10 ** (absent_maternal_db / 20.0)

    # -- sources -------------------------------------------------------------------------

    def _source(self, rng, v, factors, bw_hz, env_4hz, per_beat=None) -> _Source:
        """A source from its velocity waveform v (m/s along the beam, at _CTRL_HZ), its
        amplitude following env_4hz (and per-beat factors (t_s, a) when given)."""
        psi = 2 * np.pi * np.cumsum(v * HZ_PER_M_S) / _CTRL_HZ
        t4 = self.t4

        def env(t: np.ndarray) -> np.ndarray:
            e = np.interp(t, t4, env_4hz)
            if per_beat is not None and per_beat[0].size >= 2:
                e = e * np.interp(t, per_beat[0], per_beat[1])
            return e

        k = factors.size
        amps = _Amplitudes(np.random.default_rng(rng.integers(2**63)), k, bw_hz)
        return _Source(psi, factors, rng.uniform(0, 2 * np.pi, k), amps, env)

    def _fetal(self, rng: np.random.Generator) -> list[tuple[_Source, float]]:
        fhr = self.fhr
        b = beat_times(fhr, rng, 0.002)
        idx = np.clip(np.round(b * FS_TRACE_HZ).astype(int) - 1, 0, self.n_points - 1)
        rr = 60.0 / fhr[idx]
        et = 0.18 * np.sqrt(rr / 0.43)
        nb = b.size
        gain = self.probe_gain * self.fetal_gain

        def jit():
            return b + rng.normal(0.0, _EVENT_JITTER_S, nb)

        def per_beat_amp():
            return (b, rng.lognormal(0.0, _BEAT_AMPLITUDE_LOG_SD, nb))

        def var():
            return rng.lognormal(0.0, _BEAT_VELOCITY_LOG_SD, nb)

        sources = []
        names = list(_FETAL_SOURCE_DB)
        heard = rng.uniform(size=len(names)) > _FETAL_MISS_P
        if heard.sum() < 2:
            heard[[0, 1]] = True
        for name, h in zip(names, heard, strict=True):
            level = 10 ** (rng.uniform(*_FETAL_SOURCE_DB[name]) / 20.0) * rng.lognormal(
                0, _SOURCE_LEVEL_LOG_SD
            )
            cos = rng.uniform(*_COS_RANGE)
            p = _Pulses(self.n_ctrl)
            if name == "wall":
                s_pk, e_pk, a_pk = (
                    rng.uniform(*r) for r in (_WALL_S_M_S, _WALL_E_M_S, _WALL_A_M_S)
                )
                d_a = _ATRIAL_S * rng.uniform(*_LENGTH_SPREAD)
                p.add(jit() - 0.01 - d_a, -a_pk * var(), d_a)
                p.add(jit(), _IVC_REL * s_pk * var(), _IVC_S)
                p.add(jit() + _IVC_S, s_pk * var(), et, skew=0.3)
                t_e = jit() + _IVC_S + et + _IVR_S
                d_e = _E_WAVE_S * rng.uniform(*_LENGTH_SPREAD)
                p.add(t_e, -e_pk * var(), d_e)
                lo, hi, k = _TISSUE_FACTORS["wall"]
                factors = rng.uniform(lo, hi, k)
                kind = "tissue"
            elif name in ("av_leaflets", "sl_leaflets"):
                v_pk = rng.uniform(*_LEAFLET_M_S)
                d = rng.uniform(*_LEAFLET_MOVE_S)

                if name == "av_leaflets":
                    p.add(jit() - d / 2, -v_pk * var(), d)  # closure
                    t_open = jit() + _IVC_S + et + _IVR_S
                    p.add(t_open, v_pk * var(), d)  # opening with the E wave
                    p.add(t_open + d, -_LEAFLET_DRIFT_REL * v_pk * var(), _LEAFLET_DRIFT_S)
                    p.add(jit() - _ATRIAL_S, _LEAFLET_A_REL * v_pk * var(), d)  # with the A wave
                else:
                    p.add(jit() + _IVC_S - d / 2, v_pk * var(), d)  # opening
                    p.add(jit() + _IVC_S + et - d / 2, -v_pk * var(), d)  # closure
                lo, hi, k = _TISSUE_FACTORS["leaflet"]
                factors = rng.uniform(lo, hi, k)
                kind = "leaflet"
            elif name == "inflow":
                e_v, a_v = rng.uniform(*_INFLOW_E_M_S), rng.uniform(*_INFLOW_A_M_S)
                p.add(jit() + _IVC_S + et + _IVR_S, e_v * var(), _E_WAVE_S)
                d_a = _ATRIAL_S * 1.1
                p.add(jit() - 0.005 - d_a, a_v * var(), d_a)
                factors = self._profile(rng, _BLOOD_SCATTERERS["fetal"])
                kind = "blood"
            else:
                o_v = rng.uniform(*_OUTFLOW_M_S)
                p.add(jit() + _IVC_S, o_v * var(), et, skew=0.35)
                factors = self._profile(rng, _BLOOD_SCATTERERS["fetal"])
                kind = "blood"
            bw = rng.uniform(*_G_BW_HZ[kind])
            if h:
                src = self._source(rng, p.v * cos, factors, bw, gain, per_beat_amp())
                sources.append((src, level))
        return sources

    def _profile(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """Velocity factors of k blood scatterers: profile position x aperture angle."""
        n = rng.uniform(*_PROFILE_N)
        u = (np.arange(k) + rng.uniform(size=k)) / k  # stratified over the lumen area
        return (1.0 - u ** (n / 2.0)) * (1.0 + rng.normal(0.0, _APERTURE_SD, k))

    def _movement(self, rng: np.random.Generator, per_10min: float) -> _Source | None:
        n_mov = rng.poisson(per_10min * self.duration_s / 600.0)
        if n_mov == 0:
            return None
        t = rng.uniform(0, self.duration_s, n_mov)
        d = rng.uniform(*_MOVE_S, n_mov)
        level = 10 ** (rng.uniform(*_MOVE_DB, n_mov) / 20.0)
        if self.absent.any():  # the probe is off the fetus: no movement heard either
            a = self.absent_intervals
            heard = ~(absent_mask(a, t) | absent_mask(a, t - d / 2) | absent_mask(a, t + d / 2))
            t, d, level = t[heard], d[heard], level[heard]
        if t.size == 0:
            return None
        v = np.zeros(self.n_ctrl)
        env_ctrl = np.zeros(self.n_ctrl)
        self.movement_bursts = []  # (first, last sample, level re fetal RMS)
        for ti, di, li in zip(t, d, level, strict=True):
            lo = max(int((ti - di / 2) * _CTRL_HZ), 0)
            hi = min(int((ti + di / 2) * _CTRL_HZ), self.n_ctrl)
            if hi - lo < 4:
                continue
            sos = signal.butter(2, rng.uniform(*_MOVE_VELOCITY_BW_HZ), fs=_CTRL_HZ, output="sos")
            w = signal.sosfilt(sos, rng.standard_normal(hi - lo + 2000))[2000:]
            v[lo:hi] += rng.uniform(*_MOVE_M_S) * w / (np.max(np.abs(w)) + 1e-12)
            env_ctrl[lo:hi] = np.maximum(env_ctrl[lo:hi], signal.windows.tukey(hi - lo, 0.3))
            scale = self.fs / _CTRL_HZ
            self.movement_bursts.append((int(lo * scale), int(hi * scale), li))
            a = int(np.floor((ti - di / 2) * FS_TRACE_HZ))
            b = int(np.ceil((ti + di / 2) * FS_TRACE_HZ))
            self.movement[max(a, 0) : max(b, 0)] = True
        psi = 2 * np.pi * np.cumsum(v * HZ_PER_M_S) / _CTRL_HZ
        lo, hi, k = _TISSUE_FACTORS["movement"]
        t_ctrl = self.t_ctrl
        return _Source(
            psi=psi,
            factors=rng.uniform(lo, hi, k),
            phases=rng.uniform(0, 2 * np.pi, k),
            amps=_Amplitudes(rng, k, rng.uniform(*_MOVE_G_BW_HZ)),
            env=lambda tt: np.interp(tt, t_ctrl, env_ctrl),
        )

    def _maternal(self, rng, model, arrival_s, psv, angle) -> None:
        beats = self.beats
        assert beats is not None
        if arrival_s is None:
            arrival_s = rng.uniform(*UTERINE_ARRIVAL_RANGE_S)
        self.arrival_s = float(arrival_s)
        resp_mod = rng.uniform(*UTERINE_RESP_MOD_RANGE_S)
        lag = rng.uniform(0.0, 2 * np.pi)
        arr = beats.arrivals(arrival_s, rng, resp_mod_s=resp_mod, resp_lag_rad=lag)
        rr = beats.rr_s()
        if model == "random":
            model = str(rng.choice(_RANDOM_MODELS))
        if model == "mixture":
            k = int(rng.integers(2, len(_MIXTURE_PARTS) + 1))
            parts = [_MIXTURE_PARTS[i] for i in sorted(rng.choice(len(_MIXTURE_PARTS), k, False))]
            rel = {p: 10 ** (rng.uniform(*_MIXTURE_REL_DB) / 20.0) for p in parts}
            self.model = "mixture:" + "+".join(parts)
        elif model == "flow_thump":
            parts = ["flow", "thump"]
            rel = {"flow": 1.0, "thump": 10 ** (rng.uniform(*_WALL_DB) / 20.0)}
            self.model = model
        else:
            parts, rel = [model], {model: 1.0}
            self.model = model
        resp = beats.respiration(self.t4)
        gain = self.maternal_gain * (1.0 + rng.uniform(*_MATERNAL_RESP_AM) * resp)
        for part in parts:
            p = _Pulses(self.n_ctrl)
            if part == "flow":
                v_pk = rng.uniform(*_ARTERY_PSV_M_S) if psv is None else psv
                ang = rng.uniform(*_ARTERY_ANGLE_DEG) if angle is None else angle
                cos = np.cos(np.radians(ang))
                ratio = rng.uniform(*_ARTERY_DIASTOLIC_RATIO)
                t_pk = rng.uniform(*_FLOW_PEAK_S)
                share = rng.uniform(*_FLOW_TAIL_SHARE)
                tail = rng.uniform(*_FLOW_TAIL_S)
                notch = rng.uniform(*_FLOW_NOTCH_DEPTH) if rng.uniform() < _FLOW_NOTCH_P else 0.0
                t_notch = t_pk + rng.uniform(*_FLOW_NOTCH_AFTER_S)

                def wave(x, t_pk=t_pk, share=share, tail=tail, notch=notch, t_notch=t_notch):
                    y = (x / t_pk) ** 2 * np.exp(2.0 * (1.0 - x / t_pk))
                    late = x > t_pk
                    y[late] = (1 - share) * y[late] + share * np.exp(-(x[late] - t_pk) / tail)
                    y *= 1.0 - notch * np.exp(-0.5 * ((x - t_notch) / 0.025) ** 2)
                    y[x < 0] = 0.0
                    return y

                # The fastest blood: the end-diastolic velocity plus the systolic excess of
                # the latest beat (the maximum over overlapping beats).
                excess = np.zeros(self.n_ctrl)
                n_len = int(1.0 * _CTRL_HZ)
                tau = np.arange(n_len) / _CTRL_HZ
                amps = rng.lognormal(0.0, _FLOW_BEAT_LOG_SD, arr.size)
                for t0, a in zip(arr, amps, strict=True):
                    i0 = int(np.ceil(t0 * _CTRL_HZ))
                    lo, hi = max(i0, 0), min(i0 + n_len, self.n_ctrl)
                    if hi <= lo:
                        continue
                    seg = wave(tau[lo - i0 : hi - i0] + (i0 / _CTRL_HZ - t0))
                    excess[lo:hi] = np.maximum(excess[lo:hi], a * seg)
                v = v_pk * (ratio + (1.0 - ratio) * excess) * cos
                factors = self._profile(rng, _BLOOD_SCATTERERS["maternal"])
                bw = rng.uniform(*_G_BW_HZ["blood"])
            else:
                rng_hz = _INBAND_PEAK_HZ if part == "wall_inband" else _THUMP_PEAK_HZ
                rng_s = _INBAND_PULSE_S if part == "wall_inband" else _THUMP_PULSE_S
                v_pk = rng.uniform(*rng_hz) / HZ_PER_M_S
                d = rng.uniform(*rng_s)
                d_r = _RECOIL_LENGTH * d
                recoil = rng.uniform(*_RECOIL_REL)
                amps = v_pk * rng.lognormal(0.0, _MATERNAL_BEAT_LOG_SD, arr.size)
                p.add(arr, amps, d)
                p.add(arr + d, -recoil * amps, d_r)
                if part == "wall_inband" and rng.uniform() < _INBAND_REBOUND_P:
                    frac = rng.uniform(*_INBAND_REBOUND_FRAC_RR)
                    rel_r = rng.uniform(*_INBAND_REBOUND_REL)
                    t_r = arr + np.minimum(frac * rr, 0.35)
                    p.add(t_r, rel_r * amps, _INBAND_REBOUND_LENGTH * d)
                v = p.v
                lo, hi, k = _TISSUE_FACTORS["maternal"]
                factors = rng.uniform(lo, hi, k)
                bw = rng.uniform(*_G_BW_HZ["tissue"])
            self.maternal_parts[part] = self._source(rng, v, factors, bw, gain)
        self.maternal_rel = rel

    # -- rendering -----------------------------------------------------------------------

    def _filtered(self, src: _Source) -> np.ndarray:
        return signal.sosfilt(self.wall_sos, _render(src, self.n, self.fs))

    def render(self, noise_sd: float, rng: np.random.Generator) -> np.ndarray:
        t = np.arange(self.n) / self.fs
        g = np.interp(t, self.t4, self.fetal_gain)
        ref = g >= 0.5  # the levels are defined where the fetal signal is unfaded
        if ref.sum() < self.fs:
            ref = np.ones(self.n, dtype=bool)
        fetal = np.zeros(self.n)
        for src, level in self.fetal_sources:  # each of power ~1 before the wall filter
            fetal += level * self._filtered(src)
        fetal_rms = max(float(np.sqrt(np.mean(fetal[ref] ** 2))), 1e-12)
        out = fetal / fetal_rms
        del fetal
        present = self._presence(t)
        if self.movement_source is not None:
            x = self._filtered(self.movement_source)
            gain = np.zeros(self.n)
            for lo, hi, level in self.movement_bursts:  # each burst at its level, re fetal
                seg = x[lo:hi]
                gain[lo:hi] = level * np.sqrt(seg.size / max(np.sum(seg * seg), 1e-24))
            out += gain * x
        out *= present
        if self.maternal_parts:
            maternal = np.zeros(self.n)
            for part, src in self.maternal_parts.items():
                x = self._filtered(src)
                maternal += self.maternal_rel[part] * x / max(np.sqrt(np.mean(x[ref] ** 2)), 1e-12)
            m_rms = max(float(np.sqrt(np.mean(maternal[ref] ** 2))), 1e-12)
            boost = 1.0 + (self.absent_boost - 1.0) * (1.0 - present)
            out += maternal * boost * 10 ** (self.maternal_db / 20.0) / m_rms
        return out + rng.standard_normal(self.n) * noise_sd

    def _presence(self, t: np.ndarray) -> np.ndarray:
        """1 where the fetus is in the beam, 0 inside fetal-absent intervals, with 50 ms
        raised-cosine ramps outside them."""
        p = np.ones(t.size)
        ramp = 0.05
        for t0, t1 in self.absent_intervals:
            d = np.maximum(np.maximum(t0 - t, t - t1), 0.0)  # distance outside [t0, t1]
            w = np.where(d >= ramp, 1.0, 0.5 - 0.5 * np.cos(np.pi * d / ramp))
            p = np.minimum(p, w)
        return p

    def to_doppler_scene(self, audio: np.ndarray) -> DopplerScene:
        return DopplerScene(
            fs_hz=self.fs,
            audio=audio,
            t_s=self.t4.copy(),
            fhr_bpm=self.fhr.copy(),
            fetal_gain=np.where(self.absent, 0.0, self.fetal_gain),
            movement=self.movement.copy(),
            mhr_bpm=None
            if self.beats is None
            else self.beats.rate_bpm_4hz[
                np.minimum(np.arange(self.n_points), self.beats.rate_bpm_4hz.size - 1)
            ].copy(),
            fetal_absent=self.absent.copy(),
            maternal_model=self.model,
            maternal_arrival_s=self.arrival_s,
        )


def synthesize_doppler_scatter(
    fhr_bpm_4hz: np.ndarray,
    beats: MaternalBeats | None,
    fs_hz: int = 4000,
    snr_db: float = 15.0,
    seed: int = 0,
    maternal_model: str = "random",
    fetal_absent: Sequence[tuple[float, float]] = (),
    maternal_db: float = -6.0,
    absent_maternal_db: float = 0.0,
    fades_per_10min: float = 2.0,
    movements_per_10min: float = 3.0,
    maternal_arrival_s: float | None = None,
    artery_psv_m_s: float | None = None,
    artery_angle_deg: float | None = None,
) -> DopplerScene:
    """CW Doppler audio from moving scatterers for a 4 Hz FHR trace and the mother's beats.

    The arguments mean what they mean for `simulators.doppler.synthesize_doppler`
    (`maternal_model` names the same families, built here from velocity waveforms:
    "flow" is uterine-artery blood with a velocity profile, systolic peak, diastolic tail
    and sometimes an early diastolic notch; "wall_inband" the pulsating vessel wall and
    tissue at 100-250 Hz; "thump" a large vessel's wall at 40-130 Hz, mostly removed by the
    wall filter; "mixture", "flow_thump", "random" as there). `beats` None: no maternal
    vessel in the beam. `artery_psv_m_s` and `artery_angle_deg` fix the maternal flow's peak
    systolic velocity and beam angle (drawn when None).
    """
    if not np.isfinite(snr_db):
        raise ValueError("snr_db must be finite")
    scene = _ScatterScene(
        fhr_bpm_4hz,
        beats,
        fs_hz,
        seed,
        maternal_model,
        fetal_absent,
        maternal_db,
        absent_maternal_db,
        fades_per_10min,
        movements_per_10min,
        maternal_arrival_s,
        artery_psv_m_s,
        artery_angle_deg,
    )
    audio = scene.render(10 ** (-snr_db / 20.0), np.random.default_rng([seed, 24]))
    return scene.to_doppler_scene(audio)
