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
    from dsp.mhr import BEAT_STEP_S, LOOKAHEAD_S, MIN_WINDOW_S, maternal_beats_from_ppg
    from simulators.maternal import MaternalBeats

    beats = MaternalBeats.from_rate(np.full(480, rate), seed=int(rate))
    arrival = 0.25
    x = synthesize_ppg(beats=beats, seed=1, arrival_s=arrival, movements_per_10min=0)
    found = maternal_beats_from_ppg(x, 50)
    truth = beats.t_s + arrival  # the pulse feet at the finger
    # The first beats come once 5 s of PPG show a pulse (MIN_WINDOW_S) LOOKAHEAD_S beyond
    # them: nothing before that shows them to be a pulse; every beat after.
    assert MIN_WINDOW_S - LOOKAHEAD_S - BEAT_STEP_S <= found[0] <= MIN_WINDOW_S + 60.0 / rate
    truth = truth[truth >= found[0] - 0.1]
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


def _pulse_then(tail: str) -> tuple[np.ndarray, float]:
    """The monitor's PPG (int16 ADC counts) with a pulse for 30 s, then `tail`: railed at the
    ADC's top, constant at its last level (a finger off a sensor that holds), that level with
    +-1 count of noise, or with the noise of a sensor off the finger on the device's ADC (8
    steps of 16 counts RMS, well above the `pulseless` floor); and the time of the step."""
    from simulators.maternal import MaternalBeats

    beats = MaternalBeats.from_rate(np.full(480, 80.0), seed=11)
    x = PpgSignal(beats=beats, seed=13).read(120 * 50).astype(float)
    k = 30 * 50
    rest = x.size - k
    rng = np.random.default_rng(0)
    x[k:] = {
        "railed": np.full(rest, 32767.0),
        "constant": np.full(rest, x[k - 1]),
        "noise": x[k - 1] + rng.integers(-1, 2, rest),
        "adc noise": x[k - 1] + 16.0 * np.round(rng.normal(0.0, 8.0, rest)),
    }[tail]
    return x, k / 50


@pytest.mark.parametrize("tail", ["railed", "constant", "noise", "adc noise"])
def test_a_ppg_without_a_pulse_gives_no_rate_and_no_beats(tail):
    # The band-pass filter rings on after the pulse stops; the normalised autocorrelation
    # and the beat detector's relative threshold once took that ringing (or the ADC's noise)
    # for a pulse: 187.5 bpm at quality 1 and 180 beats a minute from a railed PPG; and the
    # beat detector found beats at random in a sensor's noise of a few ADC steps.
    from dsp.mhr import MaternalBeatStream, maternal_beats_from_ppg

    x, step_s = _pulse_then(tail)
    p = mhr_from_ppg(x, 50)
    before = (p.t_s > 10) & (p.t_s < step_s - 2)
    assert np.isfinite(p.mhr_bpm[before]).mean() > 0.9, "the pulse is measured"
    after = p.t_s > step_s + 8
    assert after.sum() > 300
    assert np.all(np.isnan(p.mhr_bpm[after]))
    # no pulse at all: quality 0; noise: at most the weak periodicity of a window with no rate
    assert np.all(p.quality[after] == 0) if tail != "adc noise" else np.all(p.quality[after] < 0.2)
    beats = maternal_beats_from_ppg(x, 50)
    assert ((beats > 10) & (beats < step_s - 2)).sum() > 20
    assert not (beats > step_s + 8).any()
    streamed = _in_random_chunks(MaternalBeatStream(50), x, 40, seed=3)
    np.testing.assert_allclose(np.concatenate(streamed), beats)


def test_a_pulse_is_measured_at_any_scale_and_quantisation():
    # The pulse test counts in the window's own ADC steps: the device's 16-count steps (its
    # 12-bit ADC read as 16 bits), integer counts, or a synthetic PPG of unit amplitude.
    x = synthesize_ppg(np.full(240, 75.0), seed=6, movements_per_10min=0)
    for scaled in (x, np.round(x * 4000.0), np.round(x * 40.0) * 16.0):
        p = mhr_from_ppg(scaled, 50)
        rep = np.isfinite(p.mhr_bpm[30:])
        assert rep.mean() > 0.9 and np.median(np.abs(p.mhr_bpm[30:][rep] - 75.0)) < 1.5


def _plain_pulse(rate: float, seconds: float, seed: int) -> np.ndarray:
    """A PPG of another shape than simulators/ppg.py's, so the pulse tests do not rest on one
    model: a quarter-sine upstroke of 0.12 s and an exponential run-off (0.35 s), 50 ADC steps
    high, beat intervals +-3% at random, on the device's 16-count steps with a step of noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 50)) / 50
    rr = 60.0 / rate * (1 + 0.03 * rng.standard_normal(int(seconds * rate / 60) + 5))
    x = np.zeros(t.size)
    for b in np.cumsum(rr) - rr[0]:
        d = t - b
        m = (d >= 0) & (d < 3.0)
        x[m] += np.where(
            d[m] < 0.12, np.sin(np.pi / 2 * d[m] / 0.12), np.exp(-(d[m] - 0.12) / 0.35)
        )
    return 16.0 * np.round(x * 50.0 + rng.normal(0.0, 1.0, t.size))


def _monitor_pulse(rate: float, seconds: float, seed: int) -> np.ndarray:
    from simulators.maternal import MaternalBeats

    beats = MaternalBeats.from_rate(np.full(int(seconds * 4), rate), seed=seed)
    return PpgSignal(beats=beats, seed=seed + 2).read(int(seconds * 50)).astype(float)


@pytest.mark.parametrize("model", [_monitor_pulse, _plain_pulse])
@pytest.mark.parametrize("spell", ["constant", "noise", "adc noise"])
@pytest.mark.parametrize("rate", [45.0, 138.0])
def test_a_pulse_coming_back_is_measured_only_once_it_is_across_the_window(model, spell, rate):
    # Her finger is off the sensor from 20 s to 50 s. Before a window was measured only with
    # her pulse across it, the first rates as it came back were from windows of a second of
    # pulse and seven of flat line or noise, 5-10 bpm off (147.2 for 138 after the ADC's
    # noise), and the FHR points at her rate passed the coincidence check against them.
    from dsp.mhr import (
        BEAT_STEP_S,
        LOOKAHEAD_S,
        MIN_WINDOW_S,
        PULSE_SEGMENT_S,
        WINDOW_S,
        maternal_beats_from_ppg,
    )

    off_s, back_s = 20.0, 50.0
    clean = model(rate, 80.0, 11)
    x = clean.copy()
    a, b = int(off_s * 50), int(back_s * 50)
    rng = np.random.default_rng(0)
    x[a:b] = {
        "constant": np.full(b - a, x[a - 1]),
        "noise": x[a - 1] + rng.integers(-1, 2, b - a),
        "adc noise": x[a - 1] + 16.0 * np.round(rng.normal(0.0, 8.0, b - a)),
    }[spell]
    p, ref = mhr_from_ppg(x, 50), mhr_from_ppg(clean, 50)
    # No rate from a window whose first part holds no pulse: it starts WINDOW_S -
    # LOOKAHEAD_S before its point.
    behind = WINDOW_S - LOOKAHEAD_S
    unproven = (p.t_s > off_s + LOOKAHEAD_S) & (p.t_s - behind + PULSE_SEGMENT_S <= back_s)
    assert not np.isfinite(p.mhr_bpm[unproven]).any(), p.t_s[unproven & np.isfinite(p.mhr_bpm)]
    # Where there is a rate, it is the rate measured without the spell, within 1.5 bpm.
    near = (p.t_s > off_s - 10.0) & (p.t_s < back_s + 10.0) & np.isfinite(p.mhr_bpm)
    assert np.all(np.abs(p.mhr_bpm[near] - ref.mhr_bpm[near]) < 1.5)
    assert np.isfinite(p.mhr_bpm[(p.t_s > back_s + behind) & (p.t_s < back_s + 15.0)]).all()
    # Her beats likewise: none until MIN_WINDOW_S of pulse stand behind them, all after.
    beats = maternal_beats_from_ppg(x, 50)
    assert not ((beats > off_s + BEAT_STEP_S) & (beats < back_s + MIN_WINDOW_S - 2.0)).any()
    after = beats[(beats > back_s + WINDOW_S) & (beats < back_s + 20.0)]
    assert after.size >= 0.8 * 12.0 * rate / 60.0


@pytest.mark.parametrize("model", [_monitor_pulse, _plain_pulse])
def test_no_beats_just_before_an_arm_movement_in_the_ppg(model):
    # An arm movement swings the PPG far beyond her pulse for 3 s from 20 s. Beats found up
    # to its onset, whose windows ended before it, were taken as hers: in the gateway, the
    # last ones (rates 132.5 and 147.0 for 138) let FHR points at her rate pass. A beat now
    # needs her pulse across the window reaching LOOKAHEAD_S past its step.
    from dsp.mhr import maternal_beats_from_ppg

    x = model(90.0, 60.0, 5)
    t = np.arange(x.size) / 50
    swing = (t >= 20.0) & (t < 23.0)
    amplitude = 4.0 * (x[: 20 * 50].max() - x[: 20 * 50].min())
    x[swing] += np.round(amplitude * np.hanning(swing.sum()) * np.sin(2 * np.pi * 1.2 * t[swing]))
    beats = maternal_beats_from_ppg(x, 50)
    assert ((beats > 10.0) & (beats < 18.0)).sum() >= 10, "her beats before it"
    assert not ((beats > 19.0) & (beats < 24.0)).any(), beats[(beats > 19.0) & (beats < 24.0)]
