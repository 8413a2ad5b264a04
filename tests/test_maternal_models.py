"""The mother's shared beats and the maternal Doppler models built on them."""

import numpy as np
import pytest

from simulators.doppler import MATERNAL_MODELS, synthesize_doppler
from simulators.maternal import MaternalBeats
from simulators.ppg import synthesize_ppg

FS = 4000
QUIET = {"snr_db": 60.0, "fades_per_10min": 0.0, "movements_per_10min": 0.0}


def _maternal_only(model, beats, seconds, seed, **kw):
    """The maternal component alone: the fetal heart is absent throughout."""
    n = int(seconds * 4)
    return synthesize_doppler(
        np.full(n, 140.0),
        None,
        fs_hz=FS,
        seed=seed,
        maternal_model=model,
        beats=beats,
        fetal_absent=[(0.0, seconds + 1.0)],
        maternal_db=0.0,
        **QUIET,
        **kw,
    )


def _envelope(audio, fs=FS, frame_s=0.01):
    """Frame power of the differentiated audio (weights power by frequency squared, so the
    flow's systolic spread shows as well as a thump's loudness), log, 100 Hz."""
    d = np.diff(audio, prepend=audio[0])
    m = int(fs * frame_s)
    p = np.mean(d[: d.size // m * m].reshape(-1, m) ** 2, axis=1)
    return np.log(p + 1e-12 * p.max())


def _ppg_100hz(ppg, fs_ppg=50):
    t = np.arange(ppg.size * 2) / 100.0
    return np.interp(t, np.arange(ppg.size) / fs_ppg, ppg)


def _window_lags(a, b, rr_s, win_s=10.0, rate=100.0):
    """Lag of b behind a (s) in each window, as a phase of the beat (circular), and the
    circular spread of that lag across windows (s)."""
    w = int(win_s * rate)
    n = min(a.size, b.size) // w
    max_lag = int(0.8 * rr_s * rate)
    phases = []
    for k in range(n):
        x = a[k * w : (k + 1) * w] - a[k * w : (k + 1) * w].mean()
        y = b[k * w : (k + 1) * w] - b[k * w : (k + 1) * w].mean()
        c = np.correlate(np.pad(y, max_lag), x, "valid")  # c[j]: y shifted by j - max_lag
        lag = (np.argmax(c) - max_lag) / rate
        phases.append(np.exp(2j * np.pi * lag / rr_s))
    z = np.array(phases)
    r = abs(z.mean())
    spread = np.sqrt(-2 * np.log(max(r, 1e-12))) * rr_s / (2 * np.pi)
    return np.angle(z.mean()) * rr_s / (2 * np.pi), spread


@pytest.mark.unit
def test_beats_follow_rate_with_rsa():
    mhr = np.full(2400, 80.0)
    b = MaternalBeats.from_rate(mhr, seed=1, rsa_bpm=3.0, jitter_s=0.004, resp_hz=0.25)
    assert abs(b.t_s.size - 800) <= 2
    rr = np.diff(b.t_s)
    assert abs(60 / rr.mean() - 80) < 0.5
    # RSA: the beat interval swings with breathing (3 bpm at 80 bpm ~ +-28 ms).
    resp = b.respiration(b.t_s[:-1])
    assert np.corrcoef(resp, rr)[0, 1] < -0.5
    again = MaternalBeats.from_rate(mhr, seed=1, rsa_bpm=3.0, jitter_s=0.004, resp_hz=0.25)
    np.testing.assert_array_equal(b.t_s, again.t_s)


@pytest.mark.unit
@pytest.mark.parametrize("model", MATERNAL_MODELS)
def test_each_model_renders_and_is_deterministic(model):
    beats = MaternalBeats.from_rate(np.full(160, 90.0), seed=3)
    kw = dict(seed=4, maternal_model=model, beats=beats, snr_db=20.0)
    a = synthesize_doppler(np.full(160, 140.0), None, **kw)
    b = synthesize_doppler(np.full(160, 140.0), None, **kw)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.audio.size == 40 * FS and np.all(np.isfinite(a.audio))
    assert a.maternal_model is not None and a.maternal_model != "random"
    assert 0.15 <= a.maternal_arrival_s <= 0.30
    c = synthesize_doppler(np.full(160, 140.0), None, **{**kw, "seed": 5})
    assert not np.array_equal(a.audio, c.audio)


@pytest.mark.unit
def test_random_model_draws_every_kind():
    beats = MaternalBeats.from_rate(np.full(40, 90.0), seed=3)
    kinds = {
        synthesize_doppler(
            np.full(40, 140.0), None, seed=s, maternal_model="random", beats=beats
        ).maternal_model.split(":")[0]
        for s in range(24)
    }
    assert kinds == {"wall_inband", "flow", "thump", "mixture"}


@pytest.mark.unit
@pytest.mark.parametrize("model", ["wall_inband", "flow", "thump", "mixture", "flow_thump"])
@pytest.mark.parametrize("rate", [55.0, 160.0])
def test_maternal_doppler_is_locked_to_the_ppg(model, rate):
    seconds = 120
    beats = MaternalBeats.from_rate(np.full(seconds * 4, rate), seed=int(rate))
    sc = _maternal_only(model, beats, seconds, seed=7)
    ppg = synthesize_ppg(beats=beats, seed=8, movements_per_10min=0, noise=0.01)
    env = _envelope(sc.audio)
    p = _ppg_100hz(ppg)
    rr = 60.0 / rate
    lag, spread = _window_lags(env, p, rr)
    assert spread < 0.02, (lag, spread)
    # A fetal heart at a different rate gives no constant lag against the same PPG.
    fetal = synthesize_doppler(np.full(seconds * 4, rate + 7.0), None, seed=9, **QUIET)
    _, spread_f = _window_lags(_envelope(fetal.audio), p, rr)
    assert spread_f > 3 * spread


@pytest.mark.unit
def test_ppg_pulses_arrive_after_the_beats():
    beats = MaternalBeats.from_rate(np.full(240, 70.0), seed=2)
    ppg = synthesize_ppg(beats=beats, seed=3, movements_per_10min=0, noise=0.0, arrival_s=0.3)
    fs = 50
    # Systolic peak: the largest sample within 0.6 s after each beat, ~0.15 s after the foot.
    delays = []
    for b in beats.t_s[2:-2]:
        i0 = int(b * fs)
        k = int(np.argmax(ppg[i0 : i0 + int(0.6 * fs)]))
        delays.append((i0 + k) / fs - b)
    assert abs(np.median(delays) - 0.45) < 0.03
    assert np.std(delays) < 0.03


@pytest.mark.unit
def test_ppg_alone_still_draws_its_own_beats():
    a = synthesize_ppg(np.full(120, 75.0), seed=1)
    b = synthesize_ppg(np.full(120, 75.0), seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.size == 30 * 50


@pytest.mark.unit
@pytest.mark.parametrize("rate", [55.0, 160.0])
def test_extreme_maternal_rates_set_the_pulse_period(rate):
    from dsp.mhr import mhr_from_ppg

    beats = MaternalBeats.from_rate(np.full(480, rate), seed=1)
    assert abs(60.0 / np.mean(np.diff(beats.t_s)) - rate) < 1.0
    ppg = synthesize_ppg(beats=beats, seed=2, movements_per_10min=0)
    p = mhr_from_ppg(ppg, 50)
    rep = np.isfinite(p.mhr_bpm)
    assert rep.mean() > 0.8 and np.median(np.abs(p.mhr_bpm[rep] - rate)) < 2.0
    sc = _maternal_only("wall_inband", beats, 120, seed=3)
    env = _envelope(sc.audio)
    env = env - env.mean()
    acf = np.correlate(env, env, "full")[env.size - 1 :]
    lo = int(0.8 * 60 / rate * 100)
    hi = int(1.2 * 60 / rate * 100) + 1
    assert abs((lo + np.argmax(acf[lo:hi])) / 100 - 60 / rate) < 0.03


@pytest.mark.unit
@pytest.mark.parametrize("model", ["flow_thump", "wall_inband", "mixture"])
def test_fetal_absent_interval_has_no_fetal_energy(model):
    n = 4 * 80
    beats = MaternalBeats.from_rate(np.full(n, 85.0), seed=1)
    kw = dict(seed=6, beats=beats, maternal_model=model, snr_db=60.0)
    part = synthesize_doppler(np.full(n, 140.0), None, fetal_absent=[(20.0, 50.0)], **kw)
    none = synthesize_doppler(np.full(n, 140.0), None, fetal_absent=[(0.0, 80.0)], **kw)
    # Inside the interval the recording is the maternal vessel (and noise) alone.
    i0, i1 = int(20.2 * FS), int(49.8 * FS)
    np.testing.assert_allclose(part.audio[i0:i1], none.audio[i0:i1], rtol=0, atol=1e-9)
    inside = (part.t_s >= 20.0) & (part.t_s <= 50.0)
    assert np.all(part.fetal_absent == inside) and np.all(part.fetal_gain[inside] == 0)
    assert not part.movement[inside].any()
    # Without a maternal vessel, it is noise alone.
    quiet = synthesize_doppler(
        np.full(n, 140.0), None, seed=6, maternal_db=-100.0, fetal_absent=[(20.0, 50.0)]
    )
    assert np.sqrt(np.mean(quiet.audio[i0:i1] ** 2)) < 0.25  # noise at 15 dB SNR ~ 0.18
    assert np.sqrt(np.mean(quiet.audio[int(60 * FS) :] ** 2)) > 0.5


@pytest.mark.unit
def test_maternal_vessel_louder_when_fetus_absent():
    n = 4 * 60
    beats = MaternalBeats.from_rate(np.full(n, 85.0), seed=1)
    kw = dict(seed=2, beats=beats, maternal_model="flow", fetal_absent=[(0.0, 60.0)], **QUIET)
    base = synthesize_doppler(np.full(n, 140.0), None, **kw)
    loud = synthesize_doppler(np.full(n, 140.0), None, absent_maternal_db=6.0, **kw)
    ratio = np.std(loud.audio) / np.std(base.audio)
    assert abs(20 * np.log10(ratio) - 6.0) < 0.5


@pytest.mark.unit
def test_fetal_part_does_not_depend_on_the_maternal_model():
    n = 4 * 30
    beats = MaternalBeats.from_rate(np.full(n, 85.0), seed=1)
    a = synthesize_doppler(np.full(n, 140.0), None, seed=3, beats=beats, maternal_model="flow")
    b = synthesize_doppler(np.full(n, 140.0), None, seed=3, beats=beats, maternal_model="thump")
    np.testing.assert_array_equal(a.fetal_gain, b.fetal_gain)
    np.testing.assert_array_equal(a.movement, b.movement)


@pytest.mark.unit
def test_bad_inputs():
    fhr = np.full(40, 140.0)
    beats = MaternalBeats.from_rate(np.full(40, 80.0), seed=0)
    with pytest.raises(ValueError, match="maternal_model"):
        synthesize_doppler(fhr, None, beats=beats, maternal_model="vein")
    for bad in ([(5.0, 2.0)], [(np.nan, 3.0)], [(-1.0, 3.0)], [(1.0,)], [5.0]):
        with pytest.raises(ValueError, match="fetal_absent"):
            synthesize_doppler(fhr, None, beats=beats, fetal_absent=bad)
    with pytest.raises(ValueError, match="cover"):
        synthesize_doppler(np.full(80, 140.0), None, beats=beats)
    with pytest.raises(ValueError, match="maternal_arrival_s"):
        synthesize_doppler(fhr, None, beats=beats, maternal_arrival_s=-0.1)
    for rate in (np.full(40, 20.0), np.full(40, np.nan), np.full(4, 80.0), np.ones((8, 8))):
        with pytest.raises(ValueError):
            MaternalBeats.from_rate(rate)
    with pytest.raises(ValueError):
        MaternalBeats.from_rate(np.full(40, 80.0), rsa_bpm=-1.0)
    with pytest.raises(ValueError):
        beats.arrivals(-0.2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mhr_bpm_4hz or beats"):
        synthesize_ppg()


# -- the scatterer synthesizer ------------------------------------------------------------
# Each test renders minutes of audio from many moving scatterers, seconds of CPU apiece: they
# run in the system tier; the unit tier keeps to the inputs they refuse.


def _scatter(n, beats, **kw):
    from simulators.doppler_scatter import synthesize_doppler_scatter

    return synthesize_doppler_scatter(np.full(n, 140.0), beats, **kw)


@pytest.mark.system
@pytest.mark.parametrize("model", MATERNAL_MODELS)
def test_scatter_each_model_renders_and_is_deterministic(model):
    beats = MaternalBeats.from_rate(np.full(80, 90.0), seed=3)
    a = _scatter(80, beats, seed=4, maternal_model=model, snr_db=20.0)
    b = _scatter(80, beats, seed=4, maternal_model=model, snr_db=20.0)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.audio.size == 20 * FS and np.all(np.isfinite(a.audio))
    assert a.maternal_model is not None and a.maternal_model != "random"
    assert 0.15 <= a.maternal_arrival_s <= 0.30
    assert not np.array_equal(a.audio, _scatter(80, beats, seed=5, maternal_model=model).audio)


@pytest.mark.system
def test_scatter_snr_is_fetal_power_over_noise():
    kw = dict(seed=1, fades_per_10min=0.0, movements_per_10min=0.0)
    clean = _scatter(240, None, snr_db=60.0, **kw)
    noisy = _scatter(240, None, snr_db=0.0, **kw)
    noise = noisy.audio - clean.audio
    assert abs(10 * np.log10(np.mean(clean.audio**2) / np.mean(noise**2))) < 0.5
    assert clean.mhr_bpm is None and clean.maternal_model is None


@pytest.mark.system
@pytest.mark.parametrize("model", ["wall_inband", "flow", "thump", "mixture"])
@pytest.mark.parametrize("rate", [55.0, 160.0])
def test_scatter_maternal_is_locked_to_the_ppg(model, rate):
    seconds = 80
    beats = MaternalBeats.from_rate(np.full(seconds * 4, rate), seed=int(rate) + 1)
    sc = _scatter(
        seconds * 4,
        beats,
        seed=7,
        maternal_model=model,
        fetal_absent=[(0.0, seconds + 1.0)],
        maternal_db=0.0,
        **QUIET,
    )
    ppg = synthesize_ppg(beats=beats, seed=8, movements_per_10min=0, noise=0.01)
    p = _ppg_100hz(ppg)
    rr = 60.0 / rate
    _, spread = _window_lags(_envelope(sc.audio), p, rr)
    assert spread < 0.02
    fetal = _scatter(seconds * 4, None, seed=9, **QUIET)  # fetal heart at 140 bpm
    _, spread_f = _window_lags(_envelope(fetal.audio), p, rr)
    assert spread_f > 3 * spread


@pytest.mark.system
def test_scatter_flow_reaches_the_peak_systolic_shift():
    from scipy import signal

    # 60 cm/s at 45 degrees: 2 f0 v cos(theta) / c = 1102 Hz at 2 MHz.
    expected = 2 * 2.0e6 * 0.6 * np.cos(np.radians(45)) / 1540.0
    beats = MaternalBeats.from_rate(np.full(120, 75.0), seed=1)
    sc = _scatter(
        120,
        beats,
        seed=2,
        maternal_model="flow",
        fetal_absent=[(0.0, 40.0)],
        maternal_db=0.0,
        artery_psv_m_s=0.6,
        artery_angle_deg=45.0,
        **QUIET,
    )
    f, _, s = signal.spectrogram(sc.audio, FS, nperseg=256, noverlap=192)
    s, f = s[f > 100], f[f > 100]
    edge = f[np.argmax(np.cumsum(s, axis=0) / s.sum(axis=0) >= 0.95, axis=0)]
    top = np.percentile(edge, 99)  # the systolic peaks
    assert 0.8 * expected < top < 1.2 * expected
    # ... and the pitch falls in diastole (the diastolic tail, at 30-70 % of the peak).
    assert np.median(edge) < 0.85 * top


@pytest.mark.system
def test_scatter_fetal_absent_interval_has_no_fetal_energy():
    n = 4 * 60
    beats = MaternalBeats.from_rate(np.full(n, 85.0), seed=1)
    kw = dict(seed=6, maternal_model="wall_inband", snr_db=60.0)
    part = _scatter(n, beats, fetal_absent=[(20.0, 40.0)], **kw)
    none = _scatter(n, beats, fetal_absent=[(0.0, 60.0)], **kw)
    i0, i1 = int(20.1 * FS), int(39.9 * FS)
    np.testing.assert_allclose(part.audio[i0:i1], none.audio[i0:i1], rtol=0, atol=1e-9)
    inside = (part.t_s >= 20.0) & (part.t_s <= 40.0)
    assert np.all(part.fetal_absent == inside) and np.all(part.fetal_gain[inside] == 0)
    quiet = _scatter(n, None, seed=6, fetal_absent=[(20.0, 40.0)])
    assert np.sqrt(np.mean(quiet.audio[i0:i1] ** 2)) < 0.25  # the noise at 15 dB ~ 0.18
    assert np.sqrt(np.mean(quiet.audio[int(45 * FS) :] ** 2)) > 0.5


@pytest.mark.system
def test_scatter_fetal_rate_follows_the_trace():
    fhr = np.concatenate([np.full(120, 120.0), np.full(120, 160.0)])
    from simulators.doppler_scatter import synthesize_doppler_scatter

    sc = synthesize_doppler_scatter(fhr, None, seed=3, **QUIET)
    env = _envelope(sc.audio)
    for half, rate in ((env[:3000], 120.0), (env[3000:], 160.0)):
        x = half - half.mean()
        acf = np.correlate(x, x, "full")[x.size - 1 :]
        lo, hi = int(0.8 * 6000 / rate), int(1.2 * 6000 / rate) + 1
        assert abs((lo + np.argmax(acf[lo:hi])) / 100 - 60 / rate) < 0.02


@pytest.mark.unit
def test_scatter_bad_inputs():
    from simulators.doppler_scatter import synthesize_doppler_scatter as s

    beats = MaternalBeats.from_rate(np.full(40, 80.0), seed=0)
    fhr = np.full(40, 140.0)
    with pytest.raises(ValueError, match="bpm"):
        s(np.full(40, 300.0), beats)
    with pytest.raises(ValueError, match="fhr_bpm_4hz"):
        s(np.full(40, np.nan), beats)
    with pytest.raises(ValueError, match="fs_hz"):
        s(fhr, beats, fs_hz=500)
    with pytest.raises(ValueError, match="maternal_model"):
        s(fhr, beats, maternal_model="vein")
    with pytest.raises(ValueError, match="fetal_absent"):
        s(fhr, beats, fetal_absent=[(3.0, 1.0)])
    with pytest.raises(ValueError, match="cover"):
        s(np.full(80, 140.0), beats)
    with pytest.raises(ValueError, match="artery_angle_deg"):
        s(fhr, beats, artery_angle_deg=95.0)
    with pytest.raises(ValueError, match="snr_db"):
        s(fhr, beats, snr_db=np.nan)


# -- benchmark cases ------------------------------------------------------------------------


@pytest.mark.unit
def test_case_draws_cover_the_ranges():
    from simulators.fhr_cases import draw_case

    fhr = np.full(4 * 600, 140.0)
    cases = [draw_case(s, fhr) for s in range(200)]
    near = np.array([c.near_fetal for c in cases])
    assert 0.35 < near.mean() < 0.65
    for c in cases:
        m = np.median(c.mhr_bpm_4hz)
        assert 55.0 <= c.mhr_bpm_4hz.min() and c.mhr_bpm_4hz.max() <= 160.0
        if c.near_fetal:  # the drawn rate within 10 bpm, plus the slow wander
            assert abs(m - 140.0) <= 13.0
        else:
            assert abs(m - 140.0) >= 7.0
        ((t0, t1),) = c.fetal_absent
        assert 60.0 <= t1 - t0 <= 120.0 and 0.0 <= t0 and t1 <= 600.0
        assert -15.0 <= c.maternal_db <= 6.0 and 0.20 <= c.ppg_arrival_s <= 0.35
    assert {c.maternal_model for c in cases} == {"wall_inband", "flow", "thump", "mixture"}
    # A fetal baseline above the maternal range still gives near cases, at the top.
    high = [draw_case(s, np.full(400, 175.0)) for s in range(20)]
    assert all(np.median(c.mhr_bpm_4hz) >= 140 for c in high if c.near_fetal)


@pytest.mark.parametrize(
    "synthesizer",
    [
        pytest.param("noise", marks=pytest.mark.unit),
        pytest.param("scatter", marks=pytest.mark.system),
    ],
)
def test_maternal_case_renders_both_synthesizers(synthesizer):
    from simulators.fhr_cases import maternal_case

    fhr = 140.0 + 5 * np.sin(np.arange(4 * 100) / 4 / 20)
    sc, ppg, fs_ppg, beats = maternal_case(3, fhr, synthesizer=synthesizer)
    again = maternal_case(3, fhr, synthesizer=synthesizer)
    np.testing.assert_array_equal(sc.audio, again[0].audio)
    np.testing.assert_array_equal(ppg, again[1])
    assert sc.audio.size == 100 * FS and ppg.size == 100 * fs_ppg
    assert sc.fetal_absent.any() and np.all(sc.fetal_gain[sc.fetal_absent] == 0)
    assert beats.duration_s == 100.0 and sc.maternal_model is not None
    with pytest.raises(ValueError, match="synthesizer"):
        maternal_case(3, fhr, synthesizer="tone")


@pytest.mark.unit
def test_endless_doppler_and_ppg_from_one_mother_stay_locked():
    from simulators.doppler import DopplerSignal
    from simulators.ppg import PpgSignal

    n = 4 * 60
    beats = MaternalBeats.from_rate(np.full(n, 100.0), seed=5)
    dop = DopplerSignal(
        np.full(n, 140.0),
        None,
        seed=6,
        snr_db=40.0,
        beats=beats,
        maternal_model="wall_inband",
        fetal_absent=[(0.0, 61.0)],
        maternal_db=0.0,
    )
    ppg = PpgSignal(seed=7, beats=beats)
    audio = np.concatenate([dop.read(4000) for _ in range(90)]).astype(float)  # loops
    p = np.concatenate([ppg.read(50) for _ in range(90)]).astype(float)
    _, spread = _window_lags(_envelope(audio), _ppg_100hz(p), 0.6)
    assert spread < 0.02
