"""Antenatal fetal heart rate traces built from physiology, for the CTG analysis tests.

The pulse interval wanders around the basal rate as a mean-reverting random process (the
slow, roughly 1/f variation of the fetal heart rate), with a faster small component for the
beat-to-beat jitter that survives the monitor's averaging. Its size follows the fetal
behavioural state (Nijhuis JG et al., Lancet 1982;1:1250-1253): in active sleep (2F) the
trace is wide-banded, short-term variation ~6-10 ms and minute ranges ~35-50 ms; in quiet
sleep (1F) it is narrow, ~3-5 ms and ~15-25 ms (the ranges reported for normal term fetuses
by Dawes et al. 1982, Br J Obstet Gynaecol 89:276-284, and Street et al. 1991, Am J Obstet
Gynecol 165:515-523). Accelerations are smooth rises of 15-25 bpm over 30-90 s; the rate is
rounded to 0.25 bpm like a monitor's output. Points are at t = 0.25, 0.50, ... s.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

FS = 4.0

# (stationary SD of the pulse interval in ms, its time constant in s) per state
STATES = {"active": (14.0, 8.0), "quiet": (7.0, 6.0), "flat": (4.0, 8.0)}
JITTER = (1.5, 0.6)  # ms, s


def _ou(n: int, tau_s: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Ornstein-Uhlenbeck samples at FS (stationary SD sd, time constant tau_s)."""
    a = np.exp(-1.0 / FS / tau_s)
    e = rng.standard_normal(n) * sd * np.sqrt(1.0 - a * a)
    e[0] = rng.standard_normal() * sd
    return lfilter([1.0], [1.0, -a], e)


def times(minutes: float) -> np.ndarray:
    return (np.arange(int(round(minutes * 60 * FS))) + 1) / FS


def trace(
    minutes: float,
    state: str = "active",
    basal_bpm: float = 140.0,
    seed: int = 0,
    accelerations: tuple[tuple[float, float, float], ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """(t_s, fhr_bpm); accelerations as (centre_s, amplitude_bpm, duration_s)."""
    rng = np.random.default_rng(seed)
    t = times(minutes)
    sd, tau = STATES[state]
    pi = 60000.0 / basal_bpm + _ou(t.size, tau, sd, rng) + _ou(t.size, JITTER[1], JITTER[0], rng)
    f = 60000.0 / pi
    for centre, amp, dur in accelerations:
        f = f + episode(t, centre, amp, dur)
    return t, np.round(f * 4.0) / 4.0


def episode(t: np.ndarray, centre_s: float, amp_bpm: float, duration_s: float) -> np.ndarray:
    """A smooth excursion (raised cosine) of the given height and total duration; negative
    amplitude for a deceleration. Its area is amp * duration / 2 (bpm s)."""
    x = (t - centre_s) / duration_s + 0.5
    inside = (x > 0) & (x < 1)
    return np.where(inside, amp_bpm * 0.5 * (1 - np.cos(2 * np.pi * np.clip(x, 0, 1))), 0.0)


def reactive(minutes: float = 60.0, seed: int = 0, basal_bpm: float = 140.0):
    """Active sleep with an acceleration every ~2.5 min (a healthy, reactive fetus)."""
    centres = np.arange(75.0, minutes * 60 - 60, 150.0)
    rng = np.random.default_rng(seed + 1000)
    acc = tuple((float(c), float(rng.uniform(18, 25)), float(rng.uniform(45, 80))) for c in centres)
    return trace(minutes, "active", basal_bpm, seed, acc)
