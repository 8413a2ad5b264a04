"""Synthetic maternal photoplethysmogram (PPG) driven by a maternal heart rate trace.

Each maternal beat gives a pulse: a systolic wave ~0.15 s after the beat (pulse transit)
and a smaller diastolic (dicrotic) wave ~0.3 s later. Breathing modulates the baseline
(~0.25 Hz), slow drift and white sensor noise are added, and occasional arm movements add
large low-frequency artefacts lasting a few seconds.
"""

from __future__ import annotations

import numpy as np

from simulators.doppler import FS_TRACE_HZ, beat_times
from simulators.looping import render_looped


class _PpgScene:
    def __init__(
        self,
        mhr_bpm_4hz: np.ndarray,
        fs_hz: int,
        seed: int,
        noise: float,
        movements_per_10min: float,
    ) -> None:
        mhr = np.asarray(mhr_bpm_4hz, dtype=float)
        if mhr.ndim != 1 or mhr.size < 8 or not np.all(np.isfinite(mhr)):
            raise ValueError("mhr_bpm_4hz must be a finite 1-D trace of at least 2 s")
        rng = np.random.default_rng(seed)
        self.fs = int(fs_hz)
        self.n_samples = int(round(mhr.size / FS_TRACE_HZ * fs_hz))
        self.beats = beat_times(mhr, rng, 0.005)
        self.amp = rng.lognormal(0.0, 0.08, self.beats.size)
        self.resp_hz = rng.uniform(0.2, 0.33)
        self.noise = noise
        n_mov = rng.poisson(movements_per_10min * self.n_samples / fs_hz / 600.0)
        self.mov_t = rng.uniform(0, self.n_samples / fs_hz, n_mov)
        self.mov_d = rng.uniform(2.0, 8.0, n_mov)
        self.mov_a = rng.uniform(1.0, 4.0, n_mov)
        self.mov_f = rng.uniform(0.3, 2.0, n_mov)

    def render(self, n0: int, n1: int) -> np.ndarray:
        t = np.arange(n0, n1) / self.fs
        out = 0.3 * np.sin(2 * np.pi * self.resp_hz * t) + 0.2 * np.sin(2 * np.pi * 0.013 * t)
        lo = np.searchsorted(self.beats, t[0] - 2.0) if t.size else 0
        hi = np.searchsorted(self.beats, t[-1] + 0.5) if t.size else 0
        for b, a in zip(self.beats[lo:hi], self.amp[lo:hi], strict=True):
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
    mhr_bpm_4hz: np.ndarray,
    fs_hz: int = 50,
    seed: int = 0,
    noise: float = 0.05,
    movements_per_10min: float = 1.0,
) -> np.ndarray:
    """PPG (arbitrary units, pulse amplitude ~1) for a whole 4 Hz maternal rate trace."""
    scene = _PpgScene(mhr_bpm_4hz, fs_hz, seed, noise, movements_per_10min)
    rng = np.random.default_rng([seed, 1])
    x = scene.render(0, scene.n_samples)
    return x + rng.standard_normal(x.size) * noise


class PpgSignal:
    """Endless PPG source for the firmware simulation (loops the trace)."""

    ADC_COUNTS_PER_PULSE = 4000.0

    def __init__(self, mhr_bpm_4hz: np.ndarray, fs_hz: int = 50, seed: int = 0) -> None:
        self._scene = _PpgScene(mhr_bpm_4hz, fs_hz, seed, 0.05, 1.0)
        self._rng = np.random.default_rng([seed, 2])
        self._pos = 0
        self.fs_hz = fs_hz

    def read(self, n: int) -> np.ndarray:
        """Next n samples as int16 ADC counts (centred), looping the trace when it ends."""
        x = render_looped(self._scene.render, self._scene.n_samples, self._pos, n)
        x = x + self._rng.standard_normal(x.size) * self._scene.noise
        self._pos += n
        return np.clip(np.round(x * self.ADC_COUNTS_PER_PULSE), -32768, 32767).astype(np.int16)
