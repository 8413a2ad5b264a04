"""A Doppler ADC clock far off its nominal 4 kHz: the session flags the rate, and the fetal
processor withholds every FHR point from then on and raises the device-fault alert, instead
of publishing each rate off by the clock error (an 8 kHz ADC read as 4 kHz puts 140 bpm at 70,
or at a harmonic). Real audio through the real estimator: the points withheld had rates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dsp.fhr import FhrStream
from gateway import protocol as p
from gateway.config import ProcessingSection
from gateway.device.session import DeviceSession
from gateway.processing.fetal import DOPPLER_HZ, FetalProcessor
from simulators.doppler import synthesize_doppler

pytestmark = pytest.mark.system  # the Doppler synthesis and the FHR estimator (docs/testing.md)

ADC_HZ = 8000  # the board's ADC clock: twice the 4000 Hz every frame's seq counts at
FRAME = 240  # samples per Doppler frame (PCM16: 494 bytes, within the 509 a frame may be)


def test_fhr_from_a_doppler_adc_at_twice_its_rate_is_withheld_once_flagged() -> None:
    published: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=5.0)
    s.clock_offset_ms = 1_700_000_000_000
    proc = FetalProcessor(s, lambda parts, m, **kw: published.append((parts, m)),
                          ProcessingSection())  # fmt: skip
    s.processor = proc
    scene = synthesize_doppler(np.full(4 * 200, 140.0), fs_hz=ADC_HZ, seed=3,
                               fades_per_10min=0, movements_per_10min=0)  # fmt: skip
    audio = (scene.audio * 3000).astype("<i2")
    flagged_at = None
    for seq in range(0, len(audio) - FRAME, FRAME):
        t_ms = seq * 1000 // ADC_HZ  # the device's clock is right; its ADC is not
        s.on_frame(p.encode_frame(p.Frame(p.Flag(0), p.DeviceType.FETAL_HEART, p.Stream.DOPPLER,
                                          1, seq, t_ms, audio[seq : seq + FRAME].tobytes())))  # fmt: skip
        if seq // ADC_HZ != (seq + FRAME) // ADC_HZ:  # the gateway publishes once a second
            proc.flush()
            if flagged_at is None and s.state.rate_errors:
                flagged_at = len(published)
    proc.flush()

    assert s.state.rate_errors == {"doppler": pytest.approx(ADC_HZ, rel=0.02)}
    assert flagged_at is not None
    after = [m for parts, m in published[flagged_at:] if parts[-1] == "fhr"]
    assert len(after) >= 30  # points kept coming for the last minute, each one withheld
    assert all(v is None for m in after for v in m["fhr_bpm"])
    # the estimator alone gives those points a rate: they were withheld, not silent
    pts = FhrStream(DOPPLER_HZ).feed(audio.astype(np.float32))
    last_minute = pts.fhr_bpm[pts.t_s > pts.t_s[-1] - 60]
    assert np.mean(~np.isnan(last_minute)) > 0.25
    alerts = [m for parts, m in published if parts[-1] == "alert" and m["alert"] == "sample_rate"]
    assert alerts and alerts[0]["state"] == "raised"
