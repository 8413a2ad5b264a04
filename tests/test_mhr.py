"""Maternal rate from PPG."""

import numpy as np
import pytest

from dsp.mhr import MhrPoints, MhrStream, mhr_from_ppg
from simulators.ppg import PpgSignal, synthesize_ppg


@pytest.mark.parametrize("rate", [55.0, 85.0, 130.0])
def test_steady_rate(rate):
    mhr = rate + 4 * np.sin(np.arange(480) / 4 / 20)
    x = synthesize_ppg(mhr, seed=int(rate), movements_per_10min=0)
    p = mhr_from_ppg(x, 50)
    assert p.t_s.size == 480
    rep = np.isfinite(p.mhr_bpm)
    assert rep.mean() > 0.9
    assert np.median(np.abs(p.mhr_bpm[rep] - mhr[rep])) < 1.5


def test_streaming_equals_batch():
    x = synthesize_ppg(np.full(240, 90.0), seed=2)
    b = mhr_from_ppg(x, 50)
    st, parts, i = MhrStream(50), [], 0
    rng = np.random.default_rng(0)
    while i < x.size:
        n = int(rng.integers(0, 120))
        parts.append(st.feed(x[i : i + n]))
        i += n
    parts.append(st.flush())
    s = MhrPoints.concat(parts)
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
