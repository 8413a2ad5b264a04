# What every perimon device does with its radio: frame records, keep them for resends, send
# them as fast as the link allows, and answer the control channel. The radio itself (BLE on the
# board, a socket under simulation) is passed in; it needs connected, mtu, notify(frame) -> bool
# (False when the link cannot take it now) and a `on_write` callback slot.
import asyncio
import struct
import time

import protocol as p
from micropython import const

_TXQ_MAX = const(48)  # frames waiting for the radio; beyond this they wait in the FrameStore


class Link:
    def __init__(self, radio, store, device_type, boot, on_control):
        self.radio = radio
        self.store = store
        self.device_type = device_type
        self.boot = boot
        self.on_control = (
            on_control  # app handler: (opcode, request_id, args) -> reply bytes or None
        )
        self.txq = []
        self.sent = 0
        self.deferred = 0  # frames left to the store because the link was down or busy
        self.seq = {}  # per record-stream frame counters
        self._t0 = time.ticks_ms()
        self._t_acc = 0
        self._t_last = self._t0
        self.resend = None  # [stream, next seq, end seq] being resent from the store
        self.wake = asyncio.Event()
        radio.on_write = self._on_write

    def now_ms(self):
        """Milliseconds since boot, as a 32-bit counter that does not wrap with ticks_ms."""
        t = time.ticks_ms()
        self._t_acc += time.ticks_diff(t, self._t_last)
        self._t_last = t
        return self._t_acc & 0xFFFFFFFF

    def payload_room(self):
        return p.max_payload(self.radio.mtu, False)

    def send(self, stream, seq, t_ms, payload, flags=0):
        frame = p.encode_frame(flags, self.device_type, stream, self.boot, seq, t_ms, payload)
        if stream != p.S_REPLY:
            self.store.put(frame)
        self._queue(frame)

    def _queue(self, frame):
        if self.radio.connected and len(self.txq) < _TXQ_MAX:
            self.txq.append(frame)
            self.wake.set()
        else:
            self.deferred += 1

    def send_record(self, stream, t_ms, payload):
        """A record of any size, split across consecutive sequence numbers with F_MORE."""
        room = self.payload_room()
        seq = self.seq.get(stream, 0)
        n = len(payload)
        off = 0
        while True:
            chunk = payload[off : off + room]
            off += len(chunk)
            self.send(stream, seq, t_ms, chunk, p.F_MORE if off < n else 0)
            seq += 1
            if off >= n:
                break
        self.seq[stream] = seq

    async def tx_task(self):
        while True:
            if self.resend and self.radio.connected and len(self.txq) < _TXQ_MAX // 2:
                self._resend_next()
            if not self.txq or not self.radio.connected:
                if not self.radio.connected:
                    self.txq.clear()
                self.wake.clear()
                await self.wake.wait()
                continue
            if self.radio.notify(self.txq[0]):
                self.txq.pop(0)
                self.sent += 1
            else:
                await asyncio.sleep_ms(5)  # radio busy: back off, frames wait in order
            if self.sent & 7 == 0:
                await asyncio.sleep_ms(0)

    def _resend_next(self):
        """Queue the next stored frame of the range being resent (one at a time: no copies)."""
        stream, seq, end = self.resend
        f, _ = self.store.find(stream, seq, end)
        if f is None:
            self.resend = None
            return
        self.txq.append(p.set_resent(f))
        self.resend[1] = struct.unpack_from("<I", f, 4)[0] + 1
        self.wake.set()

    def connected(self):
        self.wake.set()

    def _on_write(self, data):
        d = p.decode_frame(data)
        if d is None:
            return  # corrupt write: the gateway's request times out and is retried
        flags, _dt, stream, _boot, _seq, _t, payload, _tag = d
        if stream != p.S_CONTROL:
            return
        c = p.decode_control(payload)
        if c is None:
            return
        op, rid, args = c
        if op == p.OP_TIME_SYNC and len(args) == 8:
            reply = p.encode_reply(op, rid, p.ST_OK, args + struct.pack("<I", self.now_ms()))
        elif op == p.OP_RESEND and len(args) == 9:
            reply = self._resend(op, rid, args)
        else:
            reply = self.on_control(op, rid, args)
            if reply is None:
                reply = p.encode_reply(op, rid, p.ST_UNSUPPORTED)
        self.send(p.S_REPLY, rid, self.now_ms(), reply)

    def _resend(self, op, rid, args):
        stream, seq_from, seq_to = struct.unpack("<BII", args)
        f, oldest = self.store.find(stream, seq_from, seq_to)
        if f is None:
            first = seq_to
        elif oldest is not None and oldest <= seq_from:
            first = seq_from
        else:
            first = struct.unpack_from("<I", f, 4)[0]  # everything before this is gone
        if f is not None:
            self.resend = [stream, first, seq_to]
            self.wake.set()
        status = p.ST_OK if f is not None else p.ST_UNAVAILABLE
        return p.encode_reply(op, rid, status, struct.pack("<BII", stream, first, seq_to))
