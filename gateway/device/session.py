"""One device as the gateway sees it, across reconnects and reboots.

A session checks each frame, puts every stream back in order, asks the device to resend what
a dropped link lost, maps device time to wall time, and hands in-order samples and records to
the device's processor. Nothing here knows MQTT or DSP: the processor and publisher do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from gateway import protocol as p
from gateway.device.auth import FrameAuth
from gateway.device.control import await_reply, unsigned_control_frame
from gateway.device.journal import JournalItem, SampleJournal
from gateway.device.reorder import Item, Lost, Reorderer, unwrap_u32
from gateway.device.sample_rate import StreamRate
from gateway.transports.base import DeviceLink

log = logging.getLogger(__name__)

_RESEND_RETRY_S = 1.0
_TIME_SYNC_EVERY_S = 300.0
_TIME_SYNC_RETRY_S = 5.0  # while this boot's clock is not synced: its readings wait for it
# A sync's round trip longer than this leaves its offset up to half of it off (the device read
# its clock somewhere in the trip): while a clock is in use (an earlier sync, or the journal's
# after a restart) such a sync is set aside and tried again in _TIME_SYNC_RETRY_S, up to
# _SLOW_SYNCS_SET_ASIDE times in a row, so a link that is always slow still gets synced. A
# boot's first clock is taken from a slow sync (its readings wait for one), and a quicker sync
# is tried in _TIME_SYNC_RETRY_S, not _TIME_SYNC_EVERY_S, to replace it.
_SYNC_ROUND_TRIP_MAX_MS = 200.0
_SLOW_SYNCS_SET_ASIDE = 3
_WARN_EVERY_S = 10.0
_last_warning: dict[str, tuple[float, int]] = {}  # device id -> (last warned, suppressed since)
_STILL_MISSING_RANGES = 64  # per reading stream: ranges given up, asked for on each connect
_ALL_FROM = 1 << 64  # the end of a RESEND to SEQ_END, among unwrapped numbers
_RESUME_SLACK = 1024  # samples: more than a sample frame holds at any MTU (firmware: 480)


class Processor(Protocol):
    """What a device type does with its in-order data (gateway/processing/fetal.py,
    gateway/processing/jaundice.py). The session feeds it; the gateway asks it for its status,
    resumes it after a restart, applies settings to it and flushes it when stopping."""

    def on_samples(self, stream: int, seq: int, t_ms: int, samples: NDArray[np.int16]) -> None: ...
    def on_lost(self, stream: int, seq: int, count: int) -> None: ...
    def on_record(self, stream: int, seq: int, t_ms: int, payload: bytes) -> None: ...
    def on_boot(self, boot: int) -> None: ...
    def tick(self, now: float) -> None: ...
    def status_fields(self) -> dict[str, Any]: ...
    def flush(self) -> None: ...
    def resume(self, marks: dict[str, int], recent: dict[str, list[dict[str, Any]]]) -> None:
        """After a gateway restart part-way through a boot: `marks` is the last point or
        reading of each kind the outbox holds, `recent` the trace messages it still keeps."""

    def apply_settings(self, settings: dict[str, Any], baby: dict[str, Any]) -> None: ...


@dataclass
class LinkStats:
    frames: int = 0
    malformed: int = 0
    wrong_device: int = 0
    duplicates: int = 0
    gaps_seen: int = 0
    gaps_filled: int = 0
    lost_samples: int = 0
    lost_records: int = 0
    connects: int = 0
    resend_requests: int = 0
    auth_failed: int = 0  # bad tag, wrong boot, or never verified (docs/protocol.md)
    replayed: int = 0  # a valid frame seen before, or a reply to an old challenge
    unsigned: int = 0  # no tag from a device that has a key


@dataclass
class DeviceState:
    device_id: str
    device_type: int
    link: str = "disconnected"
    link_reason: str = ""
    boot: int | None = None
    battery_mv: int | None = None
    battery_pct: int | None = None
    battery_low: bool = False
    on_skin: bool | None = None
    last_seen: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    rate_errors: dict[str, float] = field(default_factory=dict)  # stream -> measured Hz
    stats: LinkStats = field(default_factory=LinkStats)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["device_type"] = p.DeviceType(self.device_type).name.lower()
        return d


# What a stream's reorderer holds per frame (reorder.Item.value): samples with the device time
# of the first, or a record fragment with its time and MORE flag.
SampleItem = tuple[int, NDArray[np.int16]]
RecordItem = tuple[int, bytes, bool]


class DeviceSession:
    def __init__(self, device_id: str, device_type: int, gap_timeout_s: float) -> None:
        self.state = DeviceState(device_id, device_type)
        self.gap_timeout_s = gap_timeout_s
        self.link: DeviceLink | None = None
        self.processor: Processor | None = None
        self.streams: dict[int, Reorderer] = {}
        self._fragments: dict[int, list[bytes]] = {}
        self._broken: set[int] = set()
        # Each sample stream's rate in this boot, from its frames' stamps: the fetal processor
        # holds points until it is known (gateway/processing/fetal.py), and a rate found
        # wrong is an error (state.rate_errors).
        self.rates: dict[int, StreamRate] = {}
        self._frame_t_ms: dict[tuple[int, int], int] = {}
        # The highest seq of each stream and t_ms verified in this boot, unwrapped: each frame's
        # 32-bit numbers are taken as the nearest to them (reorder.unwrap_u32)
        self._seq_top: dict[int, int] = {}
        self._t_top: int | None = None
        self._req_id = 0
        self._pending: dict[int, asyncio.Future[p.Reply]] = {}
        # RESEND requests in flight: (stream, end seq) -> (first seq asked, when asked)
        self._resends: dict[tuple[int, int], tuple[int, float]] = {}
        # Readings given up after a gap timeout that the device may still hold: stream ->
        # ranges [from, to) asked for again on every connection and taken whenever they come
        self._still_missing: dict[int, list[tuple[int, int]]] = {}
        self._late_parts: dict[int, tuple[int, list[bytes]]] = {}  # stream -> (next seq, parts)
        self._link_lost = False  # detached, not attached again: no resend can come, gaps wait
        self.clock_offset_ms: float | None = None  # unix_ms = device_ms + offset, this boot
        self._last_sync = -1e9
        self._slow_syncs = 0  # slow clock syncs set aside in a row (_SYNC_ROUND_TRIP_MAX_MS)
        # Readings (p.READING_STREAMS) of this boot that came before its clock was synced:
        # (stream, seq, t_ms, payload), handed on in order once it is (docs/reliability.md)
        self._unsynced: list[tuple[int, int, int, bytes]] = []
        self.on_info: Callable[[dict[str, Any]], None] = lambda info: None
        # After a gateway restart: stream -> first seq not yet safely published (set by the
        # on_new_boot hook from the outbox's high-water marks); the stream resumes there.
        self.resume_from: dict[int, int] = {}
        self._resumed: dict[int, int] = {}
        self.on_new_boot: Callable[[int], None] = lambda boot: None
        self.auth: FrameAuth | None = None  # an enrolled device: its frames must verify
        # The samples delivered in order, kept outside the process for a restart to replay
        # (gateway/device/journal.py); None: not kept.
        self.journal: SampleJournal | None = None

    # ---- link lifecycle ----

    def use_key(self, key: bytes) -> None:
        """Frames must verify with this enrolled key from now on (a new key after re-pairing;
        the same key keeps the authentication state of the connection)."""
        if self.auth is None or self.auth.device_key != key:
            self.auth = FrameAuth(key, self.state.stats)

    async def attach(self, link: DeviceLink) -> None:
        self.link = link
        self.state.link = "connected"
        self.state.link_reason = ""
        self.state.stats.connects += 1
        if self.auth is not None:
            # frames are held until this connection's handshake, which must name this gateway
            self.auth.new_connection(link.local_address)
        link.on_frame = self.on_frame
        link.on_close = self.detach
        self._link_lost = False
        now = time.monotonic()
        for r in self.streams.values():  # gaps age only while a resend can come
            r.restart_gap_clock(now)

    async def after_connect(self) -> None:
        """Time sync, device info and stream start: done on every (re)connection."""
        if self.auth is not None:
            reply = await self.request(p.Op.SESSION, self.auth.challenge or b"")
            if reply is None or not self.auth.established:
                log.warning("%s: no authenticated session: its frames are dropped",
                            self.state.device_id)  # fmt: skip
                return
        await self.time_sync()
        await self.request(p.Op.GET_INFO)
        await self.request(p.Op.START, p.start_args(0xFFFFFFFF))
        await self.ask_for_records_sent_while_away()

    async def ask_for_records_sent_while_away(self) -> None:
        """A record sent while the link was down shows no gap until the next record of its
        stream, 5 s later for a status and maybe hours later for a jaundice reading: ask for
        every record past the last one seen. Readings and the device info are asked for even
        when none was seen from this boot yet (from the resume point, or the start); status
        and events once one was seen (before that, this gateway has nothing to continue).

        Sample streams need no such ask: their next live frame reveals the gap at once. By the
        time START is answered the device's INFO has come in, so the boot is current.
        """
        # The device info too, always: the record GET_INFO asks for can be left to the store
        # when the link is busy (a jaundice reading needs its calibration), and a first info
        # lost shows no gap.
        always = (*p.READING_STREAMS.get(self.state.device_type, ()), p.Stream.INFO)
        seen = [s for s in self.streams if s not in p.SAMPLE_STREAMS and s not in always]
        for stream in (*always, *seen):
            r = self.streams.get(stream)
            start = r.next_seq if r is not None and r.next_seq is not None else None
            if start is None:  # none seen from this boot: from the resume point, or the start
                start = self.resume_from.get(stream, 0)
            self._resends[(stream, p.SEQ_END)] = (start, time.monotonic())  # may report a loss
            await self.resend(stream, start, p.SEQ_END)
        for stream, ranges in list(self._still_missing.items()):  # readings given up before
            for lo, hi in list(ranges):
                self._resends[(stream, hi)] = (lo, time.monotonic())
                await self.resend(stream, lo, hi)

    def detach(self, reason: str) -> None:
        self.link = None
        self._link_lost = True
        self.state.link = "disconnected"
        self.state.link_reason = reason
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()

    # ---- control channel ----

    async def request(
        self,
        op: p.Op,
        args: bytes = b"",
        timeout_s: float = 3.0,
        asked: tuple[int, int, int] | None = None,
    ) -> p.Reply | None:
        """Send a command, wait for its reply. `asked`: a RESEND's range as this boot numbers
        it (unwrapped), whose resent frames are then expected; else the range in `args`."""
        if self.link is None:
            return None
        self._req_id = (self._req_id + 1) & 0xFF
        rid = self._req_id
        if self.auth is not None and op != p.Op.SESSION and self.auth.established:
            if op == p.Op.RESEND:
                self.auth.resend_asked(*(asked or p.decode_resend_args(args)))
            frame = self.auth.control_frame(p.control_payload(op, rid, args))
        else:
            frame = unsigned_control_frame(op, rid, args)
        return await await_reply(self.link, frame, rid, self._pending, timeout_s)

    async def resend(self, stream: int, lo: int, hi: int) -> p.Reply | None:
        """Ask for [lo, hi) of a stream again, in this boot's unwrapped numbers (`hi` SEQ_END:
        everything from `lo` on). The wire carries their low 32 bits, as the device counts."""
        end = _ALL_FROM if hi == p.SEQ_END else hi
        return await self.request(
            p.Op.RESEND, p.resend_args(stream, lo, hi), asked=(stream, lo, end)
        )

    async def time_sync(self) -> None:
        sent = time.time() * 1000.0
        reply = await self.request(p.Op.TIME_SYNC, p.time_sync_args(int(sent)))
        if reply is None or reply.status != p.Status.OK:
            return
        try:
            _, device_ms = p.decode_time_sync_reply(reply.data)
        except p.FrameError:
            return
        received = time.time() * 1000.0
        slow = received - sent > _SYNC_ROUND_TRIP_MAX_MS
        try_again = slow and self._slow_syncs < _SLOW_SYNCS_SET_ASIDE
        self._slow_syncs = self._slow_syncs + 1 if try_again else 0
        if try_again and self.clock_offset_ms is not None:
            self._sync_again_soon()
            log.info("%s: clock sync round trip %.0f ms: set aside, tried again", self.state.device_id,
                     received - sent)  # fmt: skip
            return
        if self._t_top is not None:  # the device's clock as its frames of this boot count it
            device_ms = unwrap_u32(device_ms, self._t_top)
            self._t_top = max(self._t_top, device_ms)
        # The device read its clock about half-way through the round trip.
        self.set_clock((sent + received) / 2.0 - device_ms)
        if try_again:  # the first clock, from a slow sync: a quicker one soon replaces it
            self._sync_again_soon()

    def _sync_again_soon(self) -> None:
        self._last_sync = time.monotonic() - _TIME_SYNC_EVERY_S + _TIME_SYNC_RETRY_S

    def set_clock(self, offset_ms: float) -> None:
        """This boot's clock is synced (unix_ms = device_ms + offset_ms): the readings that
        waited for it go on. Kept in the journal for a restart's replay."""
        self._last_sync = time.monotonic()
        if self.journal is not None and self.state.boot is not None:
            self.journal.set_clock(self.state.device_id, self.state.boot, offset_ms)
        self.resume_clock(offset_ms)

    def resume_clock(self, offset_ms: float) -> None:
        """A restarted gateway takes this boot's clock as its predecessor last synced it (the
        journal's): the replayed samples are timed right at once. The device's clock is
        still synced at the next chance, as if this had not been (a 50 ppm crystal drifts
        milliseconds over a restart: the two agree). Readings held for a clock go on."""
        self.clock_offset_ms = offset_ms
        self._release_unsynced()

    def unix_time(self, t_ms: int) -> float:
        """Wall-clock seconds for a device timestamp of this boot; before its clock is synced,
        the time of arrival. Only live trace points use that (they are seconds old at most):
        a reading waits for the sync (`_unsynced`), since one resent hours later would get
        the hour it arrived, and a baby's age at the reading decides its risk zone."""
        if self.clock_offset_ms is None:
            return time.time()
        return (t_ms + self.clock_offset_ms) / 1000.0

    # ---- frames in ----

    def _warn_malformed(self, what: str, exc: Exception) -> None:
        """Log bad input at most once per _WARN_EVERY_S per device, with the count since: a
        jammed or hostile radio must not flood the journal (stats.malformed counts them all)."""
        now = time.monotonic()
        dev = self.state.device_id
        last, suppressed = _last_warning.get(dev, (-1e9, 0))
        if now - last < _WARN_EVERY_S:
            _last_warning[dev] = (last, suppressed + 1)
            return
        log.warning("%s: %s: %s (%d more bad inputs since the last report)",
                    dev, what, exc, suppressed)  # fmt: skip
        _last_warning[dev] = (now, 0)

    def on_frame(self, data: bytes) -> None:
        stats = self.state.stats
        try:
            frame = p.decode_frame(data)
        except p.FrameError as exc:
            stats.malformed += 1
            self._warn_malformed("dropped malformed frame", exc)
            return
        frame = self._unwrapped(frame)  # the replay check compares numbers in order too
        if self.auth is None:
            self._on_verified(frame)
            return
        for f in self.auth.admit(frame, data):  # verified first; nothing else sees the rest
            self._on_verified(f)

    def _on_verified(self, frame: p.Frame) -> None:
        stats = self.state.stats
        if frame.device_type != self.state.device_type:
            stats.wrong_device += 1
            return
        stats.frames += 1
        self.state.last_seen = time.time()
        if self.state.boot != frame.boot:  # any frame, a reply too, says which boot is running
            self._new_boot(frame.boot)
            frame = self._unwrapped(frame)  # from where a restarted gateway resumes the boot
        if frame.stream == p.Stream.REPLY:
            self._on_reply(frame)
            return
        self._note_frame(frame.stream, frame.seq, frame.t_ms)
        if frame.stream in p.SAMPLE_STREAMS:
            try:
                samples = p.samples_of(frame)
            except p.FrameError as exc:
                stats.malformed += 1
                self._warn_malformed("bad samples", exc)
                return
            self._accept_samples(frame.stream, frame.seq, frame.t_ms, samples)
        else:
            self._accept(frame.stream, frame.seq, 1, (frame.t_ms, frame.payload, frame.more))

    def _unwrapped(self, frame: p.Frame) -> p.Frame:
        """The frame with its 32-bit seq and t_ms taken as the numbers of this boot nearest
        the highest verified (for a boot a restarted gateway resumes, its resume point): they
        count on past 2**32 where the device's counters wrap round (docs/reliability.md,
        "Device time"). Pure: only a verified frame moves the reference (`_on_verified`)."""
        if frame.stream == p.Stream.REPLY or frame.boot != self.state.boot:
            return frame  # a reply's seq is its request id; another boot's numbers are its own
        seq_ref = self._seq_top.get(frame.stream, self.resume_from.get(frame.stream))
        t_ref = self._t_top
        nominal = p.NOMINAL_RATE_HZ.get(frame.stream)
        if t_ref is None and seq_ref is not None and nominal:  # about where its samples are
            t_ref = seq_ref * 1000 // nominal
        seq = frame.seq if seq_ref is None else unwrap_u32(frame.seq, seq_ref)
        t_ms = frame.t_ms if t_ref is None else unwrap_u32(frame.t_ms, t_ref)
        if (seq, t_ms) == (frame.seq, frame.t_ms):
            return frame
        return dataclasses.replace(frame, seq=seq, t_ms=t_ms)

    def _new_boot(self, boot: int) -> None:
        if self.state.boot is not None:
            self._flush_all()
            log.info("%s: rebooted (boot %s -> %s)", self.state.device_id, self.state.boot, boot)
        if self._unsynced:  # the old boot's clock was never synced, and its numbers end here
            log.error("%s: %d readings of boot %s go out timed at their arrival: its clock "
                      "was never synced", self.state.device_id, len(self._unsynced),
                      self.state.boot)  # fmt: skip
            self._release_unsynced()
        # The device's clock restarted at 0: the old boot's offset would put this boot's times
        # back by the old one's uptime. Synced again at the next tick (after_connect's sync,
        # when the new boot is what connected, usually comes first).
        self.clock_offset_ms = None
        self._last_sync = -1e9
        self.state.boot = boot
        self.streams.clear()
        self._fragments.clear()
        self._broken.clear()
        self._seq_top.clear()
        self._t_top = None
        self._resends.clear()
        self._still_missing.clear()
        self._late_parts.clear()
        if self.processor:
            self.processor.on_boot(boot)  # the old boot's last points, under its rates
        self.rates.clear()
        self.state.rate_errors.clear()
        self.resume_from.clear()
        self._resumed.clear()
        self.on_new_boot(boot)

    def _reorderer(self, stream: int) -> Reorderer:
        r = self.streams.get(stream)
        if r is None:
            r = self.streams[stream] = Reorderer(self.gap_timeout_s)
            if stream in self.resume_from:
                r.next_seq = self._resumed[stream] = self.resume_from.pop(stream)
        return r

    def _accept_samples(self, stream: int, seq: int, t_ms: int, samples: NDArray[np.int16]) -> None:
        r = self._reorderer(stream)
        resume_at = r.next_seq
        if (
            stream in self._resumed
            and resume_at is not None
            and seq < resume_at < seq + len(samples)
        ):
            # resuming part-way through a frame: keep only the samples not yet published
            cut = resume_at - seq
            rate = p.NOMINAL_RATE_HZ[p.Stream(stream)]
            t_ms, samples = t_ms + round(cut * 1000 / rate), samples[cut:]
            seq = resume_at
        self._accept(stream, seq, len(samples), (t_ms, samples))

    def replay(self, stream: int, items: Iterable[JournalItem]) -> int:
        """A restarted gateway's own journal of a resumed stream, delivered as if the device had
        sent it again: from the resume point on, in order; the device is then asked only for
        what follows. Returns the number of samples replayed."""
        r = self._reorderer(stream)  # takes the resume point
        before = r.next_seq
        for it in items:
            if r.next_seq is not None and it.seq + len(it.samples) <= r.next_seq:
                continue
            if r.next_seq is not None and it.seq > r.next_seq:
                break
            self._accept_samples(stream, it.seq, it.t_ms, it.samples)
            self._note_frame(stream, it.seq, it.t_ms)
        if r.held:  # what the journal did not hold: the device's to resend
            self._ask_resend(stream, r)
        return 0 if before is None or r.next_seq is None else r.next_seq - before

    def _note_frame(self, stream: int, seq: int, t_ms: int) -> None:
        """The highest frame seq of the stream and device time of this boot: where an
        unwrapped 32-bit seq or t_ms is placed (`_unwrapped`, `time_sync`) and what a resend
        request is near. A replayed frame counts too: a restarted gateway's TIME_SYNC on a
        boot past 2**32 ms must unwrap the device's time near the replayed frames' times."""
        if seq > self._seq_top.get(stream, -1):
            self._seq_top[stream] = seq
        if self._t_top is None or t_ms > self._t_top:
            self._t_top = t_ms

    def _accept(self, stream: int, seq: int, count: int, value: SampleItem | RecordItem) -> None:
        """One frame's contents into its stream's reorderer; deliver what is now in order."""
        r = self._reorderer(stream)
        late = r.next_seq is not None and seq < r.next_seq and stream in self._still_missing
        if late and len(value) == 3 and self._take_late(stream, seq, value):
            return
        before = r.stats.duplicates
        out = r.add(seq, count, value, time.monotonic())
        self.state.stats.duplicates += r.stats.duplicates - before
        self._deliver(stream, out)
        if r.held:
            self._ask_resend(stream, r)

    def _deliver(self, stream: int, items: list[Item | Lost]) -> None:
        stats = self.state.stats
        for it in items:
            if isinstance(it, Lost):
                # Lost samples are counted by the processor as it publishes the points over them
                # (gateway/processing/fetal.py), so a restart in between does not count them twice.
                if stream not in p.SAMPLE_STREAMS:
                    stats.lost_records += it.count
                    self._fragments.pop(stream, None)
                    self._broken.add(stream)  # a record may have lost its head: skip its tail
                log.warning("%s: stream %d lost seq %d+%d", self.state.device_id, stream,
                            it.seq, it.count)  # fmt: skip
                if self.processor:
                    self.processor.on_lost(stream, it.seq, it.count)
            elif stream in p.SAMPLE_STREAMS:
                t_ms, samples = it.value
                self._check_rate(stream, it.seq, t_ms)
                if self.processor:
                    self.processor.on_samples(stream, it.seq, t_ms, samples)
                if self.journal is not None and self.state.boot is not None:
                    self.journal.append(self.state.device_id, self.state.boot, stream, it.seq,
                                        t_ms, samples)  # fmt: skip
            else:
                t_ms, payload, more = it.value
                if stream in self._broken:  # after a loss: a tail whose head is gone is skipped
                    if more:
                        continue
                    self._broken.discard(stream)
                    if not p.is_whole_record(stream, payload):
                        continue
                parts = self._fragments.setdefault(stream, [])
                parts.append(payload)
                if not more:
                    record = b"".join(parts)
                    del self._fragments[stream]
                    self._on_record(stream, it.seq, t_ms, record)

    def _take_late(self, stream: int, seq: int, value: RecordItem) -> bool:
        """A frame of a reading given up after a gap timeout, resent at last: its record is
        handed on now, out of order (a reading is whole in itself), and no longer lost."""
        ranges = self._still_missing.get(stream, [])
        at = next((i for i, (lo, hi) in enumerate(ranges) if lo <= seq < hi), None)
        if at is None:
            return False
        lo, hi = ranges.pop(at)
        ranges[at:at] = [r for r in ((lo, seq), (seq + 1, hi)) if r[0] < r[1]]
        if not ranges:
            del self._still_missing[stream]
        t_ms, payload, more = value
        self.state.stats.lost_records -= 1
        expected, parts = self._late_parts.pop(stream, (seq, []))
        if expected != seq:  # not the continuation of the record collected so far
            parts = []
        parts.append(payload)
        if more:
            self._late_parts[stream] = (seq + 1, parts)
        elif p.is_whole_record(stream, record := b"".join(parts)):
            log.info("%s: stream %d seq %d came after it was given up: handed on",
                     self.state.device_id, stream, seq)  # fmt: skip
            self._on_record(stream, seq, t_ms, record)
        return True

    def _check_rate(self, stream: int, seq: int, t_ms: int) -> None:
        """Compare the sample rate the stream's stamps imply (gateway/device/sample_rate.py)
        with the nominal rate: off by more than RATE_TOLERANCE is a rate error, and the
        stream's readings are withheld. So is a declared rate other than nominal."""
        nominal = p.NOMINAL_RATE_HZ[p.Stream(stream)]
        rate = self.rates.get(stream)
        if rate is None:
            rate = self.rates[stream] = StreamRate(nominal)
        span = rate.add(seq, t_ms)
        if span is None:
            return
        name = p.Stream(stream).name.lower()
        if span.jumped:
            log.warning("%s: device clock jumped (%s implies %.1f Hz); re-anchored",
                        self.state.device_id, name, span.rate_hz)  # fmt: skip
            return
        if abs(span.rate_hz / nominal - 1.0) > p.RATE_TOLERANCE:
            if name not in self.state.rate_errors:
                log.error("%s: %s runs at %.1f Hz, not %d Hz: its readings are withheld",
                          self.state.device_id, name, span.rate_hz, nominal)  # fmt: skip
            self.state.rate_errors[name] = round(span.rate_hz, 1)
        elif self._declared_rate(name) in (None, nominal):
            self.state.rate_errors.pop(name, None)

    def _declared_rate(self, name: str) -> float | None:
        """The rate the device info says the stream runs at (`rates_hz`), if it says."""
        rates = self.state.info.get("rates_hz")
        rate = rates.get(name) if isinstance(rates, dict) else None
        return float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else None

    def _check_declared_rates(self) -> None:
        """A device that says it samples a stream at other than its nominal rate (another
        board, another firmware) has every reading of it scaled: the processing knows only the
        nominal rate. A rate error from the info on, before any span is measured."""
        for stream, nominal in p.NOMINAL_RATE_HZ.items():
            name = p.Stream(stream).name.lower()
            declared = self._declared_rate(name)
            if declared is not None and declared != nominal:
                if name not in self.state.rate_errors:
                    log.error("%s: %s declared at %.1f Hz, not %d Hz: its readings are withheld",
                              self.state.device_id, name, declared, nominal)  # fmt: skip
                    self.state.rate_errors[name] = round(declared, 1)

    def _on_record(self, stream: int, seq: int, t_ms: int, payload: bytes) -> None:
        st = self.state
        if stream == p.Stream.STATUS:
            try:
                s = p.decode_status(payload)
            except p.FrameError as exc:
                st.stats.malformed += 1
                self._warn_malformed("bad status", exc)
                return
            st.battery_mv, st.battery_pct = s.battery_mv, s.battery_pct
            st.battery_low, st.on_skin = s.battery_low, s.on_skin
        elif stream == p.Stream.INFO:
            try:
                info = json.loads(payload)
                if not isinstance(info, dict):
                    raise ValueError("not an object")
            except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
                st.stats.malformed += 1
                self._warn_malformed("bad device info", exc)
                return
            st.info = info
            self._check_declared_rates()
            self.on_info(info)
        if self.clock_offset_ms is None and stream in p.READING_STREAMS.get(st.device_type, ()):
            self._unsynced.append((stream, seq, t_ms, payload))  # its time is not known yet
            return
        if self.processor:
            self.processor.on_record(stream, seq, t_ms, payload)

    def _release_unsynced(self) -> None:
        held, self._unsynced = self._unsynced, []
        if self.processor:
            for stream, seq, t_ms, payload in held:
                self.processor.on_record(stream, seq, t_ms, payload)

    def _on_reply(self, frame: p.Frame) -> None:
        try:
            reply = p.decode_reply(frame.payload)
        except p.FrameError:
            self.state.stats.malformed += 1
            return
        if reply.op == p.Op.RESEND and reply.status in (p.Status.OK, p.Status.UNAVAILABLE):
            self._on_resend_reply(reply)
        fut = self._pending.get(reply.request_id)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    def _on_resend_reply(self, reply: p.Reply) -> None:
        """The device says what it still had: anything before that is gone for good."""
        try:
            stream, first, end = p.decode_resend_reply(reply.data)
        except p.FrameError:
            return
        r = self.streams.get(stream)
        near = r.next_seq if r is not None and r.next_seq is not None else None
        near = self._seq_top.get(stream, 0) if near is None else near
        end = end if end == p.SEQ_END else unwrap_u32(end, near)  # the device's numbers wrap
        asked = self._resends.get((stream, end), (None, 0.0))[0]
        first = unwrap_u32(first, near if asked is None else asked)
        if asked is not None and end != p.SEQ_END and stream in self._still_missing:
            if r is not None and r.next_seq is not None and end <= r.next_seq:
                self._gone_for_good(stream, asked, end if reply.status != p.Status.OK else first)
                del self._resends[(stream, end)]
                return
        if end == p.SEQ_END:  # the ask on connect (ask_for_records_sent_while_away)
            if reply.status != p.Status.OK:
                return  # nothing held from `asked` on: nothing to deliver, no loss to tell
            if asked is not None and r is None:  # first word from this boot: start the stream
                r = self._reorderer(stream)  # where asked, so what the device lost is counted
                r.next_seq = asked if r.next_seq is None else r.next_seq
        # Only the answer to a request that began at the first gap speaks for it: the answer
        # for a later gap (its first is past next_seq too) says nothing about an earlier one.
        if asked is None or r is None or r.next_seq is None or asked > r.next_seq:
            return
        if first > r.next_seq:
            self._deliver(stream, r.skip_to(first, now=time.monotonic()))
        for key in [k for k in self._resends if k[0] == stream and k[1] <= r.next_seq]:
            del self._resends[key]  # gaps that are behind us now

    def _gone_for_good(self, stream: int, lo: int, hi: int) -> None:
        """The device holds nothing of [lo, hi) any more: stop asking for those readings."""
        kept = []
        for a, b in self._still_missing[stream]:
            kept += [r for r in ((a, min(b, lo)), (max(a, hi), b)) if r[0] < r[1]]
        if kept:
            self._still_missing[stream] = kept
        else:
            del self._still_missing[stream]

    # ---- gaps ----

    def _ask_resend(self, stream: int, r: Reorderer) -> None:
        if self.link is None:
            return
        now = time.monotonic()
        for lo, hi in r.missing():
            key = (stream, hi)  # a gap fills from its bottom: its top names it while it does
            if now - self._resends.get(key, (0, -1e9))[1] < _RESEND_RETRY_S:
                continue
            self.state.stats.resend_requests += 1
            ask = lo
            if self._resumed.get(stream) == lo and stream in p.SAMPLE_STREAMS:
                ask = max(0, lo - _RESUME_SLACK)  # also the frame that straddles the resume point
            self._resends[key] = (ask, now)
            asyncio.get_running_loop().create_task(self.resend(stream, ask, hi))

    def tick(self) -> None:
        """Called about once a second: chase or give up gaps, keep the clock synced."""
        now = time.monotonic()
        readings = p.READING_STREAMS.get(self.state.device_type, ())
        for stream, r in self.streams.items():
            if not self._link_lost and r.expired(now):  # aged only while a resend can come
                out = r.give_up_gap(now=now)
                if stream in readings:  # the device may still hold them: asked for again
                    missing = self._still_missing.setdefault(stream, [])
                    missing += [(it.seq, it.seq + it.count) for it in out if isinstance(it, Lost)]
                    del missing[:-_STILL_MISSING_RANGES]
                self._deliver(stream, out)
            elif r.held:
                self._ask_resend(stream, r)
        st = self.state.stats
        st.gaps_seen = sum(r.stats.gaps_seen for r in self.streams.values())
        st.gaps_filled = sum(r.stats.gaps_filled for r in self.streams.values())
        every_s = _TIME_SYNC_RETRY_S if self.clock_offset_ms is None else _TIME_SYNC_EVERY_S
        if self.link is not None and now - self._last_sync > every_s:
            self._last_sync = now
            asyncio.get_running_loop().create_task(self.time_sync())
        if self.processor:
            self.processor.tick(now)

    def _flush_all(self) -> None:
        """Before a reboot's new numbering: whatever the old boot still held is delivered."""
        for stream, r in self.streams.items():
            while r.held:
                self._deliver(stream, r.give_up_gap(now=time.monotonic()))
