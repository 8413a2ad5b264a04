"""Dawes-Redman analysis on traces built from physiology (tests/antenatal_traces.py) with a
known outcome, the CLI's `dawes_redman` object, and the recorded CTU-UHB traces as a check
on a differently made trace."""

import json

import numpy as np
import pytest

from dsp.ctg import analyse_ctg
from dsp.dawes_redman import MAX_SIGNAL_LOSS_PCT, dawes_redman
from gateway.cli import main
from simulators.ctg_records import list_ctg_records, load_ctg_record
from tests.antenatal_traces import episode, reactive, times, trace

# Tiers per test: constructed traces are unit, the recorded CTG traces system
# (docs/testing.md).

SEEDS = range(4)


@pytest.mark.unit
@pytest.mark.parametrize("seed", SEEDS)
def test_reactive_trace_meets_the_criteria_early(seed):
    t, f = reactive(30, seed=seed)
    r = dawes_redman(t, f)
    assert r.criteria_met is True and r.status == "met"
    assert r.time_to_met_min is not None and r.time_to_met_min <= 14
    assert r.analysed_min == r.time_to_met_min and r.reasons_not_met == ()
    assert r.accelerations >= 3 and r.high_variation_min >= 6
    assert 5.0 <= r.stv_ms <= 12.0  # active sleep at term
    assert abs(r.basal_heart_rate_bpm - 140) < 5
    assert r.decelerations_lost_beats == () and r.signal_loss_pct == 0


@pytest.mark.unit
@pytest.mark.parametrize("seed", SEEDS)
def test_flat_trace_is_not_met_at_60_min_with_reasons(seed):
    t, f = trace(60, "flat", seed=seed)
    r = dawes_redman(t, f)
    assert r.criteria_met is False and r.status == "not_met"
    assert r.time_to_met_min is None and r.analysed_min == 60
    assert 1.5 <= r.stv_ms < 3.0
    reasons = " | ".join(r.reasons_not_met)
    assert "short-term variation" in reasons and "< 3.0 ms" in reasons
    assert "no episode of high variation" in reasons and "no acceleration" in reasons
    assert r.high_variation_min == 0 and r.low_variation_min >= 50


@pytest.mark.unit
def test_quiet_then_active_is_met_once_the_fetus_wakes():
    t1, f1 = trace(24, "quiet", seed=3)
    t2, f2 = reactive(36, seed=4)
    f = np.concatenate([f1, f2])
    t = times(60)
    r = dawes_redman(t, f)
    # Quiet sleep alone never meets them (no high variation, no accelerations): the answer
    # comes in the 2-min steps after the active period has brought both.
    early = dawes_redman(t[: f1.size], f1)
    assert early.criteria_met is None and early.status == "not_yet_met"
    assert r.criteria_met is True and 28 <= r.time_to_met_min <= 40
    assert r.time_to_met_min % 2 == 0


@pytest.mark.unit
def test_signal_loss_above_the_limit_gives_no_answer_never_met():
    t, f = reactive(60, seed=5)
    lossy = f.copy()
    rng = np.random.default_rng(0)
    # Bursts of 5-40 s of loss, ~40% of the record, as a probe slipping off again and again.
    pos = 0
    while pos < lossy.size:
        gap = int(rng.uniform(5, 40) * 4)
        lossy[pos : pos + gap] = np.nan
        pos += gap + int(rng.uniform(8, 50) * 4)
    loss = 100 * np.mean(np.isnan(lossy))
    assert 30 < loss < 60
    r = dawes_redman(t, lossy)
    assert r.criteria_met is None and r.status == "signal_loss"
    assert r.signal_loss_pct > MAX_SIGNAL_LOSS_PCT
    assert len(r.reasons_not_met) == 1 and "signal loss" in r.reasons_not_met[0]
    # The same record with its signal meets them.
    assert dawes_redman(t, f).criteria_met is True


@pytest.mark.unit
def test_artefact_jumps_are_not_accelerations():
    # A quiet trace at 131 bpm with three 20-s plateaus at 200 bpm (3/2 of the rate: a
    # miscount), entered and left by jumps: without rejection each would be an acceleration.
    t, f = trace(40, "quiet", basal_bpm=131, seed=6)
    bad = f.copy()
    for start in (200.0, 600.0, 1000.0):
        sel = (t >= start) & (t < start + 20)
        bad[sel] = 200.0 + np.round(np.sin(t[sel]) * 4) / 4
    r = dawes_redman(t, bad)
    assert r.accelerations == 0
    assert r.criteria_met is not True
    figo = analyse_ctg(t, bad)
    assert figo.accelerations == [] and figo.artefact_pct > 0
    # Genuine accelerations in the same places (smooth rises) are counted.
    good = f + sum(episode(t, s + 10, 25, 60) for s in (200.0, 600.0, 1000.0))
    assert dawes_redman(t, good).accelerations == 3


@pytest.mark.unit
def test_deceleration_sized_in_lost_beats():
    t, f = reactive(40, seed=7)
    # 30 bpm for 90 s (raised cosine) at 5 min: 30 * 90 / 2 / 60 = 22.5 lost beats, more
    # than the 20 allowed up to 30 min, fewer than the 100 allowed on longer records.
    dec = f + episode(t, 300.0, -30.0, 90.0)
    r = dawes_redman(t, dec)
    assert len(r.decelerations_lost_beats) == 1
    assert r.decelerations_lost_beats[0] == pytest.approx(22.5, rel=0.25)
    assert r.criteria_met is True and 32 <= r.time_to_met_min <= 40
    cut = dawes_redman(t[: 30 * 240], dec[: 30 * 240])
    assert cut.criteria_met is None and cut.status == "not_yet_met"
    assert any("lost beats (> 20)" in x for x in cut.reasons_not_met)
    # A dip of 20 bpm for a minute is not an Oxford deceleration (>10 bpm for >60 s or
    # >20 bpm for >30 s): nothing to count, met at 10 min.
    small = dawes_redman(t, f + episode(t, 300.0, -20.0, 60.0))
    assert small.time_to_met_min == 10 and small.decelerations_lost_beats == ()


@pytest.mark.unit
def test_deceleration_at_the_end_holds_the_answer():
    t, f = reactive(12, seed=8)
    dec = f + episode(t, 690.0, -30.0, 80.0)  # falling at 11.5 min
    r = dawes_redman(t, dec)
    assert r.criteria_met is True and r.time_to_met_min == 10
    t2, f2 = reactive(10, seed=8)
    r2 = dawes_redman(t2, f2 + episode(t2, 585.0, -30.0, 60.0))
    assert r2.criteria_met is None and "deceleration at the end of the record" in (
        r2.reasons_not_met
    )


@pytest.mark.unit
def test_basal_rate_outside_116_160_is_not_met():
    t, f = reactive(60, seed=9, basal_bpm=172.0)
    r = dawes_redman(t, f)
    assert r.criteria_met is False
    assert any(x.startswith("basal heart rate") for x in r.reasons_not_met)


@pytest.mark.unit
def test_movements_stand_in_for_three_accelerations():
    t, f = trace(12, "active", seed=10, accelerations=((200.0, 25.0, 60.0),))
    r = dawes_redman(t, f)
    assert r.accelerations == 1 and r.criteria_met is None
    assert any("fewer than 3 accelerations" in x for x in r.reasons_not_met)
    moved = dawes_redman(t, f, movement_times_s=[150.0])
    assert moved.criteria_met is True


@pytest.mark.unit
def test_sinusoidal_rhythm_is_a_reason():
    t = times(40)
    f = 135 + 5 * np.sin(2 * np.pi * 4.0 / 60.0 * t)
    r = dawes_redman(t, f)
    assert "sinusoidal rhythm" in r.reasons_not_met and r.criteria_met is not True


@pytest.mark.unit
def test_short_record_and_bad_input():
    t, f = reactive(9.5, seed=1)
    r = dawes_redman(t, f)
    assert r.criteria_met is None and r.status == "too_short" and r.analysed_min == 0
    assert dawes_redman([], []).status == "too_short"
    with pytest.raises(ValueError):
        dawes_redman(t, f[:-1])
    with pytest.raises(ValueError):
        dawes_redman(t * 2, f)


@pytest.mark.unit
def test_result_is_frozen_and_json_ready():
    t, f = reactive(20, seed=2)
    r = dawes_redman(t, f)
    with pytest.raises(AttributeError):
        r.criteria_met = False  # type: ignore[misc]
    d = json.loads(json.dumps(r.to_dict()))
    assert d["criteria_met"] is True and isinstance(d["reasons_not_met"], list)


@pytest.mark.unit
def test_cli_json_has_the_dawes_redman_object(tmp_path, capsys):
    t, f = reactive(16, seed=3)
    path = tmp_path / "fhr.csv"
    path.write_text(
        "t_s,fhr_bpm\n" + "".join(f"{a:.2f},{b:.2f}\n" for a, b in zip(t, f, strict=True))
    )
    assert main(["dsp", "ctg", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    dr = d["dawes_redman"]
    assert set(dr) >= {
        "criteria_met",
        "time_to_met_min",
        "stv_ms",
        "high_variation_min",
        "low_variation_min",
        "accelerations",
        "decelerations_lost_beats",
        "reasons_not_met",
    }
    assert dr["criteria_met"] is True and dr["time_to_met_min"] == 10
    assert isinstance(dr["decelerations_lost_beats"], list) and dr["reasons_not_met"] == []
    assert "figo_class" in d and "artefact_pct" in d
    short = tmp_path / "short.csv"
    short.write_text("t_s,fhr_bpm\n" + "".join(f"{(i + 1) / 4},140\n" for i in range(2400)))
    assert main(["dsp", "ctg", str(short)]) == 0
    dr = json.loads(capsys.readouterr().out)["dawes_redman"]
    assert dr["criteria_met"] is None and dr["reasons_not_met"]


# -- recorded traces (CTU-UHB, intrapartum; see ../shared/data/ctg/README.md) --------------
@pytest.fixture(scope="module")
def recorded():
    out = []
    for name in list_ctg_records():
        _, f, _ = load_ctg_record(name)
        f = f[-60 * 60 * 4 :]  # the last 60 min, as the FIGO benchmark
        out.append((name, times(f.size / 240), f))
    return out


@pytest.mark.system
def test_recorded_traces_agree_with_the_figo_analysis(recorded):
    """Two baselines and two STVs computed independently (FIGO module, Dawes-Redman module)
    on real traces must agree; the criteria are never met over the signal-loss limit."""
    basal, figo_base, stv, figo_stv = [], [], [], []
    for _name, t, f in recorded:
        r = dawes_redman(t, f)
        c = analyse_ctg(t, f)
        assert r.status in ("met", "not_met", "signal_loss")
        if r.criteria_met:
            assert r.signal_loss_pct <= MAX_SIGNAL_LOSS_PCT and r.reasons_not_met == ()
        if r.status == "signal_loss":
            assert r.signal_loss_pct > MAX_SIGNAL_LOSS_PCT
        if r.basal_heart_rate_bpm is not None and c.baseline_bpm is not None:
            basal.append(r.basal_heart_rate_bpm)
            figo_base.append(c.baseline_bpm)
        if r.stv_ms is not None and c.stv_ms is not None:
            stv.append(r.stv_ms)
            figo_stv.append(c.stv_ms)
    diff = np.abs(np.array(basal) - np.array(figo_base))
    assert len(diff) > 90 and np.median(diff) < 2.0 and np.mean(diff < 8) > 0.9
    assert np.corrcoef(stv, figo_stv)[0, 1] > 0.7


@pytest.mark.system
def test_recorded_traces_lose_their_variation_and_fail(recorded):
    """Take the recorded traces that meet the criteria and shrink every deviation from
    their median to a fifth: the flattened trace must never meet them."""
    met = 0
    for _name, t, f in recorded:
        r = dawes_redman(t, f)
        if not r.criteria_met:
            continue
        met += 1
        level = np.nanmedian(f)
        flat = level + 0.2 * (f - level)
        rf = dawes_redman(t, flat)
        assert rf.criteria_met is not True, _name
        assert rf.reasons_not_met and rf.accelerations < r.accelerations
    assert met >= 20
