# What every perimon device does with its radio: frame records, keep them for resends, send
# them as fast as the link allows, and answer the control channel. The radio itself (BLE on the
# board, a socket under simulation) is passed in; it needs connected, mtu, notify(frame) -> bool
# (False when the link cannot take it now) and a `on_write` callback slot.
import asyncio
import os
import struct
import sys
import time

import protocol as p
from micropython import const

_TXQ_MAX = const(48)  # frames waiting for the radio; beyond this they wait in the FrameStore
_MIN_ROOM = const(8)  # payload bytes per frame at the least, whatever the MTU


class Link:
    def __init__(self, radio, store, device_type, boot, on_control, records=None):
        self.radio = radio
        self.store = store
        # Records (status, events, info, readings) in a store of their own when given: the
        # gap before a record shows only when the next one arrives, seconds later, by which
        # time a sample stream would have pushed it out of the shared store.
        self.records = records or store
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
        self.resend = []  # [stream, next seq, end seq, store position] being resent, per stream
        self.wake = asyncio.Event()
        self.auth = None  # linkauth.LinkAuth once provisioned (set_key)
        self.rejected = 0  # control frames dropped: unsigned, bad tag or replayed
        self.write_errors = 0  # control writes whose handling raised (dropped, printed)
        self.unsigned_ok = None  # op -> bool: taken unsigned now (PAIR in the pairing window)
        radio.on_write = self._on_write

    def set_key(self, key):
        """Sign every frame from now on with a key derived from the device key, the boot
        counter and a random boot nonce, so no frame of one boot verifies in another."""
        from linkauth import LinkAuth  # imported once keyed, after the big buffers

        self.auth = LinkAuth(key, self.boot, os.urandom)

    def now_ms(self):
        """Milliseconds since boot, as a 32-bit counter that does not wrap with ticks_ms."""
        t = time.ticks_ms()
        self._t_acc += time.ticks_diff(t, self._t_last)
        self._t_last = t
        return self._t_acc & 0xFFFFFFFF

    def payload_room(self):
        # A signed frame does not fit BLE's default MTU of 23: at least 8 bytes of payload,
        # sent once the central has negotiated a larger MTU (docs/protocol.md, Authentication).
        return max(_MIN_ROOM, p.max_payload(self.radio.mtu, self.auth is not None))

    def send(self, stream, seq, t_ms, payload, flags=0):
        """Frame a payload. The store keeps it in clear; a device with a key seals and signs
        it as it leaves (_queue, _resend_next) under the key of that moment, so frames stored
        before a pairing reach the gateway under the new one."""
        frame = p.encode_frame(
            flags, self.device_type, stream, self.boot, seq, t_ms, payload, None, not self.auth
        )
        if stream != p.S_REPLY:
            self._store(stream).put(frame)
        self._queue(frame)

    def _store(self, stream):
        return self.store if stream <= p.S_PPG else self.records

    def _queue(self, frame):
        if self.radio.connected and len(self.txq) < _TXQ_MAX:
            self.txq.append(self.auth.seal(frame, False) if self.auth else frame)
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
        """Queue the next stored frame of the range being resent (one at a time: no copies),
        searching the store from where the last one was found."""
        rng = self.resend[0]  # [stream, next seq, end seq, store position to search from]
        store = self._store(rng[0])
        pos, _ = store.seek(rng[0], rng[1], rng[2], rng[3])
        if pos < 0:
            self.resend.pop(0)
            return
        f = store.frame(pos)
        self.txq.append(self.auth.seal(f, True) if self.auth else p.set_resent(f))
        rng[1] = store.seq_at(pos) + 1
        rng[3] = pos + 1
        self.wake.set()

    def connected(self):
        """A new connection: its gateway asks again for what it lacks, and takes resent frames
        only in answer to its own requests, so an old connection's resends stop here."""
        self.resend = []
        self.txq = [f for f in self.txq if not f[0] & p.F_RESENT]
        self.wake.set()

    def _on_write(self, data):
        """A control write from the radio's task. The barrier: whatever one write makes the
        link, the app or pairing raise drops that write (the gateway's request times out),
        printed and counted; it must not take the radio's task, and with it the device, down,
        as anyone in radio range could otherwise do with a crafted write."""
        try:
            self._handle_write(data)
        except Exception as e:
            self.write_errors += 1
            print("CONTROL write dropped")
            sys.print_exception(e)

    def _handle_write(self, data):
        d = p.decode_frame(data)
        if d is None:
            return  # corrupt write: the gateway's request times out and is retried
        flags, _dt, stream, _boot, seq, _t, payload, tag = d
        if stream != p.S_CONTROL:
            return
        a = self.auth
        if a and tag is not None:  # a signed command: its payload is sealed
            payload = a.open_command(data, seq, tag)
            if payload is None:
                self.rejected += 1
                return  # no reply: an injected or replayed command does nothing
        c = p.decode_control(payload)
        if c is None:
            return
        op, rid, args = c
        if a and tag is None:
            if op == p.OP_SESSION and len(args) == p.NONCE_LEN:
                r = self.radio  # the central's address if the link has one; the link's number
                conn = getattr(r, "centrals", r.connects)  # BLE counts a central at its connect
                reply = a.session(rid, args, getattr(r, "peer", None) or bytes(p.PEER_LEN), conn)
                if reply:
                    self.send(p.S_REPLY, rid, self.now_ms(), reply)
                else:
                    self.rejected += 1  # a second SESSION on this connection: no answer
                return
            if not (self.unsigned_ok and self.unsigned_ok(op)):
                self.rejected += 1  # only PAIR in its window: the gateway learns the key by it
                return
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
        store = self._store(stream)
        pos, oldest = store.seek(stream, seq_from, seq_to)
        if pos < 0:
            first = seq_to
        elif oldest is not None and oldest <= seq_from:
            first = seq_from
        else:
            first = store.seq_at(pos)  # everything before this is gone
        if pos >= 0:
            # a new request for a stream replaces its old one; other streams' ranges go on
            self.resend = [r for r in self.resend if r[0] != stream]
            self.resend.append([stream, first, seq_to, pos])
            self.wake.set()
        status = p.ST_OK if pos >= 0 else p.ST_UNAVAILABLE
        return p.encode_reply(op, rid, status, struct.pack("<BII", stream, first, seq_to))
