"""Maternal rate from PPG."""

import numpy as np
import pytest

from dsp.mhr import MhrPoints, MhrStream, mhr_from_ppg
from simulators.ppg import PpgSignal, synthesize_ppg

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("rate", [55.0, 85.0, 130.0])
def test_steady_rate(rate):
    mhr = rate + 4 * np.sin(np.arange(480) / 4 / 20)
    x = synthesize_ppg(mhr, seed=int(rate), movements_per_10min=0)
    p = mhr_from_ppg(x, 50)
    assert p.t_s.size == 480
    rep = np.isfinite(p.mhr_bpm)
    assert rep.mean() > 0.9
    assert np.median(np.abs(p.mhr_bpm[rep] - mhr[rep])) < 1.5


def _in_random_chunks(stream, x, max_chunk, seed):
    """Feed x to a stream in chunks of random size (0 included), then flush; the outputs."""
    parts, i = [], 0
    rng = np.random.default_rng(seed)
    while i < x.size:
        n = int(rng.integers(0, max_chunk))
        parts.append(stream.feed(x[i : i + n]))
        i += n
    parts.append(stream.flush())
    return parts


def test_streaming_equals_batch():
    x = synthesize_ppg(np.full(240, 90.0), seed=2)
    b = mhr_from_ppg(x, 50)
    s = MhrPoints.concat(_in_random_chunks(MhrStream(50), x, 120, seed=0))
    np.testing.assert_allclose(s.mhr_bpm, b.mhr_bpm, equal_nan=True, rtol=1e-9)


def test_bad_input():
    with pytest.raises(ValueError):
        MhrStream(5000)
    p = mhr_from_ppg(np.full(500, np.nan), 50)
    assert np.all(np.isnan(p.mhr_bpm)) and np.all(p.quality == 0)
    assert mhr_from_ppg(np.zeros(0), 50).t_s.size == 0


def test_ppg_signal_int16_loops():
    s = PpgSignal(np.full(40, 70.0), seed=1)
    a = s.read(700)
    assert a.dtype == np.int16 and a.size == 700
    assert s.read(0).size == 0


def test_point_is_emitted_1_5_s_after_its_time():
    # The window trails the point: a point must not wait for 4 s of future PPG.
    x = synthesize_ppg(np.full(120, 75.0), seed=3, movements_per_10min=0)
    st = MhrStream(50)
    lags = []
    for i in range(0, x.size, 5):  # 0.1 s chunks
        p = st.feed(x[i : i + 5])
        lags += list((i + 5) / 50 - p.t_s)
    lags = np.array(lags)
    assert lags.size > 100
    assert np.all(lags >= 1.5 - 1e-9) and np.all(lags < 1.5 + 0.1 + 1e-9)


def test_rate_follows_a_changing_maternal_rate():
    # 2 bpm/s ramp (a fast maternal change): the trailing window lags by ~2.5 s.
    mhr = np.concatenate([np.full(120, 70.0), np.linspace(70, 100, 60), np.full(120, 100.0)])
    p = mhr_from_ppg(synthesize_ppg(mhr, seed=4, movements_per_10min=0), 50)
    rep = np.isfinite(p.mhr_bpm)
    assert rep[20:].mean() > 0.95
    err = np.abs(p.mhr_bpm[rep] - mhr[rep])
    assert np.median(err) < 1.0 and np.percentile(err, 95) < 6.0


@pytest.mark.parametrize("rate", [55.0, 90.0, 150.0])
def test_beats_follow_the_pulse_arrivals_at_a_constant_delay(rate):
    from dsp.mhr import maternal_beats_from_ppg
    from simulators.maternal import MaternalBeats

    beats = MaternalBeats.from_rate(np.full(480, rate), seed=int(rate))
    arrival = 0.25
    x = synthesize_ppg(beats=beats, seed=1, arrival_s=arrival, movements_per_10min=0)
    found = maternal_beats_from_ppg(x, 50)
    truth = beats.t_s + arrival  # the pulse feet at the finger
    assert abs(found.size - truth.size) <= 2
    j = np.clip(np.searchsorted(truth, found) - 1, 0, truth.size - 1)  # the foot before it
    delay = found - truth[j]
    delay = delay[np.abs(delay - np.median(delay)) < 0.1]
    assert delay.size >= truth.size - 3  # each beat once, none doubled by the dicrotic wave
    assert np.std(delay) < 0.02  # the fiducial keeps its place in the beat (a few ms jitter)


def test_beats_streaming_equals_batch_and_missing_samples_give_none():
    from dsp.mhr import MaternalBeatStream, maternal_beats_from_ppg

    x = synthesize_ppg(np.full(240, 80.0), seed=5)
    batch = maternal_beats_from_ppg(x, 50)
    parts = _in_random_chunks(MaternalBeatStream(50), x, 90, seed=1)
    np.testing.assert_allclose(np.concatenate(parts), batch)
    gap = x.copy()
    gap[1000:1500] = np.nan  # 10 s lost
    b = maternal_beats_from_ppg(gap, 50)
    assert not ((b > 20.5) & (b < 29.5)).any() and ((b > 32) & (b < 45)).sum() >= 15
    with pytest.raises(ValueError):
        MaternalBeatStream(5)
