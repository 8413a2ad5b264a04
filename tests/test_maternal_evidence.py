"""A point is checked against the mother's channel for that point, or not shown: her pulse
is never passed as the baby's because her PPG stopped, went pulseless or came late."""

from __future__ import annotations

import numpy as np
import pytest

from dsp.fhr import FhrPoints, FhrStream, fhr_from_doppler
from dsp.maternal_coincidence import (
    MATERNAL_MISSING_S,
    NO_MATERNAL_MAX_QUALITY,
    MaternalCoincidence,
)
from simulators.doppler import synthesize_doppler

pytestmark = pytest.mark.unit

WINDOW_S = 3.75
ENV_FS_HZ = 200.0


def _points(t0: float, t1: float, bpm: float) -> tuple[np.ndarray, ...]:
    """FHR points t0 < t <= t1 at `bpm`, quality 1, estimated without her beats."""
    t = np.arange(round(t0 * 4) + 1, round(t1 * 4) + 1) / 4
    none = np.zeros(t.size, dtype=bool)
    return t, np.full(t.size, bpm), np.ones(t.size), none, none


def _rates(t0: float, t1: float, bpm: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(round(t0 * 4) + 1, round(t1 * 4) + 1) / 4
    return t, np.full(t.size, bpm)


def test_points_wait_for_her_rate_stream_not_for_the_audio():
    m = MaternalCoincidence(ENV_FS_HZ, WINDOW_S)
    m.feed_rate(*_rates(0.0, 30.0, 138.0), now_s=31.5)
    # The Doppler of 30-50 s arrives before her PPG of it (a resend after an outage).
    t, fhr, q, mat, unchecked = m.release(*_points(0.0, 48.0, 138.0), now_s=50.0, final=False)
    assert t[-1] == 30.0, "the points past her rate stream wait for it"
    assert mat[8:].all() and not np.isfinite(fhr).any() and not unchecked.any()
    m.feed_rate(*_rates(30.0, 50.0, 138.0), now_s=50.0)
    t, fhr, q, mat, unchecked = m.release(*_points(48.0, 48.0, 0.0), now_s=50.0, final=False)
    assert t[0] == 30.25 and t[-1] == 48.0
    assert mat.all() and not np.isfinite(fhr).any() and np.all(q == 0.0)
    assert not unchecked.any()


@pytest.mark.parametrize("her_rate", ["pulseless", "missing"])
def test_a_point_without_her_rate_or_beats_is_withheld(her_rate):
    m = MaternalCoincidence(ENV_FS_HZ, WINDOW_S)
    m.feed_rate(*_rates(0.0, 30.0, 80.0), now_s=31.5)
    t, fhr, q, mat, unchecked = m.release(*_points(0.0, 30.0, 140.0), now_s=31.9, final=False)
    assert t.size == 120 and np.isfinite(fhr).all(), "checked, clearly not hers: shown"
    assert not unchecked.any()
    if her_rate == "pulseless":  # her PPG is delivered but gives no rate: finger off
        rt, _ = _rates(30.0, 60.0, 0.0)
        m.feed_rate(rt, np.full(rt.size, np.nan), now_s=61.5)
        now_s = 61.9
    else:  # her PPG no longer arrives
        now_s = 60.0 + WINDOW_S / 2 + MATERNAL_MISSING_S
    t, fhr, q, mat, unchecked = m.release(*_points(30.0, 60.0, 140.0), now_s=now_s, final=False)
    far = t > 30.0 + 2.0  # no rate of hers within 2 s
    assert t[-1] == 60.0 and far.sum() > 100
    np.testing.assert_array_equal(unchecked, far)
    assert not np.isfinite(fhr[far]).any() and np.all(q[far] == 0.0)
    assert not mat.any(), "not proven hers: not flagged as her pulse"


def test_without_any_maternal_channel_no_quality_exceeds_the_cap():
    m = MaternalCoincidence(ENV_FS_HZ, WINDOW_S)
    t, fhr, q, mat, unchecked = m.release(*_points(0.0, 30.0, 140.0), now_s=31.9, final=False)
    assert np.isfinite(fhr).all() and np.all(q == NO_MATERNAL_MAX_QUALITY)
    assert not mat.any() and not unchecked.any()


def test_her_rate_lost_part_way_leaves_no_point_unchecked():
    # The probe hears only a maternal vessel at her (tachycardic) rate; her rate is known for
    # the first 30 s only. Before: every later point shown at her rate at quality 1.0.
    seconds = 90.0
    n = int(seconds * 4)
    mhr = np.full(n, 135.0)
    sc = synthesize_doppler(
        np.full(n, 140.0), mhr, snr_db=15, seed=3, fades_per_10min=0, movements_per_10min=0,
        maternal_db=0.0, maternal_model="wall_inband", fetal_absent=[(0.0, seconds)],
        absent_maternal_db=6.0,
    )  # fmt: skip
    known = sc.t_s <= 30.0
    p = fhr_from_doppler(sc.audio, 4000, sc.t_s[known], mhr[known])
    late = p.t_s > 33.0
    assert not np.isfinite(p.fhr_bpm[late]).any() and np.all(p.quality[late] == 0.0)
    assert p.unchecked[late].all(), "withheld as unchecked: her pulse was not watched"
    alone = fhr_from_doppler(sc.audio, 4000)  # no maternal channel at all: capped, as documented
    assert np.all(alone.quality <= NO_MATERNAL_MAX_QUALITY)


def test_a_monitor_with_a_ppg_waits_for_it_from_the_first_point():
    # A gateway restarted mid-boot hears the device's resend: the Doppler it kept, then the
    # PPG. Without `expected`, the points released before any PPG came were only capped.
    m = MaternalCoincidence(ENV_FS_HZ, WINDOW_S, expected=True)
    t, *_ = m.release(*_points(0.0, 20.0, 138.0), now_s=22.0, final=False)
    assert t.size == 0, "nothing of her channel yet: the points wait for it"
    m.feed_rate(*_rates(0.0, 22.0, 138.0), now_s=22.0)
    t, fhr, q, mat, unchecked = m.release(*_points(20.0, 20.0, 0.0), now_s=22.0, final=False)
    assert t.size == 80 and mat.all() and not np.isfinite(fhr).any() and not unchecked.any()
    # Her channel never comes: the points are withheld once it is missing, never shown.
    m = MaternalCoincidence(ENV_FS_HZ, WINDOW_S, expected=True)
    now_s = 20.0 + WINDOW_S / 2 + MATERNAL_MISSING_S
    t, fhr, q, mat, unchecked = m.release(*_points(0.0, 20.0, 138.0), now_s=now_s, final=False)
    assert t.size == 80 and unchecked.all() and not np.isfinite(fhr).any()


def test_an_fhr_stream_told_of_her_channel_shows_nothing_without_it():
    seconds = 20.0
    n = int(seconds * 4)
    sc = synthesize_doppler(
        np.full(n, 140.0), np.full(n, 80.0), snr_db=20, seed=4, fades_per_10min=0,
        movements_per_10min=0,
    )  # fmt: skip
    st = FhrStream(4000, maternal_channel=True)
    p = FhrPoints.concat([st.feed(sc.audio), st.flush()])
    assert p.t_s.size == n and not np.isfinite(p.fhr_bpm).any() and p.unchecked.all()
    # The same audio with no maternal channel at all: shown, capped (docs/fhr.md).
    alone = fhr_from_doppler(sc.audio, 4000)
    assert np.isfinite(alone.fhr_bpm).mean() > 0.8
    assert np.all(alone.quality <= NO_MATERNAL_MAX_QUALITY)
