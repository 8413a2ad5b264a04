"""The causal FHR rate tracker: which raw 4 Hz estimates continue the fetal rhythm.

The FHR does not jump by more than MAX_STEP_BPM between 0.25 s points. A raw estimate that
jumps further from the last accepted rate (an octave error or a switch to another source) is
replaced by an octave relative that continues the rhythm and is well supported by the
autocorrelation (a halving slip), or withheld until the new rate has persisted for
SWITCH_POINTS points; after TRACK_GAP_S without an accepted point the track is acquired
afresh. A weak periodicity (below MIN_ACF) is reported only where it continues the rhythm.

`RateTracker` is pure state with time passed in: it runs point by point over the estimates
of each batch, so streaming and batch give identical points (see docs/fhr.md, step 7).
"""

from __future__ import annotations

import math

import numpy as np

from dsp.arrays import Bools, Floats

MIN_ACF = 0.30  # periodicity below which there is no estimate (noise ACF ~0.2 peak)
MIN_ACF_TRACKED = 0.25  # ... unless it continues the tracked rhythm within CONSISTENT_BPM
MAX_STEP_BPM = 25.0  # largest plausible change between consecutive 0.25 s points
CONSISTENT_BPM = 10.0  # successive raw estimates this close belong to the same rhythm
SWITCH_POINTS = 8  # a jump is accepted once the new rate has persisted 2 s
ACQUIRE_POINTS = 2  # consistent points (within CONSISTENT_BPM) needed to start a track
TRACK_GAP_S = 5.0  # without an accepted point for this long the track is lost
ALT_FACTORS = (0.5, 2.0 / 3.0)  # sub-multiples of the period (halving corrections)
ALT_RATIO = 0.6  # an octave relative continuing the track needs this share of the peak


class RawEstimates:
    """Per-point raw estimates of one batch, as the tracker sees them.

    `alternatives(i)` gives the rates of the sub-multiples of point i's period (ALT_FACTORS)
    and their autocorrelation (NaN and -inf where there is none); the tracker asks for them
    only on a jump, so an estimator may compute them then (by overriding it).
    """

    __slots__ = ("bpm", "quality", "peak", "tracked_only", "alt_bpm", "alt_acf")

    def __init__(self, n: int) -> None:
        self.bpm: Floats = np.full(n, np.nan)  # NaN = no estimate
        self.quality: Floats = np.zeros(n)
        self.peak: Floats = np.zeros(n)  # autocorrelation at the period
        self.tracked_only: Bools = np.zeros(n, dtype=bool)  # weak: only on a live track
        self.alt_bpm: Floats = np.full((n, len(ALT_FACTORS)), np.nan)
        self.alt_acf: Floats = np.full((n, len(ALT_FACTORS)), -np.inf)

    def alternatives(self, i: int) -> tuple[Floats, Floats]:
        """(rates, autocorrelations) of the sub-multiples of point i's period."""
        return self.alt_bpm[i], self.alt_acf[i]


class RateTracker:
    """Causal beat-to-beat plausibility of the FHR (module docstring)."""

    __slots__ = ("_bpm", "_t_s", "_cand_bpm", "_cand_n")

    def __init__(self) -> None:
        self._bpm = math.nan  # last accepted rate
        self._t_s = -math.inf  # ... and its time
        self._cand_bpm = math.nan  # the latest raw rate: a challenger to the track
        self._cand_n = 0  # successive raw rates consistent with it

    def track(self, t_s: Floats, est: RawEstimates) -> tuple[Floats, Floats]:
        """(fhr_bpm, quality) of points at times t_s (in order, after those tracked before):
        the raw estimates, jumps withheld (NaN, quality halved) or corrected."""
        fhr = est.bpm.copy()
        qual = est.quality.copy()
        for i in range(t_s.size):
            r = float(fhr[i])
            if not math.isfinite(r):
                continue
            ti = float(t_s[i])
            live = ti - self._t_s <= TRACK_GAP_S
            if est.tracked_only[i]:
                # A weak periodicity is reported only where it continues the rhythm.
                if live and abs(r - self._bpm) <= CONSISTENT_BPM:
                    self._bpm, self._t_s = r, ti
                else:
                    fhr[i] = np.nan
                continue
            if abs(r - self._cand_bpm) <= CONSISTENT_BPM:  # False while there is none (NaN)
                self._cand_n += 1
            else:
                self._cand_n = 1
            self._cand_bpm = r
            if live and abs(r - self._bpm) <= MAX_STEP_BPM:
                accept = True
            elif live:
                # A jump: an octave relative that continues the rhythm and is well supported
                # by the autocorrelation is taken instead (a halving or doubling slip).
                alt, alt_acf = est.alternatives(i)
                support = alt_acf >= max(MIN_ACF, ALT_RATIO * est.peak[i])
                near = support & (np.abs(alt - self._bpm) <= MAX_STEP_BPM)
                if near.any():
                    j = int(np.argmax(np.where(near, alt_acf, -np.inf)))
                    fhr[i] = r = float(alt[j])
                    qual[i] *= min(1.0, alt_acf[j] / max(est.peak[i], 1e-9))
                    self._cand_n = 0  # the current rhythm is still there
                    accept = True
                else:
                    accept = self._cand_n >= SWITCH_POINTS
            else:
                accept = self._cand_n >= ACQUIRE_POINTS
            if accept:
                self._bpm, self._t_s = r, ti
            else:
                fhr[i] = np.nan
                qual[i] *= 0.5
        return fhr, qual
