"""A Doppler ADC clock far off its nominal 4 kHz: the session flags the rate, and the fetal
processor withholds every FHR point from then on and raises the device-fault alert, instead
of publishing each rate off by the clock error (a 2.8 kHz ADC read as 4 kHz shows 140 bpm as
200, to the end of the recording when nothing flags it). Real audio through the real estimator,
her pulse on the PPG as the FHR points need. The first minute's points, before the rate can be
known from the device's clock, are still shown."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gateway import protocol as p
from gateway.config import ProcessingSection
from gateway.device.session import DeviceSession
from gateway.processing.fetal import FetalProcessor
from simulators.doppler import synthesize_doppler
from simulators.ppg import PpgSignal

pytestmark = pytest.mark.system  # the Doppler synthesis and the FHR estimator (docs/testing.md)

ADC_HZ = 2800  # the board's ADC clock, 30 % below the 4000 Hz every frame's seq counts at
PPG_HZ = 50
FRAME = 240  # samples per Doppler frame (PCM16: 494 bytes, within the 509 a frame may be)


def test_fhr_from_a_doppler_adc_far_off_its_rate_is_withheld_once_flagged() -> None:
    published: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=5.0)
    s.clock_offset_ms = 1_700_000_000_000
    proc = FetalProcessor(s, lambda parts, m, **kw: published.append((parts, m)),
                          ProcessingSection())  # fmt: skip
    s.processor = proc
    scene = synthesize_doppler(np.full(4 * 200, 140.0), fs_hz=ADC_HZ, seed=3,
                               fades_per_10min=0, movements_per_10min=0)  # fmt: skip
    audio = (scene.audio * 3000).astype("<i2")
    # her pulse on the PPG (at its right rate), which the FHR points need to be shown at all
    ppg = PpgSignal(np.full(4 * 200, 80.0), PPG_HZ, seed=5).read(PPG_HZ * 200)
    flagged_at = None
    for seq in range(0, len(audio) - FRAME, FRAME):
        t_ms = seq * 1000 // ADC_HZ  # the device's clock is right; its ADC is not
        s.on_frame(p.encode_frame(p.Frame(p.Flag(0), p.DeviceType.FETAL_HEART, p.Stream.DOPPLER,
                                          1, seq, t_ms, audio[seq : seq + FRAME].tobytes())))  # fmt: skip
        if seq // ADC_HZ != (seq + FRAME) // ADC_HZ:  # a second: its PPG, then the publishing
            k = (seq + FRAME) // ADC_HZ * PPG_HZ - PPG_HZ
            for j in range(k, k + PPG_HZ, 25):
                s.on_frame(p.encode_frame(p.Frame(p.Flag(0), p.DeviceType.FETAL_HEART,
                                                  p.Stream.PPG, 1, j, j * 1000 // PPG_HZ,
                                                  ppg[j : j + 25].tobytes())))  # fmt: skip
            proc.flush()
            if flagged_at is None and s.state.rate_errors:
                flagged_at = len(published)
    proc.flush()

    assert s.state.rate_errors == {"doppler": pytest.approx(ADC_HZ, rel=0.02)}
    assert flagged_at is not None
    before = [v for parts, m in published[:flagged_at] if parts[-1] == "fhr" for v in m["fhr_bpm"]]
    shown = [v for v in before if v is not None]  # until it could be known: the first minute
    assert shown and np.median(shown) == pytest.approx(140 * 4000 / ADC_HZ, abs=5)
    after = [m for parts, m in published[flagged_at:] if parts[-1] == "fhr"]
    assert len(after) >= 30  # points kept coming for the last minute, each one withheld
    assert all(v is None for m in after for v in m["fhr_bpm"])  # unflagged: 200 bpm to the end
    alerts = [m for parts, m in published if parts[-1] == "alert" and m["alert"] == "sample_rate"]
    assert alerts and alerts[0]["state"] == "raised"
