"""The classic Doppler FHR chain, kept as the benchmark's reference method.

Band-pass 25-600 Hz, full-wave rectification and low-pass envelope, autocorrelation over a
3.75 s window, strongest peak in 50-240 bpm (as in Valderrama & Clifford, Physiol Meas
2019, without their harmonic guard, and without movement or maternal checks). A point is
reported when the normalised peak reaches 0.3.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import signal

from dsp.fhr import FhrPoints

ENVELOPE_FS_HZ = 200.0
WINDOW_S = 3.75
MIN_PEAK = 0.3


def fhr_classic(audio: ArrayLike, fs_hz: float) -> FhrPoints:
    """4 Hz FHR points by the classic envelope-autocorrelation method (batch only)."""
    x = np.nan_to_num(np.asarray(audio, dtype=float))
    fs = float(fs_hz)
    n_pts = int(np.floor(x.size / fs * 4 + 1e-9))
    t = np.arange(1, n_pts + 1) / 4.0
    fhr = np.full(n_pts, np.nan)
    q = np.zeros(n_pts)
    if n_pts == 0:
        return FhrPoints(t, fhr, q, np.zeros(0, dtype=bool))
    sos = signal.butter(4, [25.0, min(600.0, 0.45 * fs)], "bandpass", fs=fs, output="sos")
    env = np.abs(signal.sosfiltfilt(sos, x))
    dec = max(1, int(round(fs / ENVELOPE_FS_HZ)))
    efs = fs / dec
    lp = signal.butter(4, 25.0, fs=fs, output="sos")
    env = signal.sosfiltfilt(lp, env)[::dec]
    half = int(WINDOW_S / 2 * efs)
    lmin, lmax = int(60 / 240 * efs), int(np.ceil(60 / 50 * efs))
    for i, tt in enumerate(t):
        c = int(tt * efs)
        seg = env[max(0, c - half) : c + half]
        if seg.size < 2.5 * efs:
            continue
        seg = seg - seg.mean()
        e0 = np.dot(seg, seg)
        if e0 <= 0:
            continue
        r = np.correlate(seg, seg, "full")[seg.size - 1 : seg.size + lmax + 1] / e0
        k = lmin + int(np.argmax(r[lmin : lmax + 1]))
        if r[k] >= MIN_PEAK:
            fhr[i] = 60.0 * efs / k
            q[i] = float(np.clip(r[k], 0, 1))
    return FhrPoints(t, fhr, q, np.zeros(n_pts, dtype=bool))
