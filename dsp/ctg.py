"""CTG analysis of a 4 Hz fetal heart rate trace: the findings a nurse acts on.

Definitions and thresholds are FIGO 2015 and Dawes-Redman (see dsp/ctg_reference.py for
the numbers and citations). Missing points (NaN) are signal loss; they are never filled
beyond 10 s, and a trace with too little signal is "indeterminate", never "normal".
Artefacts (off-chart values, jumps that do not persist, halving and doubling) are rejected
first by dsp/ctg_artefact.py and count as signal loss, as in the Dawes-Redman analysis.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import signal

from dsp import ctg_reference as ref
from dsp.ctg_artefact import VALID_RANGE_BPM, reject_artefacts

FS = ref.POINT_RATE_HZ
MAX_FILL_S = 10.0  # gaps up to this long are bridged when finding episodes
VALID_BPM = VALID_RANGE_BPM


@dataclass(frozen=True)
class Acceleration:
    start_s: float
    end_s: float
    peak_s: float
    peak_bpm: float
    amplitude_bpm: float  # above baseline
    duration_s: float


@dataclass(frozen=True)
class Deceleration:
    start_s: float
    end_s: float
    nadir_s: float
    nadir_bpm: float
    depth_bpm: float  # below baseline
    duration_s: float
    type: str  # "early" | "late" | "variable" | "prolonged" | "unclassified"
    onset_s: float  # from the start to 80% of the depth (rapid <30 s: variable)
    contraction_peak_s: float | None = None


@dataclass(frozen=True)
class CtgFindings:
    baseline_bpm: float | None
    variability_bpm: float | None
    stv_ms: float | None
    accelerations: list[Acceleration]
    decelerations: list[Deceleration]
    signal_loss_pct: float  # points without a value, artefacts included
    sinusoidal: bool
    figo_class: str  # "normal" | "suspicious" | "pathological" | "indeterminate"
    reasons: list[str] = field(default_factory=list)
    artefact_pct: float = 0.0  # points that had a value but were rejected as artefact

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (the CLI's keys)."""

        def num(x: float | None, nd: int = 1) -> float | None:
            return None if x is None else round(float(x), nd)

        return {
            "baseline_bpm": num(self.baseline_bpm),
            "variability_bpm": num(self.variability_bpm),
            "stv_ms": num(self.stv_ms, 2),
            "accelerations": [_round_dict(asdict(a)) for a in self.accelerations],
            "decelerations": [_round_dict(asdict(d)) for d in self.decelerations],
            "signal_loss_pct": num(self.signal_loss_pct),
            "sinusoidal": bool(self.sinusoidal),
            "figo_class": self.figo_class,
            "reasons": list(self.reasons),
            "artefact_pct": num(self.artefact_pct),
        }


def _round_dict(d: dict[str, object]) -> dict[str, object]:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in d.items()}


def _validate(t_s: np.ndarray, fhr_bpm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t_s, dtype=float)
    f = np.asarray(fhr_bpm, dtype=float)
    if t.ndim != 1 or f.shape != t.shape:
        raise ValueError("t_s and fhr_bpm must be 1-D arrays of equal length")
    if t.size and not np.all(np.isfinite(t)):
        raise ValueError("t_s must be finite")
    if t.size > 1 and np.any(np.abs(np.diff(t) - 1 / FS) > 0.01):
        raise ValueError("the trace must be sampled at 4 Hz without gaps in t_s")
    return t, reject_artefacts(f).fhr_bpm


def baseline_trace(t_s: np.ndarray, fhr_bpm: np.ndarray) -> np.ndarray:
    """FIGO 2015 baseline at each point: mean of the horizontal segments of the
    surrounding 10 min (NaN where that window has under 2 min of signal)."""
    _, f = _validate(t_s, fhr_bpm)
    return _baseline_trace(f)


def _baseline_trace(f: np.ndarray) -> np.ndarray:
    """baseline_trace of an already validated and cleaned trace."""
    n = f.size
    out = np.full(n, np.nan)
    if n == 0:
        return out
    step = int(60 * FS)  # one estimate per minute, interpolated
    half = int(ref.BASELINE_CONTEXT_S / 2 * FS)
    centres = np.arange(0, n, step)
    if centres[-1] != n - 1:
        centres = np.append(centres, n - 1)
    vals = np.full(centres.size, np.nan)
    for i, centre in enumerate(centres):
        c = int(centre)
        lo, hi = max(0, c - half), min(n, c + half)
        # Near the ends keep a full 10 min window where the trace allows.
        if hi - lo < 2 * half:
            lo, hi = max(0, min(lo, hi - 2 * half)), min(n, max(hi, lo + 2 * half))
        vals[i] = _window_baseline(f[lo:hi])
    ok = np.isfinite(vals)
    if ok.sum() == 0:
        return out
    interpolated: np.ndarray = np.interp(np.arange(n), centres[ok], vals[ok])
    return interpolated


def _window_baseline(x: np.ndarray) -> float:
    """Mean of the most horizontal, least oscillatory part of a window: start at the
    smoothed histogram mode, then average the points near it (excludes episodes)."""
    x = x[np.isfinite(x)]
    if x.size < 120 * FS:
        return np.nan
    edges = np.arange(VALID_BPM[0], VALID_BPM[1] + 2, 1.0)
    hist, _ = np.histogram(x, edges)
    smooth = np.convolve(hist, np.ones(7) / 7, mode="same")
    b = float(edges[np.argmax(smooth)] + 0.5)
    for width in (2 * ref.BASELINE_EXCLUDE_BPM, ref.BASELINE_EXCLUDE_BPM):
        near = np.abs(x - b) <= width
        if near.sum() < 30 * FS:
            break
        b = float(x[near].mean())
    return b


def _fill_short_gaps(f: np.ndarray) -> np.ndarray:
    """Linear bridging of gaps up to MAX_FILL_S; longer gaps stay NaN."""
    g = f.copy()
    miss = ~np.isfinite(g)
    if not miss.any() or miss.all():
        return g
    idx = np.arange(g.size)
    filled = np.interp(idx, idx[~miss], g[~miss])
    runs = _runs(miss)
    for a, b in runs:
        if (b - a) <= MAX_FILL_S * FS and a > 0 and b < g.size:
            g[a:b] = filled[a:b]
    return g


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the True runs."""
    m = np.concatenate([[0], mask.astype(np.int8), [0]])
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def _contractions(uc: np.ndarray) -> np.ndarray:
    """Indices of contraction peaks in the tocodynamometer channel."""
    u = np.asarray(uc, dtype=float)
    if u.size < 60 * FS or np.isfinite(u).sum() < u.size / 2:
        return np.zeros(0, dtype=int)
    idx = np.arange(u.size)
    ok = np.isfinite(u)
    u = np.interp(idx, idx[ok], u[ok])
    k = int(10 * FS)
    u = np.convolve(u, np.ones(k) / k, mode="same")
    peaks, _ = signal.find_peaks(
        u,
        prominence=ref.UC_MIN_PROMINENCE,
        width=ref.UC_MIN_WIDTH_S * FS / 2,
        distance=int(60 * FS),
    )
    return peaks


def analyse_ctg(t_s: np.ndarray, fhr_bpm: np.ndarray, uc: np.ndarray | None = None) -> CtgFindings:
    """CTG findings and FIGO 2015 class of a 4 Hz trace (NaN = signal loss)."""
    t, f = _validate(t_s, fhr_bpm)
    if uc is not None and np.asarray(uc).shape != f.shape:
        raise ValueError("uc must have the same length as fhr_bpm")
    n = f.size
    loss = 100.0 * float(np.mean(~np.isfinite(f))) if n else 100.0
    given = np.isfinite(np.asarray(fhr_bpm, dtype=float))
    artefact = 100.0 * float(np.mean(given & ~np.isfinite(f))) if n else 0.0
    if n == 0 or not np.isfinite(f).any():
        return CtgFindings(
            None, None, None, [], [], loss, False, "indeterminate", ["no signal"], artefact
        )
    base = _baseline_trace(f)
    g = _fill_short_gaps(f)
    d = g - base
    accels, decels = _episodes(t, g, d)
    uc_peaks = _contractions(uc) if uc is not None else np.zeros(0, dtype=int)
    decels = [_classify(dc, t, g, uc_peaks, uc is not None) for dc in decels]
    in_episode = np.zeros(n, dtype=bool)
    episodes: list[Acceleration | Deceleration] = [*accels, *decels]
    for e in episodes:
        in_episode[_index(t, e.start_s) : _index(t, e.end_s) + 1] = True
    minute_bw = _minute_bandwidths(g, in_episode)
    variability = float(np.nanmedian(minute_bw)) if np.isfinite(minute_bw).any() else None
    stv = _stv_ms(f, in_decel=_mask(t, decels))
    baseline = float(np.nanmedian(base)) if np.isfinite(base).any() else None
    sinusoidal = _sinusoidal(g, base, accels)
    figo, reasons = _figo(
        n, loss, baseline, minute_bw, variability, sinusoidal, decels, t, uc_peaks, uc
    )
    return CtgFindings(
        baseline, variability, stv, accels, decels, loss, sinusoidal, figo, reasons, artefact
    )


def _index(t: np.ndarray, ts: float) -> int:
    return int(np.clip(np.searchsorted(t, ts), 0, t.size - 1))


def _mask(t: np.ndarray, episodes: Sequence[Acceleration | Deceleration]) -> np.ndarray:
    m = np.zeros(t.size, dtype=bool)
    for e in episodes:
        m[_index(t, e.start_s) : _index(t, e.end_s) + 1] = True
    return m


def _episodes(
    t: np.ndarray, g: np.ndarray, d: np.ndarray
) -> tuple[list[Acceleration], list[Deceleration]]:
    accels: list[Acceleration] = []
    decels: list[Deceleration] = []
    valid = np.isfinite(d)
    for a, b in _runs(valid & (d > ref.EPISODE_EDGE_BPM)):
        seg = d[a:b]
        dur = (b - a) / FS
        i = a + int(np.argmax(seg))
        if seg.max() >= ref.ACCEL_MIN_BPM and ref.ACCEL_MIN_S <= dur < ref.ACCEL_MAX_S:
            accels.append(
                Acceleration(
                    float(t[a]), float(t[b - 1]), float(t[i]), float(g[i]), float(d[i]), dur
                )
            )
    for a, b in _runs(valid & (d < -ref.EPISODE_EDGE_BPM)):
        seg = d[a:b]
        dur = (b - a) / FS
        i = a + int(np.argmin(seg))
        if -seg.min() >= ref.DECEL_MIN_BPM and dur >= ref.DECEL_MIN_S:
            onset = float(np.argmax(seg <= 0.8 * seg.min()) / FS)
            decels.append(
                Deceleration(
                    float(t[a]),
                    float(t[b - 1]),
                    float(t[i]),
                    float(g[i]),
                    float(-d[i]),
                    dur,
                    "unclassified",
                    onset,
                )
            )
    return accels, decels


def _classify(
    dc: Deceleration, t: np.ndarray, g: np.ndarray, uc_peaks: np.ndarray, have_uc: bool
) -> Deceleration:
    """FIGO 2015 type; early/late/variable need the contraction channel."""
    if dc.duration_s > ref.DECEL_PROLONGED_S:
        kind = "prolonged"
    elif not have_uc:
        kind = "unclassified"
    elif dc.onset_s < ref.DECEL_GRADUAL_ONSET_S:
        kind = "variable"
    else:
        kind = "unclassified"
    peak_s = None
    if have_uc and uc_peaks.size:
        pt = t[uc_peaks]
        near = pt[(pt >= dc.start_s - 30.0) & (pt <= dc.end_s)]
        if near.size:
            peak_s = float(near[np.argmin(np.abs(near - dc.nadir_s))])
            if kind == "unclassified":
                delay = dc.nadir_s - peak_s
                kind = "late" if delay > ref.DECEL_LATE_NADIR_DELAY_S else "early"
    return Deceleration(
        dc.start_s,
        dc.end_s,
        dc.nadir_s,
        dc.nadir_bpm,
        dc.depth_bpm,
        dc.duration_s,
        kind,
        dc.onset_s,
        peak_s,
    )


def _minute_bandwidths(g: np.ndarray, in_episode: np.ndarray) -> np.ndarray:
    """FIGO variability: max-min amplitude per 1-min segment outside episodes."""
    k = int(ref.VARIABILITY_SEGMENT_S * FS)
    n_min = g.size // k
    out = np.full(n_min, np.nan)
    # 1 s smoothing: the bandwidth is of the oscillations, not of single-point jitter.
    smooth = np.convolve(np.nan_to_num(g), np.ones(4) / 4, mode="same")
    ok_all = np.isfinite(g) & ~in_episode
    ok_all &= np.convolve(np.isfinite(g), np.ones(4), mode="same") == 4
    for m in range(n_min):
        sl = slice(m * k, (m + 1) * k)
        ok = ok_all[sl]
        if ok.sum() >= k / 2:
            x = smooth[sl][ok]
            out[m] = float(x.max() - x.min())
    return out


def _stv_ms(f: np.ndarray, in_decel: np.ndarray) -> float | None:
    """Dawes-Redman STV: mean |difference| of successive 3.75 s epoch pulse intervals."""
    k = int(round(ref.STV_EPOCH_S * FS))
    n_ep = f.size // k
    if n_ep < 2:
        return None
    x = f[: n_ep * k].reshape(n_ep, k)
    dec = in_decel[: n_ep * k].reshape(n_ep, k).any(axis=1)
    ok = (np.isfinite(x).sum(axis=1) >= k / 2) & ~dec
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = np.nanmean(np.where(np.isfinite(x), 60000.0 / x, np.nan), axis=1)
    diffs = np.abs(np.diff(interval))
    pair_ok = ok[1:] & ok[:-1]
    if pair_ok.sum() < 16:
        return None
    return float(diffs[pair_ok].mean())


def _sinusoidal(g: np.ndarray, base: np.ndarray, accels: list[Acceleration]) -> bool:
    """FIGO 2015 sinusoidal pattern: 3-5 cycles/min, 5-15 bpm, >30 min, no accelerations."""
    win = int(600 * FS)
    step = int(60 * FS)
    if g.size < ref.SINUSOIDAL_MIN_MIN * 60 * FS:
        return False
    acc_t = np.array([a.peak_s for a in accels])
    flags = []
    for s in range(0, g.size - win + 1, step):
        x = (g - base)[s : s + win]
        if np.mean(np.isfinite(x)) < 0.9 or (
            acc_t.size and np.any((acc_t >= s / FS) & (acc_t < (s + win) / FS))
        ):
            flags.append(False)
            continue
        idx = np.arange(x.size)
        ok = np.isfinite(x)
        x = np.interp(idx, idx[ok], x[ok])
        x = x - x.mean()
        freqs, p = signal.periodogram(x, fs=FS * 60.0)  # cycles per minute
        band = (freqs >= ref.SINUSOIDAL_CYCLES_PER_MIN[0]) & (
            freqs <= ref.SINUSOIDAL_CYCLES_PER_MIN[1]
        )
        total = p[freqs > 0.5].sum()
        frac = p[band].sum() / total if total > 0 else 0.0
        amp = 2 * np.sqrt(2) * np.std(x)
        lo, hi = ref.SINUSOIDAL_AMPLITUDE_BPM
        flags.append(bool(frac >= ref.SINUSOIDAL_POWER_FRACTION and lo <= amp <= hi + 3))
    need = int(ref.SINUSOIDAL_MIN_MIN - 10) + 1  # consecutive 10-min windows spanning 30 min
    best = max((b - a for a, b in _runs(np.array(flags))), default=0)
    return best >= need


def _longest_minutes(flags: np.ndarray) -> float:
    return float(max((b - a for a, b in _runs(flags)), default=0))


def _figo(
    n: int,
    loss: float,
    baseline: float | None,
    minute_bw: np.ndarray,
    variability: float | None,
    sinusoidal: bool,
    decels: list[Deceleration],
    t: np.ndarray,
    uc_peaks: np.ndarray,
    uc: np.ndarray | None,
) -> tuple[str, list[str]]:
    reasons: list[str] = []
    if n / FS < ref.MIN_TRACE_S:
        return "indeterminate", [f"trace shorter than {ref.MIN_TRACE_S / 60:.0f} min"]
    if loss > ref.MAX_SIGNAL_LOSS_PCT:
        return "indeterminate", [f"signal loss {loss:.0f}% > {ref.MAX_SIGNAL_LOSS_PCT:.0f}%"]
    if baseline is None or variability is None:
        return "indeterminate", ["baseline or variability cannot be determined"]
    patho: list[str] = []
    susp: list[str] = []
    lo, hi = ref.BASELINE_NORMAL_BPM
    if baseline < ref.BASELINE_PATHOLOGICAL_BELOW_BPM:
        patho.append(f"baseline {baseline:.0f} bpm < {ref.BASELINE_PATHOLOGICAL_BELOW_BPM:.0f}")
    elif baseline < lo or baseline > hi:
        susp.append(f"baseline {baseline:.0f} bpm outside {lo:.0f}-{hi:.0f}")
    reduced = _longest_minutes(np.nan_to_num(minute_bw, nan=99) < ref.VARIABILITY_NORMAL_BPM[0])
    increased = _longest_minutes(np.nan_to_num(minute_bw) > ref.VARIABILITY_NORMAL_BPM[1])
    if reduced > ref.REDUCED_VARIABILITY_PATHOLOGICAL_MIN:
        patho.append(f"reduced variability (<5 bpm) for {reduced:.0f} min")
    if increased > ref.INCREASED_VARIABILITY_PATHOLOGICAL_MIN:
        patho.append(f"increased variability (>25 bpm) for {increased:.0f} min")
    vlo, vhi = ref.VARIABILITY_NORMAL_BPM
    if not vlo <= variability <= vhi and not (reduced > 50 or increased > 30):
        susp.append(f"variability {variability:.1f} bpm outside {vlo:.0f}-{vhi:.0f}")
    if sinusoidal:
        patho.append("sinusoidal pattern for more than 30 min")
    for dc in decels:
        if dc.duration_s > ref.DECEL_PROLONGED_PATHOLOGICAL_S:
            patho.append(
                f"prolonged deceleration of {dc.duration_s / 60:.1f} min at {dc.start_s:.0f} s"
            )
    rep, rep_bad_min = _repetitive(decels, t, uc_peaks, uc is not None)
    limit = (
        ref.REPETITIVE_PATHOLOGICAL_REDUCED_VAR_MIN
        if reduced > 0.5 * ref.REDUCED_VARIABILITY_PATHOLOGICAL_MIN
        else ref.REPETITIVE_PATHOLOGICAL_MIN
    )
    if rep_bad_min > limit:
        patho.append(f"repetitive late or prolonged decelerations for {rep_bad_min:.0f} min")
    elif rep:
        susp.append("repetitive decelerations")
    if loss > 20:
        reasons.append(f"note: signal loss {loss:.0f}%")
    if patho:
        return "pathological", patho + susp + reasons
    if susp:
        return "suspicious", susp + reasons
    return "normal", ["baseline, variability and decelerations within FIGO normal"] + reasons


def _repetitive(
    decels: list[Deceleration], t: np.ndarray, uc_peaks: np.ndarray, have_uc: bool
) -> tuple[bool, float]:
    """(repetitive?, longest span in min of repetitive late/prolonged decelerations)."""
    if not decels:
        return False, 0.0
    if have_uc and uc_peaks.size:
        pt = t[uc_peaks]
        assoc = np.zeros(pt.size, dtype=bool)
        bad = np.zeros(pt.size, dtype=bool)
        for dc in decels:
            hit = (pt >= dc.start_s - 30.0) & (pt <= dc.end_s)
            assoc |= hit
            if dc.type in ("late", "prolonged"):
                bad |= hit
        rep = assoc.mean() > ref.REPETITIVE_FRACTION
        # Longest run of contractions where most have a late/prolonged deceleration.
        span = 0.0
        for i in range(pt.size):
            for j in range(i + 2, pt.size):
                if bad[i : j + 1].mean() > ref.REPETITIVE_FRACTION and bad[i] and bad[j]:
                    span = max(span, (pt[j] - pt[i]) / 60.0)
        return bool(rep), span
    starts = np.array([dc.start_s for dc in decels])
    rep = any(
        np.sum((starts >= s) & (starts < s + 600.0)) >= ref.REPETITIVE_WITHOUT_UC_PER_10MIN
        for s in starts
    )
    return bool(rep), 0.0
