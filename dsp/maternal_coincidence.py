"""Whether an FHR point may be the mother's pulse: the coincidence check.

A point within MATERNAL_TOLERANCE_BPM of her rate is withheld and flagged `maternal` (the
manufacturers' cross-channel coincidence check), unless the trace reached her rate
continuously from a clearly different rate and has not stayed there for CROSSING_S (a fetal
deceleration or acceleration passing through the maternal rate). With her PPG's beats, a
window estimated on the envelopes with her beat-locked pulses cancelled (dsp/maternal_lock.py)
is also withheld when it hears her (a band periodic at her beat interval that loses most of
that periodicity to the cancellation) and its rate is not clearly something else. With no
maternal input at all, no point's quality exceeds NO_MATERNAL_MAX_QUALITY. Once there is a
maternal channel, a point is checked only against evidence for that point, never on the
strength of what the channel gave before: a point with neither her rate within
MATERNAL_MATCH_S nor her beats over its window (her finger off the PPG, a PPG with no pulse,
samples lost) is unchecked, and withheld: null, quality 0, not `maternal`. See docs/fhr.md,
step 8.

A point waits until the maternal channel has caught up with it (her beats covered its
window, or her rate stream has delivered a point, with or without a rate, at or after it),
or until the Doppler is MATERNAL_MISSING_S past its window with no maternal data for it (the
channel is missing), never merely because audio arrived first.

`MaternalCoincidence` holds the maternal channel (rate points and beats) and the points that
wait for it; it is pure state with time passed in, fed by `dsp.fhr.FhrStream`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from dsp.arrays import Bools, Floats, Ints
from dsp.fhr_tracker import MIN_ACF, MIN_ACF_TRACKED, TRACK_GAP_S
from dsp.mhr import MHR_RANGE_BPM as MATERNAL_RANGE_BPM

# Coincidence with the maternal rate: within 5 bpm (the ambiguity criterion of Pinto et
# al., BMC Pregnancy Childbirth 2015;15:301).
MATERNAL_TOLERANCE_BPM = 5.0
# A trace that reached the maternal rate continuously (steps <= CROSSING_STEP_BPM, no gap
# over TRACK_GAP_S) from a clearly different rate (> 2x tolerance for >= 1 s) is a fetal rate
# passing through the maternal one, and is shown while the coincidence lasts at most
# CROSSING_S: twice the 15 s minimum duration of a FIGO (2015) deceleration, so that a
# deceleration or acceleration passing through the maternal rate is shown while a trace
# that stays on it (a switch to the maternal signal can be seamless: SOGC guideline on
# maternal heart rate artefact, J Obstet Gynaecol Can 2022) is not. A judgement, not fitted.
CROSSING_S = 30.0
DISTINCT_POINTS = 4  # 1 s of clearly different rate
# Largest step between 0.25 s points within such a run: 20 bpm/s, faster than the FHR
# falls even in abrupt (variable) decelerations (>= 15 bpm in < 30 s, FIGO 2015: a few
# bpm/s) plus estimate noise. The tracker's MAX_STEP_BPM is far looser; used here, it let a
# fading fetal signal hand over "continuously" to the maternal vessel (see docs/fhr.md).
CROSSING_STEP_BPM = 5.0
MATERNAL_WAIT_S = 5.0  # how long the cancellation waits for her next beat (dsp/fhr.py)
# Her rate "at" a point: the nearest maternal rate point within 2 s (her rate moves little in
# 2 s; the PPG's rate points are 0.25 s apart, its beats up to 1.5 s at 40 bpm).
MATERNAL_MATCH_S = 2.0
# A point waits for the maternal channel until the Doppler is this far past its window: then
# her channel is missing for it (PPG frames no longer arriving). Not less than the monitor's
# resend store over BLE, about 20 s (README, docs/firmware.md): after an outage the device
# can resend all the Doppler it kept before the PPG (it serves one requested range at a
# time: firmware/lib/link.py), and the outage's points must wait for her PPG, not be passed
# unchecked. Judgement.
MATERNAL_MISSING_S = 30.0
# With the PPG's beats (dsp/maternal_lock.py): a window is estimated on the envelopes with
# the mother's beat-locked pulses cancelled when at least 90% of its frames were; the
# mother is "heard" in it when a band's periodicity at her beat interval (envelopes
# smoothed over 20 ms: beat jitter) loses more than half its autocorrelation to the
# cancellation. Her own pulses lose it; a fetal heart drifting against her beats keeps it,
# but that does not release a rate near hers (`release`).
MIN_COVERED = 0.9
LOCK_SMOOTH_S = 0.02
LOCK_REMOVED = 0.5
LOCKED_MIN_QUALITY = 0.5
# Without any maternal input, the physics checks cannot prove that a periodic pulse is not a
# maternal vessel: such a rate is shown, but never with a quality above this.
NO_MATERNAL_MAX_QUALITY = 0.6
# Rows of the band envelopes the lock check looks at: fetal, low, high (not the broadband
# level, row 1).
_LOCK_BANDS = (0, 2, 3)
_POINT_BLOCK = 256  # points whose lock check is computed together


def maternal_coincidence(
    t_s: ArrayLike,
    fhr_bpm: ArrayLike,
    mhr_t_s: ArrayLike,
    mhr_bpm: ArrayLike,
    tolerance_bpm: float = MATERNAL_TOLERANCE_BPM,
) -> Bools:
    """True where the FHR estimate is within tolerance of the maternal rate at that time."""
    return _coincidences(t_s, fhr_bpm, mhr_t_s, mhr_bpm, (tolerance_bpm,))[0]


def _coincidences(
    t_s: ArrayLike,
    fhr_bpm: ArrayLike,
    mhr_t_s: ArrayLike,
    mhr_bpm: ArrayLike,
    tolerances_bpm: tuple[float, ...],
) -> list[Bools]:
    """`maternal_coincidence` for each tolerance (the maternal rate found once)."""
    t, fhr = np.asarray(t_s, float), np.asarray(fhr_bpm, float)
    mt, mb = np.asarray(mhr_t_s, float), np.asarray(mhr_bpm, float)
    ok = np.isfinite(mt) & np.isfinite(mb)
    mt, mb = mt[ok], mb[ok]
    outs = [np.zeros(t.size, dtype=bool) for _ in tolerances_bpm]
    if mt.size == 0 or t.size == 0:
        return outs
    order = np.argsort(mt)
    mt, mb = mt[order], mb[order]
    # Maternal rate at each point: the two maternal estimates either side of it, within
    # MATERNAL_MATCH_S (the maternal rate moves too).
    idx = (
        np.clip(np.searchsorted(mt, t), 1, mt.size - 1)
        if mt.size > 1
        else np.zeros(t.size, dtype=int)
    )
    for shift in (-1, 0):
        j = np.clip(idx + shift, 0, mt.size - 1)
        near = np.abs(mt[j] - t) <= MATERNAL_MATCH_S
        diff = np.abs(fhr - mb[j])
        for out, tolerance in zip(outs, tolerances_bpm, strict=True):
            out |= near & (diff <= tolerance)
    return outs


def covered_windows(covered: Floats, first_frame: int, lo: Ints, hi: Ints) -> Bools:
    """Windows of frames [lo, hi) that (nearly all) had the mother's pulses cancelled;
    covered[f - first_frame] is 1 where frame f was."""
    c = np.concatenate([[0.0], np.cumsum(covered)])
    a = np.clip(lo - first_frame, 0, covered.size)
    b = np.clip(hi - first_frame, 0, covered.size)
    result: Bools = (c[b] - c[a]) >= MIN_COVERED * np.maximum(hi - lo, 1)
    return result


class MaternalCoincidence:
    """The maternal channel, the points waiting for it, and the checks (module docstring).

    `window_s` is the estimator's analysis window and `env_fs_hz` its envelope frame rate;
    `expected`: the recording has a maternal channel, fed or not yet.
    """

    __slots__ = (
        "_env_fs",
        "_window_s",
        "seen",
        "_rate_upto",
        "_mhr_t",
        "_mhr_bpm",
        "_beat_t",
        "_pending",
        "_run_t",
        "_run_bpm",
        "_run_distinct",
        "_run_n_off",
        "_run_since",
    )

    def __init__(self, env_fs_hz: float, window_s: float, expected: bool = False) -> None:
        self._env_fs = env_fs_hz
        self._window_s = window_s
        # There is a maternal channel: some of it was fed, or it is `expected` (a monitor
        # with a PPG, whose points wait for it even before any of it has come).
        self.seen = expected
        # How far the maternal rate stream has been delivered (its last point, with or
        # without a rate; the last beat's rate point for beats alone), s.
        self._rate_upto = -math.inf
        self._mhr_t: Floats = np.zeros(0)
        self._mhr_bpm: Floats = np.zeros(0)
        self._beat_t: Floats = np.zeros(0)  # the mother's beats (PPG fiducials, s)
        # Points waiting for the maternal channel: (t_s, fhr_bpm, quality, covered, locked)
        # per batch, covered and locked as in `release`.
        self._pending: list[tuple[Floats, Floats, Floats, Bools, Bools]] = []
        # Coincidence check (causal): the continuous run of the trace and its history.
        self._run_t = -math.inf  # time and rate of the last finite point before the check
        self._run_bpm = math.nan
        self._run_distinct = 0  # longest stretch of points clearly off the maternal rate
        self._run_n_off = 0  # current stretch
        self._run_since = math.nan  # start of the current coincidence

    def feed_rate(self, t_s: Floats, mhr_bpm: Floats, now_s: float) -> None:
        """Maternal rate points known so far, in time order, NaN where the PPG gave none (they
        tell how far her channel has been delivered); now_s: the end of the audio fed so far."""
        self.seen = True
        if t_s.size:
            self._rate_upto = max(self._rate_upto, float(np.max(t_s)))
        self._mhr_t = np.concatenate([self._mhr_t, t_s])
        self._mhr_bpm = np.concatenate([self._mhr_bpm, mhr_bpm])
        # kept while a point they may check can still be waiting (`release`)
        oldest = now_s - self._window_s - MATERNAL_MISSING_S - 2 * MATERNAL_MATCH_S
        keep = self._mhr_t >= oldest
        if not keep.all():
            self._mhr_t, self._mhr_bpm = self._mhr_t[keep], self._mhr_bpm[keep]

    def feed_beats(self, t_s: Floats, now_s: float) -> None:
        """The mother's beats known so far (finite, in order); her rate comes from them."""
        self._beat_t = np.concatenate([self._beat_t, t_s])
        # The maternal rate at each beat interval's midpoint, for the coincidence check.
        b = self._beat_t[-(t_s.size + 1) :]
        if b.size >= 2:
            rr = np.diff(b)
            ok = (rr >= 60.0 / MATERNAL_RANGE_BPM[1]) & (rr <= 60.0 / MATERNAL_RANGE_BPM[0])
            self.feed_rate(((b[:-1] + b[1:]) / 2)[ok], 60.0 / rr[ok], now_s)
        keep = self._beat_t >= now_s - 2 * MATERNAL_WAIT_S - 2 * self._window_s
        self._beat_t = self._beat_t[keep] if not keep.all() else self._beat_t

    def locked(
        self,
        t_s: Floats,
        lo: Ints,
        hi: Ints,
        covered: Bools,
        fhr_bpm: Floats,
        quality: Floats,
        raw: Floats,
        cancelled: Floats,
        first_frame: int,
    ) -> Bools:
        """Covered points that the mother's pulses may have made: the window hears her (a
        band envelope periodic at her beat interval, autocorrelation >= MIN_ACF, that loses
        more than half of that periodicity when her beat-locked pulses are cancelled) and
        its rate is not clearly something else: no rate, a rate within the coincidence
        tolerance (5 bpm) of her rate or of twice or half of it (a doubled or halved vessel
        pulse), or a weak one (quality < LOCKED_MIN_QUALITY: what is left of her pulses after
        an imperfect cancellation).

        Point i's window is frames [lo[i], hi[i]); raw and cancelled are the band envelopes
        (rows: fetal, broadband, low, high) as heard and with her pulses cancelled, column
        f - first_frame holding frame f.
        """
        heard = np.zeros(t_s.size, dtype=bool)
        if not covered.any() or self._beat_t.size < 3:
            return heard
        rr = np.diff(self._beat_t)
        mid = (self._beat_t[:-1] + self._beat_t[1:]) / 2
        j = np.clip(np.searchsorted(mid, t_s), 0, mid.size - 1)
        m_bpm = 60.0 / rr[j]
        ratio = fhr_bpm / m_bpm
        tol = MATERNAL_TOLERANCE_BPM / m_bpm
        harmonic = np.any([np.abs(ratio - f) <= tol for f in (0.5, 1.0, 2.0)], axis=0)
        ask = covered & (~np.isfinite(fhr_bpm) | (quality < LOCKED_MIN_QUALITY) | harmonic)
        i = np.flatnonzero(ask)
        if not i.size:
            return heard
        # Her beat interval at each point: the median of those whose midpoints lie within
        # the window +-1 s (candidates found in the sorted midpoints, with 1 s to spare).
        span = self._window_s / 2 + 1.0
        first = np.searchsorted(mid, t_s[i] - (span + 1.0))
        last = np.searchsorted(mid, t_s[i] + (span + 1.0), side="right")
        cand = first[:, None] + np.arange(max(int((last - first).max()), 1))
        near = cand < last[:, None]
        cand = np.minimum(cand, mid.size - 1)
        near &= np.abs(mid[cand] - t_s[i, None]) <= span
        n_near = near.sum(axis=1)
        srt = np.sort(np.where(near, rr[cand], np.inf), axis=1)
        r = np.arange(i.size)
        median = (srt[r, np.maximum(n_near - 1, 0) // 2] + srt[r, n_near // 2]) / 2
        lag = np.rint(np.where(n_near > 0, median, 0.0) * self._env_fs).astype(np.intp)
        a, b = lo[i] - first_frame, hi[i] - first_frame
        ok = (n_near > 0) & (lag >= 2) & (b - a >= 2 * lag)
        i, lag, a, b = i[ok], lag[ok], a[ok], b[ok]
        if not i.size:
            return heard
        # Autocorrelation at her beat interval of each band as heard and with her pulses
        # cancelled, per point (columns), in blocks of points (bounded memory).
        k = max(1, int(round(LOCK_SMOOTH_S * self._env_fs)))
        acf = np.zeros((2 * len(_LOCK_BANDS), i.size))
        for p in range(0, i.size, _POINT_BLOCK):
            blk = slice(p, p + _POINT_BLOCK)
            acf[:, blk] = _band_acfs(raw, cancelled, a[blk], b[blk], lag[blk], k)
        acf_raw, acf_can = acf[: len(_LOCK_BANDS)], acf[len(_LOCK_BANDS) :]
        loses = (acf_raw >= MIN_ACF) & (acf_can < LOCK_REMOVED * acf_raw)
        heard[i] = loses.any(axis=0)
        # A rate at her rhythm is shown only if that rhythm was in the Doppler before the
        # cancellation and survived it, not if the cancellation made it (the fetal band).
        raw0, can0 = acf_raw[0], acf_can[0]
        kept = (raw0 >= MIN_ACF_TRACKED) & (can0 >= LOCK_REMOVED * raw0)
        heard[i] |= np.isfinite(fhr_bpm[i]) & harmonic[i] & ~kept
        return heard

    def release(
        self,
        t_s: Floats,
        fhr_bpm: Floats,
        quality: Floats,
        covered: Bools,
        locked: Bools,
        now_s: float,
        final: bool,
    ) -> tuple[Floats, Floats, Floats, Bools, Bools]:
        """(t_s, fhr_bpm, quality, maternal, unchecked) of the points whose maternal checks
        can run now.

        New points (t_s, fhr_bpm, quality; covered: estimated with the mother's pulses
        cancelled; locked: `locked` for them) join those waiting for the maternal channel,
        and are released in order once decided (module docstring; now_s: the end of the audio
        fed so far); `final` releases all. Points that may be hers get no rate, quality 0 and
        maternal True; unchecked points get no rate, quality 0 and maternal False.
        """
        if not self.seen:
            # No maternal input at all: only the physics checks ran, and any rate may still
            # be the mother's (a vessel can pulse at a fetal-looking rate and width).
            q = np.minimum(quality, NO_MATERNAL_MAX_QUALITY)
            none = np.zeros(t_s.size, dtype=bool)
            return t_s, fhr_bpm, q, none, none.copy()
        if t_s.size:
            self._pending.append((t_s, fhr_bpm, quality, covered, locked))
        if not self._pending:
            none = np.zeros(t_s.size, dtype=bool)
            return t_s, fhr_bpm, quality, none, none.copy()
        t, fhr, qual, cov, lock = (np.concatenate(col) for col in zip(*self._pending, strict=True))
        # The maternal rate points around these points (the PPG's rate points and those of
        # her beats are fed as each is known, so not in one time order).
        around = (self._mhr_t >= t[0] - 2 * MATERNAL_MATCH_S) & (self._mhr_t <= t[-1] + 3.0)
        mt, mb = self._mhr_t[around], self._mhr_bpm[around]
        # within tolerance; a maternal rate known within MATERNAL_MATCH_S; within twice
        # the tolerance
        tolerances = (MATERNAL_TOLERANCE_BPM, np.inf, 2 * MATERNAL_TOLERANCE_BPM)
        near, known_rate, close = _coincidences(t, fhr, mt, mb, tolerances)
        if final:
            n = t.size
        else:
            upto = self._rate_upto
            # Her beats were over the window (the lock check ran), her rate stream has
            # reached the point (with or without her rate near it: a point unchecked then
            # is withheld, not held back for a rate just after it), or her channel is
            # missing.
            decided = cov | (t <= upto) | (t <= now_s - self._window_s / 2 - MATERNAL_MISSING_S)
            n = int(np.argmin(decided)) if not decided.all() else decided.size
        rest = (t[n:], fhr[n:], qual[n:], cov[n:], lock[n:])
        self._pending = [rest] if n < t.size else []
        t, fhr, qual, covered, locked = t[:n], fhr[:n], qual[:n], cov[:n], lock[:n]
        near, known_rate, close = near[:n], known_rate[:n], close[:n]
        if not t.size:
            return t, fhr, qual, np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
        # A coincident rate is withheld unless it is a fetal rate passing through the
        # mother's (_coincidence_run), with or without her beats: they can show that a rate
        # is hers, never that it is not. Their evidence of a fetal heart drifting against her
        # (its rhythm surviving the cancellation) rests on a template of her previous beats,
        # and a fetal pulse within a few bpm of her rate that fades out (the probe slipping
        # off the fetus onto her vessel) leaves itself in that template: what the
        # cancellation leaves is then periodic at her interval, and her vessel's rate was
        # shown for 5 s at quality 0.6-0.8 (benchmarks/bench_fhr.py, docs/fhr.md step 8).
        mat = self._coincidence_run(t, fhr, near, known_rate & ~close)
        # With the PPG also: a rate that her beat-locked pulses may have made (her harmonics
        # and weak rates included) is withheld; a window that hears only her is reported as
        # maternal (the nurse and the mother are told to move the probe), never as a rate.
        mat |= covered & locked
        # Neither her rate nor her beats for the point: nothing shows that it is not hers.
        unchecked = ~covered & ~known_rate
        gone = mat | unchecked
        return t, np.where(gone, np.nan, fhr), np.where(gone, 0.0, qual), mat, unchecked

    def _coincidence_run(self, t: Floats, fhr: Floats, near: Bools, far: Bools) -> Bools:
        """Which points near the maternal rate are withheld: all of them, except where the
        trace came continuously from a clearly different rate and has coincided for at
        most CROSSING_S (a fetal rate passing through the maternal one)."""
        withhold = np.zeros(t.size, dtype=bool)
        for i in range(t.size):
            r, ti = float(fhr[i]), float(t[i])
            if not math.isfinite(r):
                continue
            if ti - self._run_t > TRACK_GAP_S or abs(r - self._run_bpm) > CROSSING_STEP_BPM:
                self._run_distinct = self._run_n_off = 0  # a new run: no history
                self._run_since = math.nan
            self._run_t, self._run_bpm = ti, r
            if far[i]:
                self._run_n_off += 1
                self._run_distinct = max(self._run_distinct, self._run_n_off)
                self._run_since = math.nan
                continue
            self._run_n_off = 0
            if near[i]:
                if not math.isfinite(self._run_since):
                    self._run_since = ti
                crossing = self._run_distinct >= DISTINCT_POINTS
                withhold[i] = not crossing or ti - self._run_since > CROSSING_S
        return withhold


def _band_acfs(raw: Floats, cancelled: Floats, a: Ints, b: Ints, lags: Ints, k: int) -> Floats:
    """The autocorrelation (`_acf_near_rows`) over the windows of columns [a, b) at their
    lags, after a k-column box smoothing, of the _LOCK_BANDS rows of raw, then of cancelled:
    (band, window)."""
    box = np.ones(k) / k
    a0, b0 = int(a.min()), int(b.max())
    bands = list(_LOCK_BANDS)
    rows = np.concatenate([raw[bands, a0:b0], cancelled[bands, a0:b0]])
    smooth = np.stack([np.convolve(row, box, "valid") for row in rows])
    width = b - a - (k - 1)  # smoothed ("valid") columns per window
    out = np.zeros((rows.shape[0], a.size))
    for w in np.unique(width):
        sel = np.flatnonzero(width == w)
        x = smooth[:, (a[sel] - a0)[:, None] + np.arange(w)]  # (band, window, column)
        acf = _acf_near_rows(x.reshape(-1, w), np.tile(lags[sel], rows.shape[0]))
        out[:, sel] = acf.reshape(rows.shape[0], sel.size)
    return out


def _acf_near_rows(x: Floats, lags: Ints) -> Floats:
    """Normalised autocorrelation of each row of x at its lag +-2 (beat jitter), the
    highest; 0 for a flat row or one no longer than its lag + 2. Rows of one lag at a time,
    each product a dot product of the row's own samples."""
    x = x - x.mean(axis=1, keepdims=True)
    n = x.shape[1]
    e0 = np.vecdot(x, x)
    best = np.full(x.shape[0], -np.inf)
    for lag in np.unique(lags):
        if n <= lag + 2:
            continue
        rows = np.flatnonzero(lags == lag)
        xr = x[rows]
        for d in (-2, -1, 0, 1, 2):
            shift = int(lag) + d
            best[rows] = np.maximum(best[rows], np.vecdot(xr[:, : n - shift], xr[:, shift:]))
    ok = (e0 > 0) & (n > lags + 2)
    result: Floats = np.where(ok, best / np.where(ok, e0, 1.0), 0.0)
    return result
