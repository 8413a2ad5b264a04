"""Artefact rejection before CTG analysis: constructed artefacts on traces built from
physiology, what must never be rejected (accelerations, decelerations), and the same rules
on the recorded CTU-UHB traces with artefacts injected."""

import numpy as np
import pytest

from dsp.ctg import analyse_ctg
from dsp.ctg_artefact import (
    HARMONIC,
    LOST,
    OK,
    OUT_OF_RANGE,
    SPIKE,
    START_UP,
    reject_artefacts,
)
from dsp.dawes_redman import dawes_redman
from simulators.ctg_records import list_ctg_records, load_ctg_record
from tests.antenatal_traces import episode, reactive, times, trace

# Tiers per test: constructed traces are unit, the recorded CTG traces system
# (docs/testing.md).


def _kept_unchanged(raw, cleaned):
    keep = cleaned.reason == OK
    assert np.array_equal(cleaned.fhr_bpm[keep], np.asarray(raw, dtype=float)[keep])
    assert np.all(np.isnan(cleaned.fhr_bpm[~keep]))


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(5))
def test_healthy_traces_lose_nothing(seed):
    """Accelerations, decelerations and the wide band of active sleep are physiology."""
    t, f = reactive(30, seed=seed)
    f = f + episode(t, 900.0, -40.0, 60.0) + episode(t, 1300.0, -25.0, 150.0)
    c = reject_artefacts(f)
    assert c.counts()["ok"] == f.size
    assert c.signal_loss_pct == 0 and c.artefact_pct == 0


@pytest.mark.unit
def test_values_off_the_chart():
    t, f = trace(5, seed=1)
    f[100:110] = 45.0
    f[500:504] = 230.0
    f[700] = np.nan
    c = reject_artefacts(f)
    assert np.all(c.reason[100:110] == OUT_OF_RANGE) and np.all(c.reason[500:504] == OUT_OF_RANGE)
    assert c.reason[700] == LOST
    assert c.counts()["ok"] == f.size - 15
    _kept_unchanged(f, c)


@pytest.mark.unit
def test_spikes_that_do_not_persist():
    t, f = trace(5, "quiet", seed=2)
    f[400] += 40  # one point
    f[800:803] -= 35  # three points
    f[1000:1002] = f[999] + 60
    c = reject_artefacts(f)
    assert c.reason[400] == SPIKE and np.all(c.reason[800:803] == SPIKE)
    assert np.all(c.reason[1000:1002] == SPIKE)
    assert c.counts()["spike"] == 6 and c.counts()["ok"] == f.size - 6
    _kept_unchanged(f, c)


@pytest.mark.unit
@pytest.mark.parametrize("edge_gap_s", [0.0, 2.0])
def test_jump_to_200_from_131_is_rejected_not_an_acceleration(edge_gap_s):
    """The issue's case: 131 -> 200 bpm held for 20 s (3/2 of the rate), entered and left by
    jumps, directly or after the 2 s the FHR estimator withholds before a new rhythm."""
    t, f = trace(20, "quiet", basal_bpm=131, seed=3)
    bad = f.copy()
    a, b = 2400, 2480
    bad[a:b] = 200.0 + np.round(np.cos(np.arange(b - a) / 3.0) * 8) / 4
    g = int(edge_gap_s * 4)
    if g:
        bad[a - g : a] = np.nan
        bad[b : b + g] = np.nan
    c = reject_artefacts(bad)
    assert np.all(c.reason[a:b] == HARMONIC)
    assert c.counts()["ok"] == f.size - (b - a) - 2 * g
    assert analyse_ctg(t, bad).accelerations == []
    assert dawes_redman(t, bad).accelerations == 0
    # The same height reached smoothly is an acceleration and is kept.
    real = f + episode(t, 620.0, 45.0, 60.0)
    assert reject_artefacts(real).counts()["ok"] == f.size
    assert len(analyse_ctg(t, real).accelerations) == 1


@pytest.mark.unit
def test_maternal_start_up_spikes_are_rejected():
    """The probe finds the mother's pulse first (40-55 bpm), then the fetus."""
    t, f = trace(12, seed=4)
    bad = f.copy()
    bad[:14] = [42, 45, 47, 48, 50, 52, 51, 53, 52, 50, 49, 47, np.nan, np.nan]
    c = reject_artefacts(bad)
    assert np.all(c.reason[:12] != OK)
    assert set(c.reason[:12].tolist()) <= {OUT_OF_RANGE, START_UP}
    assert np.all(c.reason[14:] == OK)
    base = analyse_ctg(t, bad)
    assert base.decelerations == [] and abs(base.baseline_bpm - 140) < 4
    # A start on the fetal heart is kept from the first point.
    assert np.all(reject_artefacts(f).reason == OK)


@pytest.mark.unit
def test_halving_by_a_step_is_rejected_but_decelerations_are_not():
    t, f = trace(20, "quiet", basal_bpm=150, seed=5)
    halved = f.copy()
    halved[2000:2120] = np.round(f[2000:2120] / 2 * 4) / 4  # counting every other beat
    c = reject_artefacts(halved)
    assert np.all(c.reason[2000:2120] == HARMONIC)
    assert analyse_ctg(t, halved).decelerations == []
    # A deceleration to half the rate whose fall and recovery were lost (probe off the
    # heart for a few seconds on each side) is kept: never hide a bradycardia.
    dec = f.copy()
    dec[2000:2012] = np.nan
    dec[2012:2160] = 75.0 + np.round(np.sin(np.arange(148) / 7.0) * 8) / 4
    dec[2160:2172] = np.nan
    c = reject_artefacts(dec)
    assert np.all(c.reason[2012:2160] == OK)
    assert len(analyse_ctg(t, dec).decelerations) == 1
    # And so is a fast but continuous fall.
    fast = f + episode(t, 600.0, -70.0, 40.0)
    assert reject_artefacts(fast).counts()["ok"] == f.size


@pytest.mark.unit
def test_a_level_held_for_ten_minutes_is_the_trace():
    t, f = trace(30, "quiet", basal_bpm=100, seed=6)
    doubled = f.copy()
    doubled[2400:] = np.round(f[2400:] * 2 * 4) / 4  # 20 min at twice the rate
    c = reject_artefacts(doubled)
    assert np.all(c.reason[2400:] == OK)
    short = f.copy()
    short[2400 : 2400 + 8 * 240] = np.round(f[2400 : 2400 + 8 * 240] * 2 * 4) / 4
    assert np.all(reject_artefacts(short).reason[2400 : 2400 + 8 * 240] == HARMONIC)


@pytest.mark.unit
def test_input_checks_and_empty():
    with pytest.raises(ValueError):
        reject_artefacts(np.zeros((2, 2)))
    c = reject_artefacts([])
    assert c.fhr_bpm.size == 0 and c.signal_loss_pct == 100.0
    c = reject_artefacts([np.nan] * 10)
    assert np.all(c.reason == LOST)


# -- recorded traces: the rules on a differently made trace ---------------------------------
@pytest.fixture(scope="module")
def recorded():
    out = []
    for name in list_ctg_records():
        _, f, _ = load_ctg_record(name)
        out.append((name, f[-60 * 60 * 4 :]))
    return out


@pytest.mark.system
def test_recorded_traces_keep_almost_everything(recorded):
    """Intrapartum monitor traces: few points go. The most go where the mother's pulse
    (~95 bpm) held the trace for minutes and the fetal rate came back at 3/2 of it: taken
    for a miscount until it holds, the safe failure (signal loss, not a wrong rate)."""
    share = []
    rejected = given = 0
    for _name, f in recorded:
        c = reject_artefacts(f)
        _kept_unchanged(f, c)
        had = int(np.isfinite(f).sum())
        bad = had - c.counts()["ok"]
        share.append(bad / had)
        rejected += bad
        given += had
    assert rejected <= 0.01 * given
    assert np.mean(np.array(share) <= 0.05) >= 0.95 and max(share) <= 0.10


def _stable_spots(f, n_spots, width, rng):
    """Starts of windows of `width` points, fully valid, away from each other and from the
    record's ends, where the trace stays within 10 bpm of its median."""
    ok = np.isfinite(f)
    spots: list[int] = []
    for a in rng.permutation(np.arange(2400, f.size - 2400 - width, 97)):
        w = f[a - 120 : a + width + 120]
        if np.all(np.isfinite(w)) and np.ptp(w) < 20 and all(abs(a - s) > 1200 for s in spots):
            spots.append(int(a))
        if len(spots) == n_spots:
            break
    assert ok.any()
    return spots


@pytest.mark.system
def test_artefacts_injected_into_recorded_traces_are_rejected(recorded):
    """Miscounts (20 s at 3/2 or half the rate) and single spikes put into real traces are
    rejected, counted as no event, and nothing else about the record changes."""
    rng = np.random.default_rng(7)
    injected = caught = records = with_more = 0
    for name, f in recorded:
        spots = _stable_spots(f, 3, 80, rng)
        if len(spots) < 3:
            continue
        records += 1
        t = times(f.size / 240)
        bad = f.copy()
        mask = np.zeros(f.size, dtype=bool)
        for a in spots[:2]:
            # The monitor counts 3 events per 2 beats for 20 s: it shows 3/2 of the rate
            # underneath. Above 140 bpm that is off the chart (the range rule's case), so
            # there it halves the rate instead.
            true = f[a : a + 80]
            k = 1.5 if 1.5 * true.max() <= 210 else 0.5
            bad[a : a + 80] = np.round(k * true * 4) / 4
            mask[a : a + 80] = True
        s = spots[2] + 40
        bad[s] = f[s] + 45
        mask[s] = True
        c = reject_artefacts(bad)
        clean = reject_artefacts(f)
        injected += int(mask.sum())
        caught += int(np.sum(c.reason[mask] != OK))
        # Outside the injections (and 1 min around them) the fate of each point is unchanged.
        near = np.convolve(mask, np.ones(481), mode="same") > 0
        assert np.array_equal(c.reason[~near] == OK, clean.reason[~near] == OK), name
        # A rejected artefact is signal loss: the record reads as if the probe had lost the
        # heart there, with no event more.
        lost = f.copy()
        lost[mask] = np.nan
        more = len(analyse_ctg(t, bad).accelerations) > len(analyse_ctg(t, lost).accelerations)
        more |= dawes_redman(t, bad).accelerations > dawes_redman(t, lost).accelerations
        with_more += int(more)
    assert records >= 60
    assert caught >= 0.95 * injected
    # Known gap (none in this set today): a miscount landing on the running trace that the
    # last kept level change left is taken for a return to it.
    assert with_more <= 0.02 * records
