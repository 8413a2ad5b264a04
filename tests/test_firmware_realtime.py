"""Real-time headroom of the fetal monitor's firmware, under the MicroPython Unix port: the
Doppler path allocates nothing per sample (gc.mem_alloc deltas), the I2S DMA holds over a
second, an overrun is counted by the clock and leaves a gap in the sequence numbers with an
EV_GAP event instead of shifting the timeline, and the resend store is searched without copying
frames. The board HAL runs on tests/mpy/fake_machine.py, a stand-in for the ESP32's machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulators.fleet import FIRMWARE_DIR
from tests.harness.micropython import FIRMWARE_LIB, run_micropython

pytestmark = pytest.mark.system

MPY = Path(__file__).parent / "mpy"
_DMA_BYTES_PER_SAMPLE = 8  # the ESP32 port reads 32-bit stereo frames from an RX bus


@pytest.fixture(scope="module")
def hotpath() -> dict:
    out = run_micropython(MPY / "hotpath_check.py", str(FIRMWARE_DIR), str(MPY), heap="256K")
    return json.loads(out)


def test_the_doppler_read_allocates_nothing_per_sample(hotpath):
    # The board HAL reads straight into the array: what a read allocates is asyncio's (the
    # coroutine, the I/O wait), the same for 48 samples as for 438.
    assert hotpath["board_read_48"] == hotpath["board_read_438"] <= 512, hotpath
    assert hotpath["board_samples_ok"], hotpath
    assert hotpath["sim_push_take_438"] == 0, hotpath  # the simulated ADC ring and its read
    assert hotpath["feedback_feed_438"] == 0, hotpath  # the mother's feedback envelope
    # framing, signing and storing a frame allocate per frame (~110 ms), not per sample
    assert hotpath["frame_samples"] == 438 and hotpath["frame_alloc"] <= 2048, hotpath


def test_the_board_runs_at_240_mhz_with_over_a_second_of_dma(hotpath):
    assert hotpath["cpu_hz"] == 240_000_000
    assert hotpath["i2s_ibuf"] / _DMA_BYTES_PER_SAMPLE / 4000 >= 1.0, hotpath


def test_a_dma_overrun_is_counted_by_the_clock(hotpath):
    assert hotpath["lost_keeping_up"] == 0, hotpath
    # a 2 s stall: 8000 samples made, the DMA holds 4096; within one DMA buffer (256)
    assert abs(hotpath["lost_after_stall"] - (8000 - 4096)) <= 256, hotpath
    # What the DMA still holds after a block tells how old the block is (the frame's stamp,
    # main.py stamp()): nothing while the reads keep up, the DMA's worth less the block after
    # the stall; the simulated ring by its own ADC clock (samples the pipe still holds).
    assert hotpath["waiting_keeping_up"] == 0, hotpath
    assert hotpath["waiting_after_stall"] == 4096 - 438, hotpath
    assert hotpath["sim_waiting_caught_up"] == 500 - 438, hotpath
    # 2 s of samples and those made while the check ran on (more if this machine held it up)
    made_by_end = hotpath["sim_hold_us"] * 4000 // 1_000_000
    assert 8000 - 438 <= hotpath["sim_waiting_after_hold"] <= made_by_end - 438, hotpath
    assert hotpath["lost_reported_once"] == 0, hotpath
    assert hotpath["sim_lost"] == 5000 - 4096, hotpath  # the simulated ring: exactly


def test_samples_lost_on_the_device_leave_a_gap_and_an_event():
    out = json.loads(run_micropython(MPY / "doppler_gap_check.py", str(FIRMWARE_DIR)))
    sent = [tuple(s) for s in out["sent"]]
    doppler = [s for s in sent if s[0] == 0]
    assert [s[1] for s in doppler[:3]] == [0, 438, 876]
    lost = 12 * 438 - 4096  # 12 blocks came while the loop was away; the ring holds 4096
    assert doppler[3][1] == 3 * 438 + lost, sent
    assert sent[3] == (out["event"], None, out["ev_gap"]), sent  # said before the jump
    for a, b in zip(doppler[3:], doppler[4:], strict=False):
        assert b[1] == a[1] + a[2], sent  # contiguous after the gap


def test_the_resend_store_is_searched_without_copying_frames():
    out = json.loads(run_micropython(MPY / "framestore_alloc_check.py", str(FIRMWARE_LIB),
                                     heap="256K"))  # fmt: skip
    assert out["seek_found_newest"], out
    assert out["seek_alloc"] <= 64 and out["missing_alloc"] <= 64, out  # the result only
    assert out["find_alloc"] <= 2 * out["frame_len"] + 128, out  # the frame found, once
    assert out["resent"] == out["doppler_held"] > 0, out  # every one, searched from the last
