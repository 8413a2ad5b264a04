# USB serial radio: the link of radio_sim and radio_ble carried over a cable, for wards without
# BLE and for a device on the bench (docs/protocol.md, "USB serial"). Same surface: connected,
# mtu, notify(frame) -> bool, on_write and on_connect callbacks, run() task.
#
# The HAL passes `open_port() -> (rx, tx)`, two pollable byte streams: the UART behind the board's
# USB bridge, or a pseudo-terminal under the Unix port. Packets are SLIP-delimited, so the console
# may print on the same line: the gateway skips whatever is not a packet. A cable has no
# connection event, so the link is up from the gateway's LINK_UP until its next WHO (it opened
# the port anew) or an error on the stream.
import asyncio
import binascii
import json
import os
import select
import struct
import time

import protocol as p
from micropython import const

_MIN_MTU = const(23)  # BLE's minimum: LINK_UP below it is line noise
_FRAME_MTU = const(247)  # until LINK_UP, frames sized as for BLE (docs/ble.md, MTU)
_MAX_PACKET = const(1024)  # the gateway sends control frames; a longer packet is line noise
_PENDING_MAX = const(8192)  # bytes written but not yet drained: beyond this the link is busy
_HELLO_GAP_MS = const(500)  # a WHO this soon after a HELLO crossed it on the line
_END = b"\xc0"  # p.SLIP_END
_ESC = b"\xdb"  # p.SLIP_ESC
_ESC_END = b"\xdb\xdc"  # p.SLIP_ESC, p.SLIP_ESC_END
_ESC_ESC = b"\xdb\xdd"  # p.SLIP_ESC, p.SLIP_ESC_ESC


def slip(kind, body):
    """One packet on the wire. ESC is escaped first, so the escapes END adds stay single."""
    pkt = bytes((kind,)) + body
    if _ESC in pkt:
        pkt = pkt.replace(_ESC, _ESC_ESC)
    if _END in pkt:
        pkt = pkt.replace(_END, _ESC_END)
    return _END + pkt + _END


class SerialRadio:
    def __init__(self, open_port, adv):
        self.open_port = open_port
        self.adv = adv  # dict: id, type, name (and pairing while the window is open)
        self.connected = False
        self.mtu = _FRAME_MTU
        self.on_write = None
        self.on_connect = None
        self.connects = 0
        self.peer = None  # a cable has no address: the SESSION reply names none
        self.dropped = 0  # packets from the gateway that were not valid SLIP
        self._w = None
        self._pending = 0
        self._hello_ms = 0
        self._run = binascii.hexlify(os.urandom(4)).decode()  # new at every boot

    def _hello(self):
        hello = dict(self.adv)
        hello["run"] = self._run  # the same HELLO twice is a repeat, not a restarted device
        self._w.write(slip(p.SER_HELLO, json.dumps(hello).encode()))
        self._pending += 64
        self._hello_ms = time.ticks_ms()

    def readvertise(self):
        """Say HELLO with the new self.adv: the gateway takes it as a new link."""
        if self._w is not None:
            self.connected = False
            self._hello()

    def set_battery(self, pct):
        pass  # the cable has no Battery service; BleRadio publishes it

    def notify(self, frame):
        if not self.connected or self._pending > _PENDING_MAX:
            return False  # the caller keeps the frame, as with a full BLE TX queue
        self._w.write(slip(p.SER_FRAME, frame))
        self._pending += len(frame) + 3
        return True

    def _packet(self, pkt):
        kind = pkt[0]
        if kind == p.SER_WRITE:
            if self.on_write:
                self.on_write(pkt[1:])
        elif kind == p.SER_LINK_UP and len(pkt) == 3:
            mtu = struct.unpack_from("<H", pkt, 1)[0]  # bounded: line noise may look like this
            self.mtu = max(_MIN_MTU, min(p.SERIAL_LINK_MTU, mtu))
            if not self.connected:
                self.connected = True
                self.connects += 1
                if self.on_connect:
                    self.on_connect()
        elif kind == p.SER_WHO:  # the gateway opened the port: the link is down until LINK_UP
            if self.connected or time.ticks_diff(time.ticks_ms(), self._hello_ms) > _HELLO_GAP_MS:
                self._hello()  # else the HELLO it asks for is already on its way
            self.connected = False

    async def _flush(self):
        try:
            while True:
                if self._pending:
                    self._pending = 0
                    await self._w.drain()
                await asyncio.sleep_ms(10)
        except OSError:
            pass  # the reader sees the failed stream and reopens the port

    async def _serve(self, rx):
        """Read packets until the stream fails; SLIP errors drop one packet, never the link."""
        r = asyncio.StreamReader(rx)
        poll = select.poll()
        poll.register(rx, select.POLLIN)
        buf = bytearray()
        esc = False
        bad = False
        while True:
            data = await r.read(1)
            if not data:
                raise OSError(0)  # end of stream: the cable is gone
            while len(data) < 64 and poll.poll(0):  # take what else is waiting, unblocked
                c = rx.read(1)
                if not c:
                    break
                data += c
            for b in data:
                if b == p.SLIP_END:
                    if buf and not bad:
                        self._packet(bytes(buf))
                    elif bad:
                        self.dropped += 1
                    buf = bytearray()
                    esc = bad = False
                elif esc:
                    esc = False
                    if b == p.SLIP_ESC_END:
                        buf.append(p.SLIP_END)
                    elif b == p.SLIP_ESC_ESC:
                        buf.append(p.SLIP_ESC)
                    else:
                        bad = True
                elif b == p.SLIP_ESC:
                    esc = True
                elif len(buf) < _MAX_PACKET:
                    buf.append(b)
                else:
                    bad = True

    async def run(self):
        backoff = 200
        while True:
            flusher = None
            try:
                rx, tx = self.open_port()
                self._w = asyncio.StreamWriter(tx, {})
                self._hello()  # the gateway may have the port open already
                flusher = asyncio.create_task(self._flush())
                backoff = 200
                await self._serve(rx)
            except OSError:
                backoff = min(backoff * 2, 5000)
            self.connected = False
            if flusher:
                flusher.cancel()
            self._w = None
            self._pending = 0
            await asyncio.sleep_ms(backoff)


def open_tty(path):
    """Under the Unix port: the device's end of a pseudo-terminal, in raw mode (no echo, no
    line editing, every byte passed through), as `open_port` for SerialRadio."""

    held = [None]

    def open_port():
        import termios

        if held[0] is not None:
            held[0].close()  # the one that failed
            held[0] = None
        f = open(path, "r+b")
        termios.setraw(f.fileno())
        held[0] = f
        return f, f

    return open_port
