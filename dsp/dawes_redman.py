"""Dawes-Redman analysis of an antenatal fetal heart rate trace (4 Hz, NaN = no value).

The Oxford (Dawes-Redman) analysis, as computerised CTG systems run it before labour: the
trace is averaged into 1/16-min epochs; a baseline is fitted; accelerations, decelerations
(sized in lost beats), short-term variation (STV) and episodes of high and low variation are
measured; the criteria of normality are checked at 10 min and every 2 min after, up to
60 min. The answer is "criteria met at N min" or, at 60 min, the list of criteria not met.
A trace with too much signal loss gets no answer (null), never "met".

Artefacts are rejected first (dsp/ctg_artefact.py, the same rule as the FIGO analysis).

Sources (cited by tag next to each constant):
[P2002] Pardey J, Moulden M, Redman CWG. A computer system for the numerical analysis of
    nonstress tests. Am J Obstet Gynecol 2002;186:1095-1103.
[D1991] Dawes GS, Moulden M, Redman CWG. System 8000: computerized antenatal FHR analysis.
    J Perinat Med 1991;19:47-51.
[D1992] Dawes GS, Moulden M, Redman CWG. Short-term fetal heart rate variation,
    decelerations, and umbilical flow velocity waveforms before labor. Obstet Gynecol
    1992;80:673-678.
[D1982] Dawes GS, Houghton CRS, Redman CWG, Visser GHA. Pattern of the normal human fetal
    heart rate. Br J Obstet Gynaecol 1982;89:276-284; and Dawes GS, Houghton CRS, Redman CWG.
    Baseline in human fetal heart-rate records. Br J Obstet Gynaecol 1982;89:270-275.
[S1991] Street P, Dawes GS, Moulden M, Redman CWG. Short-term variation in abnormal
    antenatal fetal heart rate records. Am J Obstet Gynecol 1991;165:515-523.
[TEAM3] Huntleigh Healthcare, Sonicaid Team 3 series instructions for use, 11.3 "The
    Dawes-Redman criteria" and 11.4 "Dawes-Redman analysis" (the criteria list as the
    monitor applies it).
[FIGO] Ayres-de-Campos D et al. FIGO consensus guidelines on intrapartum fetal
    monitoring: Cardiotocography. Int J Gynaecol Obstet 2015;131:13-24.

What this is not: the commercial implementation. Its gestation-specific centile tables
(for the high-variation episode and for variability in high episodes) are not published;
the fixed thresholds of the original definitions are used instead (see docs/fhr.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dsp import ctg_reference as ref
from dsp.ctg_artefact import reject_artefacts

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

FS = ref.POINT_RATE_HZ

# -- epochs ---------------------------------------------------------------------------------
# [D1991, P2002]: pulse intervals are averaged over 1/16-min (3.75 s) epochs and every
# measure is taken on the epochs. At 4 Hz an epoch is 15 points; it carries a pulse interval
# when more than half of them have a rate (perimon's rule for 4 Hz input, as for the STV in
# dsp/ctg.py); otherwise it is signal loss.
EPOCH_S = ref.STV_EPOCH_S
EPOCH_POINTS = int(round(EPOCH_S * FS))
EPOCH_MIN_POINTS = EPOCH_POINTS // 2 + 1
EPOCHS_PER_MIN = 16
# Short gaps are bridged (linear) when finding accelerations and decelerations, as in the
# FIGO analysis (dsp/ctg.py bridges up to 10 s): up to 2 epochs (7.5 s).
BRIDGE_EPOCHS = 2

# -- evaluation -----------------------------------------------------------------------------
# [TEAM3 11.4]: the analysis is first made at 10 min and every 2 min thereafter, up to 60 min.
FIRST_EVALUATION_MIN = 10
EVALUATION_STEP_MIN = 2
LAST_EVALUATION_MIN = 60
# Signal loss (share of epochs without a pulse interval) above which the criteria are not
# evaluated and the result is null. The published criteria list [TEAM3, P2002] gives no
# figure; perimon sets 30%, stricter than the 50% of its FIGO analysis (ctg_reference), so
# that "met" never rests on a record that is one third gaps.
MAX_SIGNAL_LOSS_PCT = 30.0

# -- baseline -------------------------------------------------------------------------------
# [D1982, baseline]: the baseline follows the most frequent heart rate with excursions
# (accelerations, decelerations) excluded. perimon: start at the mode of the epoch rates
# (1 bpm bins, smoothed over 7), then twice a moving mean over BASELINE_SMOOTH_MIN of the
# epochs within 20, then 10 bpm (ctg_reference.BASELINE_EXCLUDE_BPM) of the current estimate.
BASELINE_SMOOTH_MIN = 5.0
BASELINE_EXCLUDE_BPM = ref.BASELINE_EXCLUDE_BPM

# -- accelerations and decelerations --------------------------------------------------------
# [D1991, P2002]: an acceleration is an excursion more than 10 bpm above the baseline lasting
# more than 15 s (the Oxford definition; FIGO's is 15 bpm).
ACCEL_MIN_BPM = 10.0
ACCEL_MIN_S = 15.0
# [D1991, D1992]: a deceleration is a fall more than 10 bpm below the baseline for more than
# 60 s, or more than 20 bpm for more than 30 s; its size is the area between the baseline
# and the trace, in beats ("lost beats").
DECEL_SHALLOW_BPM = 10.0
DECEL_SHALLOW_S = 60.0
DECEL_DEEP_BPM = 20.0
DECEL_DEEP_S = 30.0

# -- variation ------------------------------------------------------------------------------
# [D1991, S1991]: STV is the mean of the per-minute averages of the absolute differences
# between successive epoch pulse intervals, decelerations excluded. A minute counts when
# more than half of its 15 pairs are valid (perimon's rule).
STV_MIN_PAIRS = 8
# [D1982]: the minute range (long-term variation) is the range of the 16 epoch pulse
# intervals of a minute; an episode of high variation is at least 5 of 6 consecutive
# minutes with a range above 32 ms, of low variation at least 5 of 6 below 30 ms.
# Decelerations are excluded. A minute with fewer than half of its epochs is unknown.
# (Current monitors use gestation-specific centiles instead [TEAM3]; those tables are not
# published.)
HIGH_VARIATION_MS = 32.0
LOW_VARIATION_MS = 30.0
EPISODE_WINDOW_MIN = 6
EPISODE_MIN_IN_WINDOW = 5
MINUTE_MIN_EPOCHS = EPOCHS_PER_MIN // 2

# -- the criteria [TEAM3 11.3; P2002] -------------------------------------------------------
# 1. An episode of high variation.
# 2. No deceleration of more than 20 lost beats (more than 100 on records longer than
#    30 min).
# 3. Basal heart rate 116-160 bpm. (The monitor may accept a slightly lower or higher rate
#    after 30 min when all else is normal; by how much is not published, so perimon does
#    not relax it: a clinician judges.)
# 4. At least one fetal movement or three accelerations.
# 5. No sinusoidal rhythm.
# 6. STV of 3 ms or more ([S1991]: below 3 ms, metabolic acidaemia and intrauterine death
#    become likely).
# 7. Either an acceleration, or variability in high episodes above the 10th centile with
#    more than 20 fetal movements: the centile table is not published, so perimon requires
#    an acceleration.
# 8. No errors (signal loss) or deceleration at the end of the record.
DECEL_MAX_LOST_BEATS = 20.0
DECEL_MAX_LOST_BEATS_LONG = 100.0
DECEL_LONG_RECORD_MIN = 30.0
BASAL_HR_BPM = (116.0, 160.0)
MIN_ACCELERATIONS_WITHOUT_MOVEMENT = 3
STV_MIN_MS = ref.STV_MIN_NORMAL_MS
# "Errors at the end": more than half of the last minute without a pulse interval
# (perimon's reading of criterion 8).
END_WINDOW_MIN = 1
END_MAX_LOSS_FRACTION = 0.5

# Sinusoidal rhythm: the Oxford detector is not published in implementable detail; perimon
# uses the FIGO 2015 definition (ctg_reference.SINUSOIDAL_*: 3-5 cycles/min, 5-15 bpm, more
# than 30 min) on the epochs, in 10-min windows stepped by 1 min. It can fail a record only
# from 30 min on.
SINUSOIDAL_WINDOW_MIN = 10


@dataclass(frozen=True)
class DawesRedmanResult:
    """Outcome of the Dawes-Redman analysis.

    criteria_met: True (met at `time_to_met_min`), False (not met at 60 min), None (no
    answer: shorter than 10 min, stopped before 60 min without meeting them, or too much
    signal loss). `status` names which: "met", "not_met", "not_yet_met", "too_short",
    "signal_loss". The measures are those of the evaluation that decided: the one that met
    the criteria, else the last one made.
    """

    criteria_met: bool | None
    status: str
    time_to_met_min: int | None
    analysed_min: int
    basal_heart_rate_bpm: float | None
    stv_ms: float | None
    high_variation_min: int
    low_variation_min: int
    accelerations: int
    decelerations_lost_beats: tuple[float, ...]
    signal_loss_pct: float
    reasons_not_met: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (the CLI's `dawes_redman` object)."""

        def num(x: float | None, nd: int = 1) -> float | None:
            return None if x is None else round(float(x), nd)

        return {
            "criteria_met": self.criteria_met,
            "status": self.status,
            "time_to_met_min": self.time_to_met_min,
            "analysed_min": self.analysed_min,
            "basal_heart_rate_bpm": num(self.basal_heart_rate_bpm),
            "stv_ms": num(self.stv_ms, 2),
            "high_variation_min": self.high_variation_min,
            "low_variation_min": self.low_variation_min,
            "accelerations": self.accelerations,
            "decelerations_lost_beats": [round(x, 1) for x in self.decelerations_lost_beats],
            "signal_loss_pct": num(self.signal_loss_pct),
            "reasons_not_met": list(self.reasons_not_met),
        }


@dataclass(frozen=True)
class _Evaluation:
    minutes: int
    met: bool
    basal_bpm: float | None
    stv_ms: float | None
    high_min: int
    low_min: int
    accelerations: int
    lost_beats: tuple[float, ...]
    loss_pct: float
    reasons: tuple[str, ...]


def dawes_redman(
    t_s: ArrayLike, fhr_bpm: ArrayLike, movement_times_s: ArrayLike | None = None
) -> DawesRedmanResult:
    """Dawes-Redman analysis of a 4 Hz FHR trace starting at its first point.

    `movement_times_s`: fetal movements felt by the mother (s, on `t_s`), if the device
    records them; without them criterion 4 needs three accelerations.
    """
    t = np.asarray(t_s, dtype=np.float64)
    raw = np.asarray(fhr_bpm, dtype=np.float64)
    if t.ndim != 1 or raw.shape != t.shape:
        raise ValueError("t_s and fhr_bpm must be 1-D arrays of equal length")
    if t.size and not np.all(np.isfinite(t)):
        raise ValueError("t_s must be finite")
    if t.size > 1 and np.any(np.abs(np.diff(t) - 1 / FS) > 0.01):
        raise ValueError("the trace must be sampled at 4 Hz without gaps in t_s")
    moves = (
        np.zeros(0)
        if movement_times_s is None
        else np.asarray(movement_times_s, dtype=np.float64).ravel()
    )
    t0 = float(t[0]) if t.size else 0.0
    pi_ms = _epoch_intervals(reject_artefacts(raw).fhr_bpm)
    minutes = [
        m
        for m in range(FIRST_EVALUATION_MIN, LAST_EVALUATION_MIN + 1, EVALUATION_STEP_MIN)
        if m * EPOCHS_PER_MIN <= pi_ms.size
    ]
    if not minutes:
        loss = _loss_pct(pi_ms)
        return DawesRedmanResult(
            None, "too_short", None, 0, None, None, 0, 0, 0, (), loss,
            (f"recording shorter than {FIRST_EVALUATION_MIN} min",),
        )  # fmt: skip
    sinusoidal = _sinusoidal_windows(pi_ms)
    ev: _Evaluation | None = None
    for m in minutes:
        n_moves = int(np.count_nonzero((moves >= t0) & (moves < t0 + 60.0 * m)))
        ev = _evaluate(pi_ms[: m * EPOCHS_PER_MIN], m, n_moves, sinusoidal)
        if ev.met:
            return _result(ev, True, "met", m)
    assert ev is not None
    if ev.loss_pct > MAX_SIGNAL_LOSS_PCT:
        return _result(ev, None, "signal_loss", None)
    if ev.minutes >= LAST_EVALUATION_MIN:
        return _result(ev, False, "not_met", None)
    return _result(ev, None, "not_yet_met", None)


def _result(ev: _Evaluation, met: bool | None, status: str, at: int | None) -> DawesRedmanResult:
    reasons = ev.reasons
    if status == "signal_loss":
        reasons = (_loss_reason(ev.loss_pct),)
    return DawesRedmanResult(
        met, status, at, ev.minutes, ev.basal_bpm, ev.stv_ms, ev.high_min, ev.low_min,
        ev.accelerations, ev.lost_beats, ev.loss_pct, reasons,
    )  # fmt: skip


def _loss_reason(loss_pct: float) -> str:
    return f"signal loss {loss_pct:.0f}% > {MAX_SIGNAL_LOSS_PCT:.0f}%"


def _loss_pct(pi_ms: FloatArray) -> float:
    return 100.0 * float(np.mean(~np.isfinite(pi_ms))) if pi_ms.size else 100.0


def _epoch_intervals(f: FloatArray) -> FloatArray:
    """Mean pulse interval (ms) of each complete epoch; NaN where the epoch is lost."""
    n_ep = f.size // EPOCH_POINTS
    x = f[: n_ep * EPOCH_POINTS].reshape(n_ep, EPOCH_POINTS)
    ok = np.isfinite(x)
    count = ok.sum(axis=1)
    total = np.where(ok, 60000.0 / np.where(ok, x, 1.0), 0.0).sum(axis=1)
    out = np.full(n_ep, np.nan)
    good = count >= EPOCH_MIN_POINTS
    out[good] = total[good] / count[good]
    return out


def _runs(mask: BoolArray) -> list[tuple[int, int]]:
    """[start, end) of the True runs."""
    m = np.concatenate([[0], mask.astype(np.int8), [0]])
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def _bridge(x: FloatArray, max_len: int) -> FloatArray:
    """Linear bridging of interior NaN runs of at most max_len samples."""
    miss = ~np.isfinite(x)
    if not miss.any() or miss.all():
        return x.copy()
    idx = np.arange(x.size)
    filled = np.interp(idx, idx[~miss], x[~miss])
    out = x.copy()
    for a, b in _runs(miss):
        if b - a <= max_len and a > 0 and b < x.size:
            out[a:b] = filled[a:b]
    return out


def _baseline(rate: FloatArray) -> FloatArray:
    """Baseline (bpm) at each epoch: see BASELINE_* above. NaN if no epoch has a rate."""
    ok = np.isfinite(rate)
    if not ok.any():
        return np.full(rate.size, np.nan)
    lo, hi = 50.0, 211.0
    hist, edges = np.histogram(rate[ok], np.arange(lo, hi + 1.0, 1.0))
    smooth = np.convolve(hist, np.ones(7) / 7, mode="same")
    base = np.full(rate.size, float(edges[int(np.argmax(smooth))] + 0.5))
    w = int(BASELINE_SMOOTH_MIN * EPOCHS_PER_MIN)
    kernel = np.ones(w)
    idx = np.arange(rate.size)
    for band in (2 * BASELINE_EXCLUDE_BPM, BASELINE_EXCLUDE_BPM):
        inc = ok & (np.abs(np.where(ok, rate, 0.0) - base) <= band)
        if inc.sum() < EPOCHS_PER_MIN:
            break
        num = np.convolve(np.where(inc, rate, 0.0), kernel, mode="same")
        den = np.convolve(inc.astype(np.float64), kernel, mode="same")
        have = den >= EPOCHS_PER_MIN / 2
        if not have.any():
            break
        base = np.interp(idx, idx[have], num[have] / den[have])
    return base


def _evaluate(pi_ms: FloatArray, minutes: int, n_moves: int, sinusoidal: BoolArray) -> _Evaluation:
    """The criteria on the first `minutes` of the trace (pi_ms holds exactly those epochs)."""
    loss = _loss_pct(pi_ms)
    ok = np.isfinite(pi_ms)
    rate = np.where(ok, 60000.0 / np.where(ok, pi_ms, 1.0), np.nan)
    base = _baseline(rate)
    if not np.isfinite(base).any():
        return _Evaluation(minutes, False, None, None, 0, 0, 0, (), loss, (_loss_reason(loss),))
    basal = float(np.mean(base[ok]))
    d = _bridge(rate, BRIDGE_EPOCHS) - base
    accels = _accelerations(d)
    decels, in_decel = _decelerations(d)
    stv = _stv(pi_ms, in_decel)
    high, low = _episodes(pi_ms, in_decel)

    reasons: list[str] = []
    if loss > MAX_SIGNAL_LOSS_PCT:
        reasons.append(_loss_reason(loss))
    if high == 0:
        reasons.append("no episode of high variation")
    limit = DECEL_MAX_LOST_BEATS_LONG if minutes > DECEL_LONG_RECORD_MIN else DECEL_MAX_LOST_BEATS
    big = [x for x in decels if x > limit]
    if big:
        reasons.append(f"deceleration of {max(big):.0f} lost beats (> {limit:.0f})")
    lo, hi = BASAL_HR_BPM
    if not lo <= basal <= hi:
        reasons.append(f"basal heart rate {basal:.0f} bpm outside {lo:.0f}-{hi:.0f}")
    if n_moves < 1 and accels < MIN_ACCELERATIONS_WITHOUT_MOVEMENT:
        reasons.append(
            f"no fetal movement and fewer than {MIN_ACCELERATIONS_WITHOUT_MOVEMENT} accelerations"
        )
    if _sinusoidal_in(sinusoidal, minutes):
        reasons.append("sinusoidal rhythm")
    if stv is None:
        reasons.append("short-term variation cannot be measured")
    elif stv < STV_MIN_MS:
        reasons.append(f"short-term variation {stv:.1f} ms < {STV_MIN_MS:.1f} ms")
    if accels == 0:
        reasons.append("no acceleration")
    end = END_WINDOW_MIN * EPOCHS_PER_MIN
    if np.mean(~ok[-end:]) > END_MAX_LOSS_FRACTION:
        reasons.append("signal loss at the end of the record")
    if in_decel[-1] or (np.isfinite(d[-1]) and d[-1] < -DECEL_SHALLOW_BPM):
        reasons.append("deceleration at the end of the record")
    high_min, low_min = int(high), int(low)
    return _Evaluation(
        minutes, not reasons, basal, stv, high_min, low_min, accels, tuple(decels), loss,
        tuple(reasons),
    )  # fmt: skip


def _accelerations(d: FloatArray) -> int:
    """Excursions more than ACCEL_MIN_BPM above the baseline for more than ACCEL_MIN_S.
    A single epoch back under the threshold does not end one (the trace's own variation
    rides on an acceleration)."""
    need = int(ACCEL_MIN_S // EPOCH_S) + 1  # epochs strictly longer than ACCEL_MIN_S
    above = np.nan_to_num(d, nan=-np.inf) > ACCEL_MIN_BPM
    dip = ~above[1:-1] & above[:-2] & above[2:]
    above[1:-1] |= dip
    return sum(1 for a, b in _runs(above) if b - a >= need)


def _decelerations(d: FloatArray) -> tuple[list[float], BoolArray]:
    """Lost beats of each deceleration, and the epochs within one (from where the trace
    leaves the baseline to where it comes back)."""
    below = np.nan_to_num(d, nan=np.inf)
    shallow_need = int(DECEL_SHALLOW_S // EPOCH_S) + 1
    deep_need = int(DECEL_DEEP_S // EPOCH_S) + 1
    in_decel = np.zeros(d.size, dtype=np.bool_)
    sizes: list[float] = []
    for a, b in _runs(below < -DECEL_SHALLOW_BPM):
        deep = max((y - x for x, y in _runs(below[a:b] < -DECEL_DEEP_BPM)), default=0)
        if b - a < shallow_need and deep < deep_need:
            continue
        while a > 0 and below[a - 1] < 0:
            a -= 1
        while b < d.size and below[b] < 0:
            b += 1
        if in_decel[a]:
            continue  # already counted with the excursion it belongs to
        in_decel[a:b] = True
        sizes.append(float(np.sum(-below[a:b]) * EPOCH_S / 60.0))
    return sizes, in_decel


def _stv(pi_ms: FloatArray, in_decel: BoolArray) -> float | None:
    """Mean over minutes of the mean |difference| of successive epoch pulse intervals."""
    n_min = pi_ms.size // EPOCHS_PER_MIN
    if n_min == 0:
        return None
    x = pi_ms[: n_min * EPOCHS_PER_MIN].reshape(n_min, EPOCHS_PER_MIN)
    dec = in_decel[: n_min * EPOCHS_PER_MIN].reshape(n_min, EPOCHS_PER_MIN)
    diff = np.abs(np.diff(x, axis=1))
    pair_ok = np.isfinite(diff) & ~dec[:, 1:] & ~dec[:, :-1]
    count = pair_ok.sum(axis=1)
    total = np.where(pair_ok, diff, 0.0).sum(axis=1)
    good = count >= STV_MIN_PAIRS
    if not good.any():
        return None
    return float(np.mean(total[good] / count[good]))


def _episodes(pi_ms: FloatArray, in_decel: BoolArray) -> tuple[int, int]:
    """Minutes in episodes of high and of low variation."""
    n_min = pi_ms.size // EPOCHS_PER_MIN
    x = pi_ms[: n_min * EPOCHS_PER_MIN].reshape(n_min, EPOCHS_PER_MIN)
    dec = in_decel[: n_min * EPOCHS_PER_MIN].reshape(n_min, EPOCHS_PER_MIN).any(axis=1)
    ok = np.isfinite(x)
    known = (ok.sum(axis=1) >= MINUTE_MIN_EPOCHS) & ~dec
    hi_x = np.where(ok, x, -np.inf).max(axis=1)
    lo_x = np.where(ok, x, np.inf).min(axis=1)
    rng = np.where(known, hi_x - lo_x, np.nan)
    high = np.nan_to_num(rng, nan=-1.0) > HIGH_VARIATION_MS
    low = np.nan_to_num(rng, nan=np.inf) < LOW_VARIATION_MS
    return _episode_minutes(high), _episode_minutes(low)


def _episode_minutes(flag: BoolArray) -> int:
    """Minutes covered by windows of EPISODE_WINDOW_MIN with >= EPISODE_MIN_IN_WINDOW flags."""
    w = EPISODE_WINDOW_MIN
    if flag.size < w:
        return 0
    counts = np.convolve(flag.astype(np.int64), np.ones(w, dtype=np.int64), mode="valid")
    covered = np.zeros(flag.size, dtype=np.bool_)
    for s in np.flatnonzero(counts >= EPISODE_MIN_IN_WINDOW).tolist():
        covered[s : s + w] = True
    return int(covered.sum())


def _sinusoidal_windows(pi_ms: FloatArray) -> BoolArray:
    """flag[w]: the 10-min window starting at minute w looks sinusoidal (FIGO 2015)."""
    w = SINUSOIDAL_WINDOW_MIN * EPOCHS_PER_MIN
    n_min = pi_ms.size // EPOCHS_PER_MIN
    n_win = n_min - SINUSOIDAL_WINDOW_MIN + 1
    ok = np.isfinite(pi_ms)
    if n_win <= 0 or not ok.any():
        return np.zeros(max(n_win, 0), dtype=np.bool_)
    rate = 60000.0 / np.where(ok, pi_ms, 1.0)
    idx = np.arange(pi_ms.size)
    filled = np.interp(idx, idx[ok], rate[ok])
    starts = np.arange(n_win) * EPOCHS_PER_MIN
    x = np.lib.stride_tricks.sliding_window_view(filled, w)[starts]
    valid = np.lib.stride_tricks.sliding_window_view(ok, w)[starts].mean(axis=1)
    # Remove each window's linear trend (least squares on a centred time axis).
    c = np.arange(w) - (w - 1) / 2.0
    slope = (x @ c) / float(c @ c)
    x = x - x.mean(axis=1, keepdims=True) - slope[:, None] * c[None, :]
    freqs = np.fft.rfftfreq(w, d=EPOCH_S / 60.0)  # cycles per minute
    lo_f, hi_f = ref.SINUSOIDAL_CYCLES_PER_MIN
    band = (freqs >= lo_f) & (freqs <= hi_f)
    p = np.abs(np.fft.rfft(x, axis=1)) ** 2
    total = p[:, freqs > 0.5].sum(axis=1)
    frac = np.where(total > 0, p[:, band].sum(axis=1) / np.where(total > 0, total, 1.0), 0.0)
    amp = 2.0 * np.sqrt(2.0) * x.std(axis=1)  # peak-to-peak of a sine
    lo, hi = ref.SINUSOIDAL_AMPLITUDE_BPM
    out: BoolArray = (
        (valid >= 0.9) & (frac >= ref.SINUSOIDAL_POWER_FRACTION) & (amp >= lo) & (amp <= hi)
    )
    return out


def _sinusoidal_in(flags: BoolArray, minutes: int) -> bool:
    """A run of sinusoidal windows inside the first `minutes` spanning the FIGO minimum."""
    n_win = minutes - SINUSOIDAL_WINDOW_MIN + 1
    if n_win <= 0:
        return False
    need = int(ref.SINUSOIDAL_MIN_MIN) - SINUSOIDAL_WINDOW_MIN + 1
    best = max((b - a for a, b in _runs(flags[:n_win])), default=0)
    return best >= need
