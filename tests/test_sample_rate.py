"""StreamRate's bound (gateway/device/sample_rate.py): when a stream's frames so far bound its
sample rate within tolerance. The FHR waits for it after a connect (docs/fhr.md, "How long
before the first rate"): a link drop refilled by resends, frames arriving out of order, must
not delay it, and nothing but the device's stamps may shorten it. (The span check of the
same object: tests/test_session.py, tests/test_rate_fault.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from gateway import protocol as p
from gateway.device.sample_rate import StreamRate
from gateway.device.session import DeviceSession
from gateway.processing.fetal import DOPPLER_HZ

pytestmark = pytest.mark.unit

FRAME = 438  # Doppler samples per BLE frame, as the firmware sends them (tests/test_ble_e2e.py)


def frames(
    seconds: float,
    true_hz: float = DOPPLER_HZ,
    late_ms: dict[int, float] | None = None,
    size: int = FRAME,
) -> list[tuple[int, int]]:
    """(seq, t_ms) of the Doppler frames of the first `seconds`: each stamped when its samples
    were read by a clock running at `true_hz`, plus a sawtooth of up to 40 ms (the device reads
    its ADC buffer four frames at a time), plus `late_ms` for frame k."""
    late_ms = late_ms or {}
    out = []
    for k in range(int(seconds * DOPPLER_HZ / size)):
        seq = k * size
        t = (seq + size) * 1000.0 / true_hz + 250.0 + 10.0 * (3 - k % 4) + late_ms.get(k, 0.0)
        out.append((seq, round(t)))
    return out


def first_known_s(stamps: list[tuple[int, int]]) -> float | None:
    """Seconds of frames (by seq) after which the bound is within tolerance, as they arrive."""
    rate = StreamRate(DOPPLER_HZ)
    for seq, t_ms in stamps:
        rate.add(seq, t_ms)
        if rate.bound:
            return (seq + FRAME) / DOPPLER_HZ
    return None


def doppler_frame(seq: int, t_ms: int) -> bytes:
    payload = np.zeros(240, dtype="<i2").tobytes()  # PCM16 frames (438 is compressed audio)
    return p.encode_frame(p.Frame(p.Flag(0), 1, p.Stream.DOPPLER, 1, seq, t_ms, payload))


def test_steady_stamps_bound_the_rate_after_its_two_seconds():
    known = first_known_s(frames(10))
    assert known is not None and StreamRate.MIN_SPAN_S <= known <= 2.5


def test_frames_resent_after_a_drop_arriving_late_and_out_of_order_change_nothing():
    """A drop: frames 10-19 come after 20-29 (resent once the link is back). The session puts
    them back in order before the rate sees them: the bound is known, from the same frames,
    as soon as the gap fills, and the gap does not hold it."""
    stamps = frames(10, size=240)
    reordered = stamps[:10] + stamps[20:30] + stamps[10:20] + stamps[30:]
    known_at = {}
    for name, order in (("in order", stamps), ("reordered", reordered)):
        s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=5)
        for k, (seq, t_ms) in enumerate(order):
            s.on_frame(doppler_frame(seq, t_ms))
            if name not in known_at and s.rates[p.Stream.DOPPLER].bound:
                known_at[name] = k
        assert s.rates[p.Stream.DOPPLER].bound
    assert known_at["reordered"] <= max(known_at["in order"], 29), known_at


def test_one_late_stamp_holds_the_bound_until_the_span_outgrows_it():
    """Measured on the BLE rig: one frame stamped 150 ms late held the Doppler's rate unknown
    until 6.2 s of frames. The stamps may be that late anywhere, so the bound waits."""
    known = first_known_s(frames(10, late_ms={9: 150.0}))
    assert known is not None and 5.0 <= known <= 7.0


def test_a_wrong_adc_clock_is_never_bounded():
    assert first_known_s(frames(60, true_hz=2800)) is None
    assert first_known_s(frames(60, true_hz=4200)) is None  # 5% fast


def known_per_frame(stamps: list[tuple[int, int]]) -> list[bool]:
    rate = StreamRate(DOPPLER_HZ)
    out = []
    for seq, t_ms in stamps:
        rate.add(seq, t_ms)
        out.append(rate.bound)
    return out


@pytest.mark.parametrize("late_ms", [400.0, 1000.0, 3000.0])
def test_a_late_stamp_after_the_rate_is_bound_does_not_hold_the_points_again(late_ms):
    """The device's process held up for a moment (a CPU-bound neighbour): one frame 10 s in
    is stamped late. Before, the bound widened again and every FHR point waited until the span
    had outgrown it (3.4 s for 400 ms, 23 s for 1 s); it was already known from the frames."""
    late = int(10 * DOPPLER_HZ / FRAME)
    known = known_per_frame(frames(60, late_ms={late: late_ms}))
    first = known.index(True)
    assert all(known[first:])


def test_a_rate_that_drifts_off_after_being_bound_is_unknown_again():
    """The ADC clock turns 6% fast 10 s into the boot: the frames' own span says so."""
    fast = frames(40, true_hz=DOPPLER_HZ * 1.06)
    shift = fast[len(frames(10))][1] - frames(11)[len(frames(10))][1]  # joined at 10 s
    stamps = frames(10) + [(seq, t_ms - shift) for seq, t_ms in fast[len(frames(10)) :]]
    known = known_per_frame(stamps)
    assert any(known[: len(frames(10))])
    assert not known[-1]


def test_a_backlog_at_the_start_ages_out_of_the_window():
    """A boot under load: the device reads its first 5 s of samples all at once, at 5 s, and
    steadily after. Before, the spread of those stamps held the rate unknown until the
    session's check a minute in (no point published meanwhile); now the window outgrows them."""
    n5 = len(frames(5))
    stamps = frames(60)
    backlog = [(seq, max(t, stamps[n5][1])) for seq, t in stamps[:n5]] + stamps[n5:]
    known = first_known_s(backlog)
    assert known is not None and known <= 5 + StreamRate.WINDOW_S + 1
    assert first_known_s(frames(10)) is not None  # steady stamps: as soon as before
