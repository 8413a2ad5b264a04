"""Synthetic maternal photoplethysmogram (PPG) driven by the mother's heart beats.

Each maternal beat gives a pulse at the finger: the upstroke starts at the pulse arrival
(the foot), a systolic wave peaks ~0.15 s later and a smaller diastolic (dicrotic) wave
~0.3 s after that. Breathing modulates the baseline (~0.25 Hz), slow drift and white sensor
noise are added, and occasional arm movements add large low-frequency artefacts lasting a
few seconds.

Given shared `MaternalBeats`, the pulses arrive a pulse arrival time after each beat (R wave
to foot, 0.20-0.35 s at the finger: see simulators/maternal.py) with a few ms of jitter and
a respiratory swing, and the baseline breathes with the same breathing as the beats' RSA;
the Doppler synthesizers render the mother's vessels from the same beats. Given only a rate
trace, the PPG draws its own beats (as pulse arrivals at the finger), as it always has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulators.doppler import FS_TRACE_HZ, beat_times
from simulators.looping import render_looped

if TYPE_CHECKING:
    from simulators.maternal import MaternalBeats

# Pulse arrival time, R wave to the foot of the finger pulse (s): a pre-ejection period of
# ~50-70 ms (Kortekaas et al., PLoS One 2018;13:e0205208) plus ~150-250 ms of vascular
# transit to the finger (Smith et al., Thorax 1999;54:452-457: R wave to finger pulse
# ~0.25 s; Mukkamala et al., IEEE Trans Biomed Eng 2015;62:1879-1901).
PPG_ARRIVAL_RANGE_S = (0.20, 0.35)
# Respiratory swing of the finger arrival time (s, peak): the transit time varies by
# ~5-20 ms with breathing effort (Smith et al. 1999); quiet breathing, judgement.
PPG_RESP_MOD_RANGE_S = (0.002, 0.008)
# Breathing modulates the pulse amplitude a little (judgement, 5-15 %).
PPG_RESP_AMP_RANGE = (0.05, 0.15)


class _PpgScene:
    def __init__(
        self,
        mhr_bpm_4hz: np.ndarray | None,
        fs_hz: int,
        seed: int,
        noise: float,
        movements_per_10min: float,
        beats: MaternalBeats | None = None,
        arrival_s: float | None = None,
    ) -> None:
        if not 5 <= fs_hz <= 2000:
            raise ValueError("fs_hz must be 5-2000")
        if beats is None:
            if mhr_bpm_4hz is None:
                raise ValueError("give mhr_bpm_4hz or beats")
            mhr = np.asarray(mhr_bpm_4hz, dtype=float)
            if mhr.ndim != 1 or mhr.size < 8 or not np.all(np.isfinite(mhr)):
                raise ValueError("mhr_bpm_4hz must be a finite 1-D trace of at least 2 s")
            duration_s = mhr.size / FS_TRACE_HZ
        else:
            duration_s = beats.duration_s
        rng = np.random.default_rng(seed)
        self.fs = int(fs_hz)
        self.n_samples = int(round(duration_s * fs_hz))
        if beats is None:
            self.arrivals = beat_times(mhr, rng, 0.005)
        else:
            self.arrivals = np.zeros(0)  # set below, from a stream of its own
        self.amp = rng.lognormal(0.0, 0.08, self.arrivals.size)
        self.resp_hz = rng.uniform(0.2, 0.33)
        self.resp_phase = 0.0
        self.noise = noise
        n_mov = rng.poisson(movements_per_10min * self.n_samples / fs_hz / 600.0)
        self.mov_t = rng.uniform(0, self.n_samples / fs_hz, n_mov)
        self.mov_d = rng.uniform(2.0, 8.0, n_mov)
        self.mov_a = rng.uniform(1.0, 4.0, n_mov)
        self.mov_f = rng.uniform(0.3, 2.0, n_mov)
        self.arrival_s = 0.0
        if beats is not None:
            rng2 = np.random.default_rng([seed, 3])
            pat = rng2.uniform(*PPG_ARRIVAL_RANGE_S) if arrival_s is None else arrival_s
            resp_mod = rng2.uniform(*PPG_RESP_MOD_RANGE_S)
            lag = rng2.uniform(0.0, 2 * np.pi)
            self.arrival_s = float(pat)
            self.arrivals = beats.arrivals(pat, rng2, resp_mod_s=resp_mod, resp_lag_rad=lag)
            self.amp = rng2.lognormal(0.0, 0.08, self.arrivals.size)
            depth = rng2.uniform(*PPG_RESP_AMP_RANGE)
            self.amp = self.amp * (1.0 + depth * beats.respiration(self.arrivals))
            self.resp_hz = beats.resp_hz
            self.resp_phase = beats.resp_phase_rad

    def render(self, n0: int, n1: int) -> np.ndarray:
        t = np.arange(n0, n1) / self.fs
        out = 0.3 * np.sin(2 * np.pi * self.resp_hz * t + self.resp_phase)
        out += 0.2 * np.sin(2 * np.pi * 0.013 * t)
        lo = np.searchsorted(self.arrivals, t[0] - 2.0) if t.size else 0
        hi = np.searchsorted(self.arrivals, t[-1] + 0.5) if t.size else 0
        for b, a in zip(self.arrivals[lo:hi], self.amp[lo:hi], strict=True):
            sel = slice(
                max(0, int((b - n0 / self.fs) * self.fs)),
                max(0, int((b + 1.2 - n0 / self.fs) * self.fs)),
            )
            tt = t[sel] - b
            out[sel] += a * (
                np.exp(-0.5 * ((tt - 0.15) / 0.07) ** 2)
                + 0.35 * np.exp(-0.5 * ((tt - 0.45) / 0.08) ** 2)
            )
        for mt, md, ma, mf in zip(self.mov_t, self.mov_d, self.mov_a, self.mov_f, strict=True):
            sel = (t > mt) & (t < mt + md)
            if sel.any():
                out[sel] += ma * np.sin(2 * np.pi * mf * (t[sel] - mt)) * np.hanning(sel.sum())
        return out


def synthesize_ppg(
    mhr_bpm_4hz: np.ndarray | None = None,
    fs_hz: int = 50,
    seed: int = 0,
    noise: float = 0.05,
    movements_per_10min: float = 1.0,
    beats: MaternalBeats | None = None,
    arrival_s: float | None = None,
) -> np.ndarray:
    """PPG (arbitrary units, pulse amplitude ~1) for a whole recording.

    From `beats` (shared with a Doppler synthesizer) when given, the pulse feet arriving
    `arrival_s` after each beat (drawn from 0.20-0.35 s when None); else from beats of its
    own following the 4 Hz maternal rate trace `mhr_bpm_4hz`.
    """
    scene = _PpgScene(mhr_bpm_4hz, fs_hz, seed, noise, movements_per_10min, beats, arrival_s)
    rng = np.random.default_rng([seed, 1])
    x = scene.render(0, scene.n_samples)
    return x + rng.standard_normal(x.size) * noise


class PpgSignal:
    """Endless PPG source for the firmware simulation (loops the trace): from shared
    `beats` when given (`mhr_bpm_4hz` is then unused), else from a rate trace."""

    ADC_COUNTS_PER_PULSE = 4000.0

    def __init__(
        self,
        mhr_bpm_4hz: np.ndarray | None = None,
        fs_hz: int = 50,
        seed: int = 0,
        beats: MaternalBeats | None = None,
    ) -> None:
        self._scene = _PpgScene(mhr_bpm_4hz, fs_hz, seed, 0.05, 1.0, beats)
        self._rng = np.random.default_rng([seed, 2])
        self._pos = 0
        self.fs_hz = fs_hz

    def read(self, n: int) -> np.ndarray:
        """Next n samples as int16 ADC counts (centred), looping the trace when it ends."""
        x = render_looped(self._scene.render, self._scene.n_samples, self._pos, n)
        x = x + self._rng.standard_normal(x.size) * self._scene.noise
        self._pos += n
        return np.clip(np.round(x * self.ADC_COUNTS_PER_PULSE), -32768, 32767).astype(np.int16)
