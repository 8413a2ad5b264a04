"""A device session on bad, duplicated, out-of-order and mis-clocked input."""

from __future__ import annotations

import numpy as np

from gateway import protocol as p
from gateway.session import DeviceSession


class Recorder:
    def __init__(self) -> None:
        self.samples: list[tuple[int, int, int]] = []
        self.lost: list[tuple[int, int, int]] = []
        self.records: list[tuple[int, bytes]] = []
        self.boots: list[int] = []

    def on_samples(self, stream, seq, t_ms, samples):
        self.samples.append((stream, seq, len(samples)))

    def on_lost(self, stream, seq, count):
        self.lost.append((stream, seq, count))

    def on_record(self, stream, seq, t_ms, payload):
        self.records.append((stream, payload))

    def on_boot(self, boot):
        self.boots.append(boot)

    def tick(self, now):
        pass


def session() -> tuple[DeviceSession, Recorder]:
    s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=5)
    s.processor = Recorder()
    return s, s.processor


def ppg_frame(seq: int, t_ms: int, n: int = 25, boot: int = 1) -> bytes:
    payload = np.arange(n, dtype="<i2").tobytes()
    return p.encode_frame(p.Frame(p.Flag(0), 1, p.Stream.PPG, boot, seq, t_ms, payload))


def test_garbage_is_counted_not_raised():
    s, rec = session()
    rng = np.random.default_rng(1)
    for n in range(0, 300, 7):
        s.on_frame(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    s.on_frame(ppg_frame(0, 0)[:-1])  # truncated
    assert s.state.stats.malformed == len(range(0, 300, 7)) + 1 and s.state.stats.frames == 0
    assert rec.samples == []


def test_wrong_device_type_and_duplicates():
    s, rec = session()
    other = p.encode_frame(p.Frame(p.Flag(0), 2, p.Stream.PPG, 1, 0, 0, b"\x00\x00"))
    s.on_frame(other)
    assert s.state.stats.wrong_device == 1
    s.on_frame(ppg_frame(0, 0))
    s.on_frame(ppg_frame(0, 0))
    s.on_frame(ppg_frame(25, 500))
    assert rec.samples == [(1, 0, 25), (1, 25, 25)]
    assert s.state.stats.duplicates == 1


def test_reboot_is_not_a_gap():
    s, rec = session()
    s.on_frame(ppg_frame(0, 0, boot=1))
    s.on_frame(ppg_frame(25, 500, boot=1))
    s.on_frame(ppg_frame(0, 0, boot=2))
    assert rec.boots == [1, 2]
    assert rec.lost == [] and s.state.stats.lost_samples == 0
    assert rec.samples[-1] == (1, 0, 25)


def test_record_fragments_are_joined():
    s, rec = session()
    info = b'{"id": "fh-01", "firmware": "1.0.0"}'
    parts = [info[:10], info[10:20], info[20:]]
    for i, part in enumerate(parts):
        flags = p.Flag.MORE if i < 2 else p.Flag(0)
        s.on_frame(p.encode_frame(p.Frame(flags, 1, p.Stream.INFO, 1, i, 0, part)))
    assert rec.records == [(p.Stream.INFO, info)]
    assert s.state.info["firmware"] == "1.0.0"


def test_bad_status_and_info_records_are_flagged():
    s, rec = session()
    s.on_frame(p.encode_frame(p.Frame(p.Flag(0), 1, p.Stream.STATUS, 1, 0, 0, b"\x01")))
    s.on_frame(p.encode_frame(p.Frame(p.Flag(0), 1, p.Stream.INFO, 1, 0, 0, b"[not json")))
    assert s.state.stats.malformed == 2 and s.state.battery_mv is None


def test_a_device_sampling_at_the_wrong_rate_is_detected():
    s, _ = session()
    # claims 25 samples per frame at 50 Hz, but its clock says each frame took 550 ms (45 Hz)
    for k in range(200):
        s.on_frame(ppg_frame(25 * k, 550 * k))
    assert s.state.rate_errors == {"ppg": 45.5}
    good, _ = session()
    for k in range(200):  # 50 Hz with timestamps jittered by buffering, up to 0.5 s
        good.on_frame(ppg_frame(25 * k, 500 * k + (k * 7919) % 500))
    assert good.state.rate_errors == {}


def test_a_device_clock_jump_is_not_a_rate_error():
    s, rec = session()
    for k in range(400):
        jump = 3_600_000 if k >= 150 else 0  # the device clock is set forward an hour
        s.on_frame(ppg_frame(25 * k, 500 * k + jump))
    assert s.state.rate_errors == {} and len(rec.samples) == 400
