"""CTG analysis on constructed traces with known baseline and episodes."""

import numpy as np
import pytest

from dsp.ctg import analyse_ctg, baseline_trace

pytestmark = pytest.mark.unit

FS = 4.0


def _trace(minutes=20, base=140.0, var_bpm=8.0, seed=0):
    n = int(minutes * 60 * FS)
    t = (np.arange(n) + 1) / FS
    rng = np.random.default_rng(seed)
    # Oscillation with ~var_bpm bandwidth per minute (several cycles/min, random phase).
    osc = np.convolve(rng.standard_normal(n), np.ones(24) / 24, mode="same")
    osc = osc / (np.percentile(osc, 97.5) - np.percentile(osc, 2.5)) * var_bpm
    return t, base + osc


def _bump(t, centre, width_s, amp):
    """Smooth episode of given amplitude, ~width_s long at the 5 bpm edge."""
    return amp * np.exp(-0.5 * ((t - centre) / (width_s / 3.5)) ** 2)


def test_baseline_and_normal_class():
    t, f = _trace(base=135.0)
    c = analyse_ctg(t, f)
    assert abs(c.baseline_bpm - 135.0) < 2
    assert 5 <= c.variability_bpm <= 25
    assert c.figo_class == "normal"
    assert c.accelerations == [] and c.decelerations == []
    b = baseline_trace(t, f)
    assert b.shape == t.shape and np.nanmax(np.abs(b - 135)) < 3


def test_accelerations_found_with_times():
    t, f = _trace(base=140.0, var_bpm=6.0)
    centres = [200.0, 500.0, 900.0]
    for c in centres:
        f = f + _bump(t, c, 40.0, 25.0)
    res = analyse_ctg(t, f)
    assert len(res.accelerations) == 3
    for a, c in zip(res.accelerations, centres, strict=True):
        assert abs(a.peak_s - c) < 5 and a.start_s < c < a.end_s
        assert 15 <= a.duration_s < 80 and a.amplitude_bpm > 18
    assert abs(res.baseline_bpm - 140) < 3


def test_decelerations_and_types_with_contractions():
    t, f = _trace(base=140.0, var_bpm=6.0)
    uc = np.full(t.size, 10.0)
    uc_peaks = [150.0, 450.0, 750.0, 1050.0]
    for p in uc_peaks:
        uc += _bump(t, p, 90.0, 50.0)
    f = f - _bump(t, 150.0 + 35.0, 120.0, 30.0)  # late: nadir 35 s after the peak
    f = f - _bump(t, 450.0, 120.0, 25.0)  # early: nadir at the peak
    rapid = (t > 740) & (t < 775)  # variable: abrupt drop
    f[rapid] -= 40.0
    res = analyse_ctg(t, f, uc)
    kinds = {round(d.nadir_s / 100): d.type for d in res.decelerations}
    assert len(res.decelerations) == 3
    assert kinds[2] == "late" and kinds[4] == "early" and kinds[8] == "variable"
    no_uc = analyse_ctg(t, f)
    assert {d.type for d in no_uc.decelerations} == {"unclassified"}


def test_prolonged_deceleration_is_pathological():
    t, f = _trace(minutes=25)
    f = f.copy()
    f[(t > 600) & (t < 600 + 6 * 60)] -= 40
    res = analyse_ctg(t, f)
    assert any(d.type == "prolonged" and d.duration_s > 300 for d in res.decelerations)
    assert res.figo_class == "pathological"
    assert any("prolonged" in r for r in res.reasons)


def test_low_baseline_is_pathological_and_tachycardia_suspicious():
    t, f = _trace(base=92.0)
    assert analyse_ctg(t, f).figo_class == "pathological"
    t, f = _trace(base=172.0)
    res = analyse_ctg(t, f)
    assert res.figo_class == "suspicious" and any("baseline" in r for r in res.reasons)


def test_reduced_variability_over_50_min_is_pathological():
    t, f = _trace(minutes=60, var_bpm=2.0)
    res = analyse_ctg(t, f)
    assert res.variability_bpm < 5
    assert res.figo_class == "pathological"


def test_sinusoidal_pattern():
    n = int(40 * 60 * FS)
    t = (np.arange(n) + 1) / FS
    f = 135 + 5 * np.sin(2 * np.pi * 4.0 / 60.0 * t)  # 4 cycles/min, 10 bpm peak-to-peak
    res = analyse_ctg(t, f)
    assert res.sinusoidal and res.figo_class == "pathological"
    t2, f2 = _trace(minutes=40)
    assert not analyse_ctg(t2, f2).sinusoidal


def test_stv_matches_construction():
    # Epoch pulse intervals alternating by 4 ms: STV = 4 ms.
    k = 15
    n_ep = 200
    intervals = 430.0 + np.where(np.arange(n_ep) % 2, 2.0, -2.0)
    f = np.repeat(60000.0 / intervals, k)
    t = (np.arange(f.size) + 1) / FS
    res = analyse_ctg(t, f)
    assert res.stv_ms == pytest.approx(4.0, rel=0.02)


def test_signal_loss_and_indeterminate():
    t, f = _trace()
    f = f.copy()
    f[: f.size // 4] = np.nan
    res = analyse_ctg(t, f)
    assert res.signal_loss_pct == pytest.approx(25.0, abs=0.1)
    f[: int(f.size * 0.6)] = np.nan
    assert analyse_ctg(t, f).figo_class == "indeterminate"
    allnan = analyse_ctg(t, np.full(t.size, np.nan))
    assert allnan.figo_class == "indeterminate" and allnan.baseline_bpm is None
    short = analyse_ctg(t[:400], f[-400:])
    assert short.figo_class == "indeterminate"


def test_to_dict_keys_and_bad_input():
    t, f = _trace(minutes=12)
    d = analyse_ctg(t, f).to_dict()
    for key in (
        "baseline_bpm",
        "variability_bpm",
        "stv_ms",
        "accelerations",
        "decelerations",
        "signal_loss_pct",
        "figo_class",
        "reasons",
    ):
        assert key in d
    with pytest.raises(ValueError):
        analyse_ctg(t, f[:-1])
    with pytest.raises(ValueError):
        analyse_ctg(t * 2, f)
