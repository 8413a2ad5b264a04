"""Doppler and PPG synthesizers, and the shared-record loader."""

import numpy as np
import pytest

from simulators import ctg_records
from simulators.doppler import DopplerSignal, beat_times, synthesize_doppler

pytestmark = pytest.mark.unit


def test_beat_count_follows_rate():
    rng = np.random.default_rng(0)
    beats = beat_times(np.full(240, 150.0), rng, 0.0)
    assert abs(beats.size - 150) <= 1
    assert np.allclose(np.diff(beats), 0.4, atol=0.01)


def test_scene_truth_and_snr():
    fhr = np.full(480, 140.0)
    clean = synthesize_doppler(
        fhr, None, snr_db=60, seed=1, fades_per_10min=0, movements_per_10min=0
    )
    noisy = synthesize_doppler(
        fhr, None, snr_db=0, seed=1, fades_per_10min=0, movements_per_10min=0
    )
    noise = noisy.audio - clean.audio
    snr = 10 * np.log10(np.mean(clean.audio**2) / np.mean(noise**2))
    assert abs(snr) < 0.5
    assert clean.t_s.size == 480 and clean.audio.size == 120 * 4000


def test_fetal_bursts_are_beat_locked_and_in_band():
    sc = synthesize_doppler(
        np.full(240, 120.0), None, snr_db=60, seed=2, fades_per_10min=0, movements_per_10min=0
    )
    spec = np.abs(np.fft.rfft(sc.audio)) ** 2
    freqs = np.fft.rfftfreq(sc.audio.size, 1 / 4000)
    assert spec[(freqs > 60) & (freqs < 900)].sum() > 0.9 * spec.sum()
    env = np.abs(sc.audio).reshape(-1, 40).mean(axis=1)  # 100 Hz envelope
    env = env - env.mean()
    acf = np.correlate(env, env, "full")[env.size - 1 :]
    assert 45 <= np.argmax(acf[30:80]) + 30 <= 55  # beat period 0.5 s


def test_fades_and_movement_recorded():
    sc = synthesize_doppler(
        np.full(2400, 140.0), np.full(2400, 80.0), seed=3, fades_per_10min=4, movements_per_10min=6
    )
    assert (sc.fetal_gain < 0.1).any() and sc.movement.any()


def test_doppler_signal_endless_int16():
    s = DopplerSignal(np.full(40, 140.0), np.full(40, 80.0), seed=4)
    a = s.read(30000)
    b = s.read(20000)  # crosses the 10 s loop
    assert a.dtype == np.int16 and a.size == 30000 and b.size == 20000
    assert np.std(a) > 100
    truth = s.truth_fhr_bpm(np.array([1.0, 12.0]))
    assert truth.shape == (2,)
    with pytest.raises(ValueError):
        DopplerSignal(np.array([np.nan] * 40))


def test_record_loader(monkeypatch, tmp_path):
    names = ctg_records.list_ctg_records()
    assert len(names) > 50
    t, f, uc = ctg_records.load_ctg_record(names[0])
    assert t.size == f.size == uc.size and t[0] == pytest.approx(0.25)
    monkeypatch.setenv("PERIMON_SHARED_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="PERIMON_SHARED_DIR"):
        ctg_records.list_ctg_records()


def test_rhythm_segment_fills_short_gaps():
    f = np.full(4000, 140.0)
    f[1000:1010] = np.nan
    start, seg = ctg_records.rhythm_segment(f, 600)
    assert start == 0 and np.all(np.isfinite(seg)) and seg.size == 2400


def test_maternal_arterial_flow_is_at_arterial_doppler_shifts():
    # Maternal signal dominant (+30 dB): its spectrum reaches far above the fetal wall band
    # and its pitch (spectral centroid) pulses at the maternal rate, 80 bpm.
    n = 240
    sc = synthesize_doppler(
        np.full(n, 140.0),
        np.full(n, 80.0),
        snr_db=60,
        seed=5,
        fades_per_10min=0,
        movements_per_10min=0,
        maternal_db=30.0,
    )
    spec = np.abs(np.fft.rfft(sc.audio)) ** 2
    freqs = np.fft.rfftfreq(sc.audio.size, 1 / 4000)
    assert spec[freqs < 150].sum() < 0.3 * spec.sum()
    assert spec[freqs > 300].sum() > 0.3 * spec.sum()
    frames = sc.audio[: sc.audio.size // 80 * 80].reshape(-1, 80)  # 20 ms frames
    p = np.abs(np.fft.rfft(frames * np.hanning(80), axis=1)) ** 2
    f = np.fft.rfftfreq(80, 1 / 4000)
    centroid = (p @ f) / p.sum(axis=1)
    c = centroid - centroid.mean()
    acf = np.correlate(c, c, "full")[c.size - 1 :]
    assert 35 <= np.argmax(acf[25:60]) + 25 <= 40  # 0.75 s period = 37.5 frames
