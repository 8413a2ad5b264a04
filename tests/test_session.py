"""A device session on bad, duplicated, out-of-order and mis-clocked input."""

from __future__ import annotations

import asyncio
import struct
import time
from types import SimpleNamespace

import numpy as np
import pytest

from gateway import protocol as p
from gateway.device import session as session_module
from gateway.device.auth import REPLAY_WINDOW, FrameAuth, seal_key, session_key, sign_frame
from gateway.device.sample_rate import StreamRate
from gateway.device.session import DeviceSession
from gateway.transports.base import DeviceLink
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.unit


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


def doppler_frame(seq: int, t_ms: int, n: int = 240, boot: int = 1) -> bytes:
    payload = np.zeros(n, dtype="<i2").tobytes()
    return p.encode_frame(p.Frame(p.Flag(0), 1, p.Stream.DOPPLER, boot, seq, t_ms, payload))


@pytest.mark.parametrize("adc_hz", [2800, 5200, 8000])
def test_a_doppler_adc_more_than_a_quarter_off_is_a_rate_error_not_a_clock_jump(adc_hz):
    """A span of a minute implies a rate far off 4000 Hz, drifting frame by frame, not in one
    step as a clock that jumped: a rate error after the first minute, and on. A fast ADC's
    frames look like a late anchor for its first ANCHOR_S (nominal samples): one span after."""
    s, _ = session()
    first = adc_hz * (62 + int(StreamRate.ANCHOR_S))  # one span of a minute after where it anchors
    for seq in range(0, first, 240):
        s.on_frame(doppler_frame(seq, seq * 1000 // adc_hz))
    assert s.state.rate_errors == {"doppler": pytest.approx(adc_hz, rel=0.01)}
    for seq in range(first // 240 * 240, adc_hz * 200, 240):
        s.on_frame(doppler_frame(seq, seq * 1000 // adc_hz))
    assert s.state.rate_errors == {"doppler": pytest.approx(adc_hz, rel=0.01)}


def test_two_clock_jumps_in_a_row_are_not_a_rate_error():
    s, rec = session()
    for k in range(700):  # the clock set forward an hour, then back 10 minutes, a minute on
        jump = 3_600_000 if k >= 150 else 0
        jump -= 600_000 if k >= 300 else 0
        s.on_frame(ppg_frame(25 * k, 500 * k + jump))
    assert s.state.rate_errors == {} and len(rec.samples) == 700


def test_jittered_timestamps_tell_a_clock_jump_from_a_rate_fault_in_one_span():
    """Frame stamps jittered by up to 0.5 s (buffering): a 20 s jump (a third of a span) in
    one step is a clock that jumped; a PPG at 65 Hz, jittered the same, is a rate error."""
    jumped, _ = session()
    for k in range(300):
        jitter = (k * 7919) % 500
        jumped.on_frame(ppg_frame(25 * k, 500 * k + jitter + (20_000 if k >= 100 else 0)))
    assert jumped.state.rate_errors == {}
    fast, _ = session()
    for k in range(200):  # 25 samples every 385 ms: 65 Hz
        fast.on_frame(ppg_frame(25 * k, 385 * k + (k * 7919) % 500))
    assert fast.state.rate_errors == {"ppg": pytest.approx(65, rel=0.02)}


def test_a_declared_rate_other_than_nominal_is_a_rate_error_at_once():
    """A board whose info says its Doppler runs at 8 kHz: every FHR would be off, and the
    processing knows only 4 kHz; flagged from the info on, not after two minutes of spans."""
    s, _ = session()
    info = b'{"id": "fh-01", "rates_hz": {"doppler": 8000, "ppg": 50}}'
    s.on_frame(p.encode_frame(p.Frame(p.Flag(0), 1, p.Stream.INFO, 1, 0, 0, info)))
    assert s.state.rate_errors == {"doppler": 8000.0}
    for seq in range(0, 4000 * 70, 240):  # its frames then say 4 kHz: the info still stands
        s.on_frame(doppler_frame(seq, seq // 4))
    assert s.state.rate_errors == {"doppler": 8000.0}
    nominal, _ = session()
    info = b'{"id": "fh-01", "rates_hz": {"doppler": 4000, "ppg": 50}}'
    nominal.on_frame(p.encode_frame(p.Frame(p.Flag(0), 1, p.Stream.INFO, 1, 0, 0, info)))
    assert nominal.state.rate_errors == {}


class ScriptedDevice(DeviceLink):
    """A device end that answers RESEND as the firmware does, from the frames it still holds
    (`held`: stream -> {seq: frame}), and TIME_SYNC with its clock (`clock_ms`, None: it does
    not answer); every RESEND is recorded."""

    device_id, device_type, name, att_mtu = "tcb-01", p.DeviceType.JAUNDICE, "tcb-01", 247

    def __init__(self, held: dict[int, dict[int, bytes]]) -> None:
        super().__init__()
        self.held = held
        self.requests: list[tuple[int, int, int]] = []
        self.clock_ms: int | None = 600_000
        self.syncs = 0
        self.sync_delay_s = 0.0  # how long its TIME_SYNC answer takes to come back
        self.answers_resend = True

    async def write(self, frame: bytes) -> None:
        f = p.decode_frame(frame)
        op, rid, args = f.payload[0], f.payload[1], f.payload[2:]
        if op == p.Op.TIME_SYNC:
            self.syncs += 1
            if self.clock_ms is not None:
                await asyncio.sleep(self.sync_delay_s)
                self._reply(op, rid, p.Status.OK, args + struct.pack("<I", self.clock_ms))
            return
        if op != p.Op.RESEND:
            self._reply(op, rid, p.Status.OK, b"")
            return
        stream, lo, hi = struct.unpack("<BII", args)
        self.requests.append((stream, lo, hi))
        if not self.answers_resend:
            return
        have = sorted(s for s in self.held.get(stream, {}) if lo <= s < hi)
        first = have[0] if have else hi
        if min(self.held.get(stream, {hi: b""}), default=hi) <= lo and have:
            first = lo
        status = p.Status.OK if have else p.Status.UNAVAILABLE
        self._reply(op, rid, status, struct.pack("<BII", stream, first, hi))
        for s in have:
            asyncio.get_running_loop().call_soon(self.on_frame, self.held[stream][s])

    def _reply(self, op: int, rid: int, status: int, data: bytes) -> None:
        payload = bytes((op, rid, status)) + data
        frame = p.encode_frame(p.Frame(p.Flag(0), p.DeviceType.JAUNDICE, p.Stream.REPLY, 1, rid,
                                       0, payload))  # fmt: skip
        asyncio.get_running_loop().call_soon(self.on_frame, frame)

    async def close(self) -> None:
        pass


def tcb_record(seq: int) -> bytes:
    """A whole TcB record (6 LEDs x 2 detectors x 5 flashes) whose counts carry `seq`."""
    head = struct.pack("<Bh4HBB", 1, 3650, 100, 100, 100, 100, 6, 5)
    return head + struct.pack("<6H", *[40] * 6) + struct.pack("<60H", *[1000 + seq] * 60)


def tcb_frame(seq: int, boot: int = 1) -> bytes:
    return p.encode_frame(p.Frame(p.Flag(0), p.DeviceType.JAUNDICE, p.Stream.TCB, boot, seq,
                                  1000 * seq, tcb_record(seq)))  # fmt: skip


def tcb_records(rec: Recorder) -> list[bytes]:
    return [r[1] for r in rec.records if r[0] == p.Stream.TCB]


def jaundice_session() -> tuple[DeviceSession, Recorder]:
    s = DeviceSession("tcb-01", p.DeviceType.JAUNDICE, gap_timeout_s=5)
    s.processor = Recorder()
    return s, s.processor


def test_readings_taken_while_away_come_on_connect_and_those_gone_are_reported_lost():
    """The device still holds readings 3..5 of this boot; 0..2 fell out of its buffer before
    the gateway first heard it: 3..5 are delivered in order and 0..2 counted lost, not skipped."""
    s, rec = jaundice_session()
    dev = ScriptedDevice({p.Stream.TCB: {k: tcb_frame(k) for k in (3, 4, 5)}})

    async def main() -> None:
        await s.attach(dev)
        s.on_frame(p.encode_frame(p.Frame(p.Flag(0), p.DeviceType.JAUNDICE, p.Stream.INFO, 1, 0,
                                          0, b'{"id": "tcb-01"}')))  # fmt: skip
        await s.after_connect()
        await eventually_async(lambda: len(tcb_records(rec)) == 3, 5, "the held readings")

    asyncio.run(main())
    assert dev.requests[0] == (p.Stream.TCB, 0, p.SEQ_END)
    assert tcb_records(rec) == [tcb_record(k) for k in (3, 4, 5)]
    assert (p.Stream.TCB, 0, 3) in rec.lost and s.state.stats.lost_records == 3


def test_device_info_left_in_the_store_is_asked_for_on_connect():
    """The meter's answer to GET_INFO (its calibration) was left to its store, the link being
    busy: no frame of the info stream was seen, so no gap shows; the connect asks for it anyway
    (without it every jaundice reading waits, then goes out without a number)."""
    s, rec = jaundice_session()
    info = p.encode_frame(p.Frame(p.Flag(0), p.DeviceType.JAUNDICE, p.Stream.INFO, 1, 0, 0,
                                  b'{"id": "tcb-01", "calibration": {}}'))  # fmt: skip
    dev = ScriptedDevice({p.Stream.INFO: {0: info}})

    async def main() -> None:
        await s.attach(dev)
        await s.after_connect()
        await eventually_async(lambda: s.state.info, 5, "the device info")

    asyncio.run(main())
    assert (p.Stream.INFO, 0, p.SEQ_END) in dev.requests
    assert s.state.info == {"id": "tcb-01", "calibration": {}}


def status_frame(seq: int) -> bytes:
    payload = struct.pack("<HBB", 3900 - seq, 80, 1)
    return p.encode_frame(p.Frame(p.Flag(0), p.DeviceType.JAUNDICE, p.Stream.STATUS, 1, seq,
                                  5000 * seq, payload))  # fmt: skip


def test_status_sent_while_away_is_asked_for_on_reconnect_not_when_the_next_one_comes():
    """Statuses 2 and 3 went out while the link was down; the reconnect asks for them at once
    (the next status would reveal the gap only 5 s later, when the device may hold it no more)."""
    s, rec = jaundice_session()
    dev = ScriptedDevice({p.Stream.STATUS: {k: status_frame(k) for k in (2, 3)}})

    def statuses() -> list:
        return [r for r in rec.records if r[0] == p.Stream.STATUS]

    async def main() -> None:
        await s.attach(dev)
        s.on_frame(status_frame(0))
        s.on_frame(status_frame(1))
        await s.after_connect()
        await eventually_async(lambda: len(statuses()) == 4, 5, "the statuses sent while away")

    asyncio.run(main())
    assert (p.Stream.STATUS, 2, p.SEQ_END) in dev.requests
    assert len(statuses()) == 4
    assert s.state.battery_mv == 3897 and s.state.stats.lost_records == 0


def test_a_gap_filling_from_its_bottom_is_asked_for_once_not_once_per_frame():
    s, rec = session()
    dev = ScriptedDevice({})
    dev.device_type = p.DeviceType.FETAL_HEART

    async def main() -> None:
        await s.attach(dev)
        s.on_frame(ppg_frame(0, 0))
        s.on_frame(ppg_frame(250, 5000))  # 9 frames (225 samples) missing: one gap
        await eventually_async(lambda: dev.requests, 5, "the gap was not asked for")
        for k in range(1, 10):  # the resend trickles in from the bottom of the gap
            s.on_frame(ppg_frame(25 * k, 500 * k))
            await asyncio.sleep(0.01)  # frame by frame, as a radio delivers them

    asyncio.run(main())
    ppg_asks = [r for r in dev.requests if r[0] == p.Stream.PPG]
    assert ppg_asks == [(p.Stream.PPG, 25, 250)], ppg_asks
    assert rec.lost == [] and [x[1] for x in rec.samples] == [25 * k for k in range(11)]


class TimedRecorder(Recorder):
    """Also the wall time the session gives each record when it is handed on."""

    def __init__(self, session: DeviceSession) -> None:
        super().__init__()
        self.session = session
        self.times: list[float] = []

    def on_record(self, stream, seq, t_ms, payload):
        super().on_record(stream, seq, t_ms, payload)
        self.times.append(self.session.unix_time(t_ms))


def test_a_reading_before_the_clock_sync_waits_for_it_and_gets_its_own_time():
    """Reading 0 was taken 9 minutes into the boot; the device clock reads 10 minutes when the
    sync comes. Handed on before the sync, it was timed at its arrival (a minute late; hours
    for a reading held through an outage); now it waits, and is timed 60 s before the sync."""
    s = DeviceSession("tcb-01", p.DeviceType.JAUNDICE, gap_timeout_s=5)
    rec = s.processor = TimedRecorder(s)
    dev = ScriptedDevice({})

    async def main() -> None:
        await s.attach(dev)
        s.on_frame(p.encode_frame(p.Frame(p.Flag(0), p.DeviceType.JAUNDICE, p.Stream.TCB, 1, 0,
                                          540_000, tcb_record(0))))  # fmt: skip
        assert tcb_records(rec) == []  # its time is not known yet
        await s.time_sync()

    before = time.time()
    asyncio.run(main())
    assert tcb_records(rec) == [tcb_record(0)]
    assert rec.times[0] == pytest.approx(before - 60, abs=1)


def test_a_slow_clock_sync_does_not_replace_a_good_clock_until_three_in_a_row():
    """A sync whose answer took 0.4 s may be 0.2 s off, and every reading's wall time with it.
    The clock in use is kept and the sync tried again soon; only a link slow three times in a
    row has its slow sync taken."""
    s = DeviceSession("tcb-01", p.DeviceType.JAUNDICE, gap_timeout_s=5)
    dev = ScriptedDevice({})

    async def main() -> list[float | None]:
        await s.attach(dev)
        await s.time_sync()
        offsets = [s.clock_offset_ms]
        dev.clock_ms -= 5_000  # a slow answer, with a clock that would move the offset 5 s
        dev.sync_delay_s = 0.4
        for _ in range(3):
            await s.time_sync()
            offsets.append(s.clock_offset_ms)
            assert time.monotonic() - s._last_sync < session_module._TIME_SYNC_EVERY_S - 4
        await s.time_sync()  # the fourth slow one in a row
        offsets.append(s.clock_offset_ms)
        return offsets

    first, *set_aside, taken = asyncio.run(main())
    assert first is not None and set_aside == [first] * 3
    assert taken - first > 4_000  # the fourth is taken: the offset moves by the 5 s


def test_a_first_clock_from_a_slow_sync_is_taken_and_replaced_by_a_quick_one_soon():
    """A boot's first sync is taken however slow (its readings wait for a clock), but the next
    is tried in seconds, not minutes; a quick one then replaces it."""
    s = DeviceSession("tcb-01", p.DeviceType.JAUNDICE, gap_timeout_s=5)
    dev = ScriptedDevice({})

    async def main() -> tuple[float | None, float, float | None]:
        await s.attach(dev)
        dev.sync_delay_s = 0.4
        await s.time_sync()
        slow = s.clock_offset_ms
        due_in = s._last_sync + session_module._TIME_SYNC_EVERY_S - time.monotonic()
        dev.sync_delay_s = 0.0
        dev.clock_ms -= 5_000  # so that the quick sync's offset is told apart
        await s.time_sync()
        return slow, due_in, s.clock_offset_ms

    slow, due_in, quick = asyncio.run(main())
    assert slow is not None and due_in <= session_module._TIME_SYNC_RETRY_S + 0.5
    assert quick is not None and quick - slow > 4_000


def test_a_reading_waits_while_the_device_does_not_answer_the_clock_sync():
    s = DeviceSession("tcb-01", p.DeviceType.JAUNDICE, gap_timeout_s=5)
    rec = s.processor = TimedRecorder(s)
    dev = ScriptedDevice({})
    dev.clock_ms = None

    async def main() -> None:
        await s.attach(dev)
        s.on_frame(tcb_frame(0))
        s.tick()  # the boot is new: its clock is synced at once (unanswered here)
        await eventually_async(lambda: dev.syncs == 1, 5, "a clock sync")
        assert tcb_records(rec) == []
        dev.clock_ms = 600_000
        await s.time_sync()  # as the tick's next try does, a few seconds on

    asyncio.run(main())
    assert tcb_records(rec) == [tcb_record(0)]


def test_a_new_boot_forgets_the_old_boots_clock_offset():
    """Boot 1 was synced 10 h into it; boot 2's clock starts at 0 again: keeping the offset
    would put its readings 10 h in the past until the next sync."""
    s, rec = session()
    s.on_frame(ppg_frame(0, 36_000_000, boot=1))
    s.clock_offset_ms = time.time() * 1000 - 36_000_000
    s.on_frame(ppg_frame(0, 5_000, boot=2))
    assert s.clock_offset_ms is None
    assert s.unix_time(5_000) == pytest.approx(time.time(), abs=1)


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """The session's monotonic clock, moved on by the test (wall time stays real)."""
    now = [1000.0]
    fake = SimpleNamespace(monotonic=lambda: now[0], time=time.time)
    monkeypatch.setattr(session_module, "time", fake)
    return now


def synced_jaundice_session() -> tuple[DeviceSession, Recorder]:
    s, rec = jaundice_session()
    s.state.boot, s.clock_offset_ms = 1, 1_700_000_000_000.0
    return s, rec


def test_a_reading_sent_while_the_link_is_down_is_not_given_up_before_it_can_be_resent(clock):
    """Reading 1 was taken while the link was down; 2 came on a short reconnection. A gap ages
    only while a resend can come: 16 s without a link (gap timeout 5 s) give up nothing, and
    the next connection asks for it and gets it, in order."""
    s, rec = synced_jaundice_session()

    async def short_link() -> None:
        dev = ScriptedDevice({})
        dev.answers_resend = False  # the link drops before any answer
        await s.attach(dev)
        s.on_frame(tcb_frame(0))
        s.on_frame(tcb_frame(2))
        s.detach("link lost")

    asyncio.run(short_link())
    for _ in range(16):
        clock[0] += 1.0
        s.tick()
    assert tcb_records(rec) == [tcb_record(0)] and rec.lost == []
    dev = ScriptedDevice({p.Stream.TCB: {k: tcb_frame(k) for k in (1, 2)}})

    async def main() -> None:
        await s.attach(dev)
        await s.after_connect()
        await eventually_async(lambda: len(tcb_records(rec)) == 3, 5, "reading 1, resent")

    asyncio.run(main())
    assert (p.Stream.TCB, 1, p.SEQ_END) in dev.requests
    assert tcb_records(rec) == [tcb_record(k) for k in (0, 1, 2)]
    assert rec.lost == [] and s.state.stats.lost_records == 0


def test_a_reading_given_up_is_asked_for_on_every_connection_and_taken_late(clock):
    """The device did not answer for reading 1 within the gap timeout: 2 went on, 1 counted
    lost. The next connection asks for 1 again; it comes, is handed on late and is no longer
    lost. Once the device says it holds it no more, it is not asked for again."""
    s, rec = synced_jaundice_session()
    dev = ScriptedDevice({})
    dev.answers_resend = False

    async def given_up() -> None:
        await s.attach(dev)
        s.on_frame(tcb_frame(0))
        s.on_frame(tcb_frame(2))
        clock[0] += 6.0
        s.tick()
        s.detach("link lost")

    asyncio.run(given_up())
    assert tcb_records(rec) == [tcb_record(0), tcb_record(2)]
    assert rec.lost == [(p.Stream.TCB, 1, 1)] and s.state.stats.lost_records == 1
    dev = ScriptedDevice({p.Stream.TCB: {1: tcb_frame(1)}})

    async def reconnect(d: ScriptedDevice) -> None:
        await s.attach(d)
        await s.after_connect()
        await eventually_async(lambda: (p.Stream.TCB, 1, 2) in d.requests, 5, "ask for 1")
        await asyncio.sleep(0.05)  # the resend, if any, is handed on

    asyncio.run(reconnect(dev))
    assert tcb_records(rec) == [tcb_record(k) for k in (0, 2, 1)]
    assert s.state.stats.lost_records == 0 and s.state.stats.duplicates == 0
    s.detach("link lost")
    again = ScriptedDevice({})

    async def later(d: ScriptedDevice) -> None:
        await s.attach(d)
        await s.after_connect()

    asyncio.run(later(again))
    assert not any(r[1:] == (1, 2) for r in again.requests)  # taken: not asked for again


def test_a_reading_the_device_no_longer_holds_stays_lost_and_is_not_asked_for_again(clock):
    s, rec = synced_jaundice_session()
    dev = ScriptedDevice({})
    dev.answers_resend = False

    async def given_up() -> None:
        await s.attach(dev)
        s.on_frame(tcb_frame(0))
        s.on_frame(tcb_frame(2))
        clock[0] += 6.0
        s.tick()
        s.detach("link lost")

    asyncio.run(given_up())

    async def reconnect(d: ScriptedDevice) -> None:
        await s.attach(d)
        await s.after_connect()
        s.detach("link lost")

    gone = ScriptedDevice({})  # it holds nothing of [1, 2): status 3
    asyncio.run(reconnect(gone))
    assert (p.Stream.TCB, 1, 2) in gone.requests
    again = ScriptedDevice({})
    asyncio.run(reconnect(again))
    assert (p.Stream.TCB, 1, 2) not in again.requests
    assert s.state.stats.lost_records == 1 and tcb_records(rec) == [tcb_record(0), tcb_record(2)]


class Link(DeviceLink):
    """A fetal monitor's end that records the RESEND ranges it is sent, as on the wire."""

    device_id, device_type, name, att_mtu = "fh-01", p.DeviceType.FETAL_HEART, "fh-01", 247

    def __init__(self, clock_ms: int = 0) -> None:
        super().__init__()
        self.resends: list[tuple[int, int, int]] = []
        self.clock_ms = clock_ms  # its t_ms, 32 bits, when a TIME_SYNC comes

    async def write(self, frame: bytes) -> None:
        f = p.decode_frame(frame)
        op, rid, args = f.payload[0], f.payload[1], f.payload[2:]
        if op == p.Op.RESEND:
            self.resends.append(p.decode_resend_args(args))
        elif op == p.Op.TIME_SYNC:
            data = bytes((op, rid, p.Status.OK)) + args + struct.pack("<I", self.clock_ms)
            reply = p.Frame(p.Flag(0), 1, p.Stream.REPLY, 1, rid, self.clock_ms, data)
            asyncio.get_running_loop().call_soon(self.on_frame, p.encode_frame(reply))

    async def close(self) -> None:
        pass


WRAP = 1 << 32


def test_doppler_numbers_go_on_across_the_32_bit_wrap_of_seq_and_t_ms():
    """12.4 days into a boot the Doppler's sample counter wraps (49.7 days its clock): every
    frame after it is taken in order, numbered on past 2**32, not dropped as a duplicate."""
    s, rec = session()
    times: list[int] = []
    rec.on_samples = lambda stream, seq, t_ms, x: (rec.samples.append((stream, seq, len(x))),
                                                    times.append(t_ms))  # fmt: skip
    seq, t_ms = WRAP - 2400, WRAP - 600  # ten frames before both wrap
    for _ in range(30):
        s.on_frame(doppler_frame(seq % WRAP, t_ms % WRAP))
        seq, t_ms = seq + 240, t_ms + 60
    assert [x[1] for x in rec.samples] == [WRAP - 2400 + 240 * k for k in range(30)]
    assert times == [WRAP - 600 + 60 * k for k in range(30)]
    assert s.state.stats.duplicates == 0 and rec.lost == []


def test_a_gap_after_the_wrap_is_asked_for_in_the_devices_numbers_and_filled():
    s, rec = session()
    dev = Link()

    async def main() -> None:
        await s.attach(dev)
        for k in range(-10, 3):  # up to the wrap and on
            s.on_frame(doppler_frame((WRAP + 240 * k) % WRAP, 1000 + 60 * k))
        s.on_frame(doppler_frame(240 * 6, 1000 + 360))  # 3, 4 and 5 missing
        await eventually_async(lambda: dev.resends, 5, "the gap asked for")
        for k in (3, 4, 5):  # resent
            s.on_frame(p.encode_frame(p.Frame(p.Flag.RESENT, 1, p.Stream.DOPPLER, 1, 240 * k,
                                              1000 + 60 * k, bytes(480))))  # fmt: skip

    asyncio.run(main())
    assert dev.resends[0] == (p.Stream.DOPPLER, 720, 1440)  # the low 32 bits, as it counts
    assert [x[1] for x in rec.samples] == [WRAP + 240 * k for k in range(-10, 7)]
    assert rec.lost == []


def test_a_signed_stream_is_not_taken_for_a_replay_after_its_wrap():
    """The replay check remembers the last 8192 numbers of a stream and refuses anything
    older: after the wrap every frame would be older, had it the device's 32-bit number."""
    key = bytes(range(100, 132))
    s, rec = session()
    s.state.boot = 1
    s.auth = FrameAuth(key, s.state.stats)
    a = s.auth
    a.new_connection()
    k_s = session_key(key, 1, b"\x02" * 8)
    a.boot, a.key, a.conn_nonce = 1, k_s, b"\x03" * 8
    a.seal_key, a.boot_nonce = seal_key(k_s), b"\x02" * 8
    first = WRAP - 240 * (REPLAY_WINDOW + 10)
    for seq in range(first, WRAP + 240 * 20, 240):
        frame = p.Frame(
            p.Flag(0), 1, p.Stream.DOPPLER, 1, seq % WRAP, (seq // 4) % WRAP, bytes(480)
        )
        s.on_frame(sign_frame(k_s, frame))
    assert s.state.stats.replayed == 0 and s.state.stats.duplicates == 0
    assert rec.samples[-1][1] == WRAP + 240 * 19 and len(rec.samples) == REPLAY_WINDOW + 30


def test_the_clock_sync_after_the_wrap_of_t_ms_times_frames_on_either_side_of_it():
    """49.7 days into a boot the device's clock wraps. A sync 5 s after it, and the frames
    of the second before it and of the 3.8 s after it, are all on one clock."""
    s, rec = session()
    device_ms: list[int] = []
    rec.on_samples = lambda stream, seq, t_ms, x: device_ms.append(t_ms)
    dev = Link(clock_ms=5_000)

    async def main() -> None:
        await s.attach(dev)
        for k in range(20):  # the last second before the wrap of t_ms, then 3.8 s after it
            s.on_frame(doppler_frame(240 * k, (WRAP - 1000 + 240 * k) % WRAP))
        await s.time_sync()

    asyncio.run(main())
    now = time.time()
    assert s.unix_time(device_ms[0]) == pytest.approx(now - 6.0, abs=1)
    assert s.unix_time(device_ms[-1]) == pytest.approx(now - 1.44, abs=1)


def test_a_restarted_gateway_resumes_a_boot_after_the_wrap_where_it_stopped():
    """The outbox's mark says the boot's trace was published up to a sample past 2**32: the
    frames that come, numbered by the device in 32 bits, are taken from there on."""
    s, rec = session()
    resume_at = WRAP + 24_000
    s.on_new_boot = lambda boot: s.resume_from.update({p.Stream.DOPPLER: resume_at})
    for k in range(10):
        s.on_frame(doppler_frame((resume_at + 240 * k) % WRAP, (resume_at // 4 + 60 * k) % WRAP))
    assert [x[1] for x in rec.samples] == [resume_at + 240 * k for k in range(10)]
    assert s.state.stats.duplicates == 0 and rec.lost == []


class SilentLink(DeviceLink):
    """A device that takes every write and never answers."""

    device_id, device_type, name, att_mtu = "fh-01", p.DeviceType.FETAL_HEART, "fh-01", 247

    async def write(self, frame: bytes) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.mark.unit
def test_a_wait_for_a_reply_ends_as_none_when_the_link_goes_and_passes_a_stop_on():
    """The link's end (its pending replies cancelled) is a failed control write: None. The
    gateway stopping (the waiting task cancelled) is not: it is passed on, so the task that
    waited ends instead of carrying on as if its device had not answered."""
    from gateway.device.control import await_reply

    async def main() -> tuple[object, bool]:
        pending: dict[int, asyncio.Future[p.Reply]] = {}
        link_gone = asyncio.create_task(await_reply(SilentLink(), b"x", 1, pending, 30.0))
        await eventually_async(lambda: 1 in pending, 5, "no reply awaited")
        pending[1].cancel()  # what the session does with its pending replies when a link ends
        gone = await link_gone
        stopped = asyncio.create_task(await_reply(SilentLink(), b"x", 2, pending, 30.0))
        await eventually_async(lambda: 2 in pending, 5, "no reply awaited")
        stopped.cancel()
        await asyncio.wait({stopped})
        return gone, stopped.cancelled()

    gone, passed_on = asyncio.run(main())
    assert gone is None and passed_on
