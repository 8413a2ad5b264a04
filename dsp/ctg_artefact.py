"""Artefact rejection for a 4 Hz fetal heart rate trace, before any CTG analysis.

A point rejected here becomes signal loss (NaN): it is never counted in an acceleration, a
deceleration, the baseline, the short-term variation or the variability, and the strip lifts
the pen over it. Every rejected point keeps its reason in a mask, so a report can say what
was lost to the probe (no value) and what was thrown away as implausible.

The rules, in order (constants and sources below):

1. **Range.** Values outside the CTG chart's 50-210 bpm are not fetal heart rates.
2. **Start-up.** A trace begins (and begins again after a minute or more without signal, a
   probe put back) at the first stable segment whose level the following minute confirms;
   what comes before it (the mother's pulse at 40-60 bpm while the probe is placed, a halved
   first estimate) is rejected.
3. **Jumps that do not persist** (Bernardes et al. 1991, the Porto system's rule): a point
   more than 25 bpm from the last accepted point is rejected, and so are the points after
   it, until a stable segment (5 successive points within 10 bpm of each other). A stable
   segment is the trace again: back at its level, or at a new level.
4. **Halving and doubling** (the counting errors of autocorrelation Doppler monitors, FIGO
   2015): a new level reached by a jump, away from the running trace (the median of the
   last 10 min), that lies at 3/2 or twice the running trace or the rate just before the
   jump (when that rate was on the running trace), or at half of it after a step between two
   successive points, is a miscount, not a change of rate. It is rejected until the trace comes back to its level, unless it holds for 10 min
   (no acceleration lasts that long: FIGO 2015), after which it is taken as the trace.
   A fall to half the rate across lost signal is kept: it may be a deceleration whose fall
   was not heard, and a bradycardia must never be hidden. A jump back to the running trace
   the last level change left is a return (the recovery from a prolonged deceleration),
   never a miscount.

Rejection never moves or fills a value: points are either kept as given or set to NaN.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dsp.ctg_reference import POINT_RATE_HZ

# -- constants and their sources -----------------------------------------------------------
# FIGO 2015 (Ayres-de-Campos D, Spong CY, Chandraharan E. FIGO consensus guidelines on
# intrapartum fetal monitoring: Cardiotocography. Int J Gynaecol Obstet 2015;131:13-24),
# "technical aspects": the FHR scale of the chart is 50-210 bpm. A value off the chart is
# not drawn and is not analysed.
VALID_RANGE_BPM = (50.0, 210.0)

# Bernardes J, Moura C, de Sa JP, Leite LP. The Porto system for automated
# cardiotocographic signal analysis. J Perinat Med 1991;19:61-65 (the rule as applied to
# the CTU-UHB records by Spilka J et al., Biomed Signal Process Control 2012;7:350-357):
# a difference of more than 25 bpm between successive samples is artefact until a stable
# segment, five adjacent samples differing by less than 10 bpm. perimon's FHR estimator
# tracks with the same 25 bpm per point (docs/fhr.md, step 7).
JUMP_BPM = 25.0
STABLE_POINTS = 5
STABLE_BPM = 10.0

# Halving and doubling: an autocorrelation monitor that locks on every other beat shows
# half the rate, one that counts both valve events of a beat (or three events per two
# beats) shows twice (3/2 of) it (FIGO 2015, "technical aspects": doubling of low rates,
# halving of high rates). The ratio is taken to within the stable-segment tolerance.
HARMONIC_UP = (1.5, 2.0)
HARMONIC_DOWN = (0.5,)
HARMONIC_TOLERANCE_BPM = STABLE_BPM
# The level a miscount is measured against: the median of the accepted points of the last
# 10 min (the FIGO 2015 baseline period), long enough that a deceleration of a few minutes
# does not become the reference its own recovery is compared with.
RUNNING_TRACE_S = 600.0
# A miscount that holds this long is taken as the trace: FIGO 2015 limits an acceleration
# to <10 min; a level held longer is a change of baseline, which the jump rule accepts.
HARMONIC_MAX_S = 600.0

# Start-up: the first stable segment must agree (within JUMP_BPM) with the median of the
# minute that follows it. A gap of a minute or more is a probe taken off and put back; the
# trace is acquired afresh after it.
ACQUIRE_CONFIRM_S = 60.0
REACQUIRE_GAP_S = 60.0

# Reason codes of the mask (uint8), and their names in JSON and reports.
OK = 0
LOST = 1  # no value from the monitor
OUT_OF_RANGE = 2
SPIKE = 3  # a jump that did not persist
HARMONIC = 4  # halving or doubling
START_UP = 5  # before the trace was acquired
REASON_NAMES = ("ok", "lost", "out_of_range", "spike", "halving_doubling", "start_up")


@dataclass(frozen=True)
class CleanedFhr:
    """A trace after artefact rejection: `fhr_bpm` is the input with rejected points set to
    NaN; `reason[i]` says why point i is missing (OK where it is kept)."""

    fhr_bpm: NDArray[np.float64]
    reason: NDArray[np.uint8]

    @property
    def signal_loss_pct(self) -> float:
        """Share of points without a usable value (lost or rejected), in %."""
        n = self.reason.size
        return 100.0 * float(np.count_nonzero(self.reason)) / n if n else 100.0

    @property
    def artefact_pct(self) -> float:
        """Share of points that had a value but were rejected as artefact, in %."""
        n = self.reason.size
        bad = np.count_nonzero(self.reason >= OUT_OF_RANGE)
        return 100.0 * float(bad) / n if n else 0.0

    def counts(self) -> dict[str, int]:
        """Number of points per reason name."""
        c = np.bincount(self.reason, minlength=len(REASON_NAMES))
        return {name: int(c[i]) for i, name in enumerate(REASON_NAMES)}


def reject_artefacts(fhr_bpm: ArrayLike) -> CleanedFhr:
    """Artefact rejection of a 4 Hz FHR trace (NaN = no value): see the module docstring."""
    f = np.array(fhr_bpm, dtype=np.float64)
    if f.ndim != 1:
        raise ValueError("fhr_bpm must be a 1-D array")
    reason = np.full(f.size, OK, dtype=np.uint8)
    finite = np.isfinite(f)
    reason[~finite] = LOST
    lo, hi = VALID_RANGE_BPM
    in_range = finite & (f >= lo) & (f <= hi)
    reason[finite & ~in_range] = OUT_OF_RANGE
    idx = np.flatnonzero(in_range)
    if idx.size:
        reason[idx] = _track(idx, f[idx])
    out = f.copy()
    out[reason != OK] = np.nan
    return CleanedFhr(out, reason)


def _stable_starts(idx: NDArray[np.intp], v: NDArray[np.float64]) -> NDArray[np.bool_]:
    """stable[k]: valid points k..k+4 are adjacent samples within STABLE_BPM of each other."""
    m = v.size
    out = np.zeros(m, dtype=np.bool_)
    k = STABLE_POINTS
    if m < k:
        return out
    w = np.lib.stride_tricks.sliding_window_view(v, k)
    adjacent = (idx[k - 1 :] - idx[: m - k + 1]) == k - 1
    out[: m - k + 1] = adjacent & (w.max(axis=1) - w.min(axis=1) <= STABLE_BPM)
    return out


def _track(idx: NDArray[np.intp], v: NDArray[np.float64]) -> NDArray[np.uint8]:
    """Reason codes for the in-range points (positions idx, values v), rules 2-4."""
    m = v.size
    code = np.full(m, START_UP, dtype=np.uint8)
    stable = _stable_starts(idx, v)
    # next_stable[k]: the first position >= k that starts a stable segment (m if none).
    pos = np.flatnonzero(stable)
    next_stable = np.full(m + 1, m, dtype=np.intp)
    if pos.size:
        nxt = np.searchsorted(pos, np.arange(m))
        next_stable[:m] = np.where(nxt < pos.size, pos[np.minimum(nxt, pos.size - 1)], m)
    fs = POINT_RATE_HZ
    reacquire = int(REACQUIRE_GAP_S * fs)
    confirm = int(ACQUIRE_CONFIRM_S * fs)
    window = int(RUNNING_TRACE_S * fs)
    harmonic_max = int(HARMONIC_MAX_S * fs)
    idx_l: list[int] = idx.tolist()
    v_l: list[float] = v.tolist()
    accepted = np.zeros(m, dtype=np.bool_)

    def running_trace(k: int) -> float:
        """Median of the accepted points in the RUNNING_TRACE_S before position k."""
        a = int(np.searchsorted(idx, idx_l[k] - window))
        sel = v[a:k][accepted[a:k]]
        if not sel.size:
            return v_l[last]
        h = sel.size // 2
        part = np.partition(sel, [h - 1, h] if sel.size > 1 else [h])
        return float(part[h]) if sel.size % 2 else float(0.5 * (part[h - 1] + part[h]))

    def acquire(k: int) -> int:
        """Position of the first confirmed stable segment at or after k (m if none)."""
        j = int(next_stable[k])
        while j < m:
            b = int(np.searchsorted(idx, idx_l[j] + confirm, side="right"))
            level = float(np.mean(v[j : j + STABLE_POINTS]))
            if abs(float(np.median(v[j:b])) - level) <= JUMP_BPM:
                return j
            j = int(next_stable[j + 1])
        return m

    # Break points: where a successive point jumps, or comes after a gap long enough to
    # acquire the trace afresh. Between them every point continues the one before it.
    breaks = np.flatnonzero((np.abs(np.diff(v)) > JUMP_BPM) | (np.diff(idx) >= reacquire)) + 1
    breaks_l = [*breaks.tolist(), m]
    k = acquire(0)
    last = k
    # The running trace as it was when the trace last jumped to a new level: coming back to
    # it is a return, not a miscount, however long the excursion (the recovery from a
    # prolonged deceleration; or the true rate after a miscount that was accepted).
    before = v_l[k] if k < m else 0.0
    while k < m:
        if k > last and idx_l[k] - idx_l[last] >= reacquire:
            j = acquire(k)  # points in between keep START_UP
            k = last = j
            continue
        if k == last or abs(v_l[k] - v_l[last]) <= JUMP_BPM:
            # Accept up to the next break point at once.
            b = breaks_l[bisect.bisect_right(breaks_l, k)]
            code[k:b] = OK
            accepted[k:b] = True
            last = b - 1
            k = b
            continue
        # A jump: the points up to the next stable segment did not persist.
        j = int(next_stable[k])
        code[k:j] = SPIKE
        if j >= m:
            break
        level = v_l[j]
        ref = running_trace(k)
        direct = j == k and idx_l[k] - idx_l[last] == 1
        if abs(level - v_l[last]) > JUMP_BPM and abs(level - ref) > JUMP_BPM:
            # Measured against the running trace, and against the rate just before the jump:
            # always for a direct step down to half of it; for a jump up, only when that
            # rate was on the running trace (a fetal rate found at 3/2 of the mother's pulse
            # is not a miscount of her pulse).
            on_trace = abs(v_l[last] - ref) <= JUMP_BPM
            refs = [ref, v_l[last]] if on_trace or level < v_l[last] else [ref]
            returning = abs(level - before) <= JUMP_BPM
            if not returning and any(_is_harmonic(level, r, direct) for r in refs):
                end = _harmonic_end(idx_l, v_l, next_stable, j, ref, v_l[last], reacquire)
                if idx_l[end - 1] - idx_l[j] < harmonic_max:
                    code[j:end] = HARMONIC
                    k = end
                    continue
        # Back at the trace's level, or a new level (Bernardes): accepted.
        if abs(level - v_l[last]) > JUMP_BPM and abs(level - ref) > JUMP_BPM:
            before = ref  # a new level, away from the running trace it leaves
        code[j] = OK
        accepted[j] = True
        last = k = j
    return code


def _is_harmonic(level: float, ref: float, direct: bool) -> bool:
    """Is `level` a multiple (above) or, after a direct step, a half (below) of `ref`?"""
    tol = HARMONIC_TOLERANCE_BPM
    if level > ref:
        return any(abs(level - r * ref) <= tol for r in HARMONIC_UP)
    return direct and any(abs(level - r * ref) <= tol for r in HARMONIC_DOWN)


def _harmonic_end(
    idx: list[int],
    v: list[float],
    next_stable: NDArray[np.intp],
    j: int,
    ref: float,
    last_value: float,
    reacquire: int,
) -> int:
    """End (exclusive) of a miscount starting at j: the next stable segment back at the
    rate it left (or at the running trace, if that rate was on it), a gap long enough to
    acquire the trace afresh, or the record's end."""
    m = len(v)
    k = j + 1
    while k < m:
        if idx[k] - idx[k - 1] >= reacquire:
            return k
        s = int(next_stable[k])
        if s >= m:
            return m
        if abs(v[s] - last_value) <= JUMP_BPM or (
            abs(v[s] - ref) <= JUMP_BPM and abs(last_value - ref) <= JUMP_BPM
        ):
            # Back: everything before the stable segment belongs to the miscount, unless a
            # long gap comes first.
            gaps = [i for i in range(k, s + 1) if idx[i] - idx[i - 1] >= reacquire]
            return gaps[0] if gaps else s
        k = s + 1
    return m
