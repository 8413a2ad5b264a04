"""USB serial: a device plugged in by cable speaks the same protocol (wards without BLE, a
device on the bench). pyserial opens each configured port; SLIP (RFC 1055) delimits packets
`[u8 kind][body]` whose kinds are `protocol.SerialKind` (docs/protocol.md, "USB serial";
docs/serial.md): the device says HELLO with what BLE would advertise, the gateway answers
LINK_UP, then FRAMEs come in and WRITEs go out. Opening a port, the gateway says WHO, because
the device may have said HELLO before anyone listened.

A cable carries whatever else is on the line too (a console message, a glitch while plugging
in): what is not a valid packet is dropped and counted, never taken for a reason to close the
port; the v1 CRC still guards each frame and resends fill what was lost. A port that is gone
(unplugged) is reopened every second or so until the device is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import serial

from gateway.protocol import SERIAL_LINK_MTU, SerialKind
from gateway.protocol import SLIP_END as END
from gateway.protocol import SLIP_ESC as ESC
from gateway.protocol import SLIP_ESC_END as ESC_END
from gateway.protocol import SLIP_ESC_ESC as ESC_ESC
from gateway.transports.base import DeviceLink, Transport

log = logging.getLogger(__name__)

_MAX_PACKET = 4096  # longer is line noise: a HELLO is ~100 bytes, a frame at most 509
_MAX_BACKOFF_S = 1.0  # a port that is not there costs one failed open() per try


class SerialLinkError(ConnectionError):
    """The serial port went away while writing."""


def slip_encode(packet: bytes) -> bytes:
    out = bytearray([END])
    for b in packet:
        if b == END:
            out += bytes((ESC, ESC_END))
        elif b == ESC:
            out += bytes((ESC, ESC_ESC))
        else:
            out.append(b)
    out.append(END)
    return bytes(out)


class SlipDecoder:
    """Feed bytes, get whole packets; garbage between packets is skipped."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.esc = False
        self.bad = False
        self.errors = 0

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for b in data:
            if b == END:
                if self.buf and not self.bad:
                    out.append(bytes(self.buf))
                elif self.bad:
                    self.errors += 1
                self.buf.clear()
                self.esc = self.bad = False
            elif self.esc:
                self.esc = False
                if b == ESC_END:
                    self.buf.append(END)
                elif b == ESC_ESC:
                    self.buf.append(ESC)
                else:
                    self.bad = True
            elif b == ESC:
                self.esc = True
            else:
                self.buf.append(b)
            if len(self.buf) > _MAX_PACKET:
                self.bad = True
                self.buf.clear()
        return out


def _packet(kind: SerialKind, body: bytes = b"") -> bytes:
    return slip_encode(bytes((kind,)) + body)


_LINK_UP = _packet(SerialKind.LINK_UP, struct.pack("<H", SERIAL_LINK_MTU))


def _parse_hello(body: bytes) -> dict[str, Any]:
    """The device's HELLO, checked like an advertisement; ValueError if it is not one."""
    hello = json.loads(body)
    if not isinstance(hello, dict) or not isinstance(hello.get("id"), str) or not hello["id"]:
        raise ValueError("HELLO lacks an id")
    if not isinstance(hello.get("type"), int):
        raise ValueError("HELLO lacks a device type")
    return hello


class PortWriter:
    """Writes to one port off the event loop, one packet at a time and in order.

    pyserial's write blocks until the kernel takes the bytes (up to the write timeout); a
    device that stops reading its cable would otherwise stall the loop that serves every other
    device. asyncio.Lock wakes waiters in order, so packets never interleave or reorder.
    """

    def __init__(self, port: serial.Serial) -> None:
        self.port = port
        self._lock = asyncio.Lock()

    async def write(self, data: bytes) -> None:
        async with self._lock:
            write = asyncio.ensure_future(asyncio.to_thread(self.port.write, data))
            try:
                await asyncio.shield(write)
            finally:
                if not write.done():  # the caller was cancelled: hold the lock till it is out
                    await asyncio.wait({write})

    async def close(self) -> None:
        """Close the port once no write is on a worker thread: pyserial's close under a write
        waiting for the device would pull the file descriptor from under it. A waiting write
        is told to give up first."""
        self.port.cancel_write()
        async with self._lock:
            self.port.close()


class SerialLink(DeviceLink):
    def __init__(self, port: PortWriter, hello: dict[str, Any]) -> None:
        super().__init__()
        self.port = port
        self.device_id = str(hello["id"])
        self.device_type = int(hello["type"])
        self.name = str(hello.get("name", ""))
        self.pairing = bool(hello.get("pairing"))  # the device's pairing window is open
        self.att_mtu = SERIAL_LINK_MTU
        self.hello = b""  # as the device said it: said again, it is a repeat, not a restart
        self.closed = asyncio.Event()
        self.wake: Callable[[], None] = lambda: None

    async def write(self, frame: bytes) -> None:
        if self.closed.is_set():
            raise SerialLinkError("port closed")
        try:
            await self.port.write(_packet(SerialKind.WRITE, frame))
        except (OSError, serial.SerialException) as exc:
            raise SerialLinkError(str(exc)) from exc

    async def close(self) -> None:
        self.closed.set()
        self.wake()


class SerialTransport(Transport):
    def __init__(self, ports: list[str], baud: int = 115200) -> None:
        self.ports = [p.strip() for p in ports if p.strip()]
        self.baud = baud
        self.links: dict[str, SerialLink] = {}
        self.line_errors = 0  # packets dropped: bad SLIP, unknown kind, bad HELLO
        self._tasks: list[asyncio.Task[None]] = []
        self._on_link: Callable[[DeviceLink], Awaitable[None]] | None = None

    async def start(self, on_link: Callable[[DeviceLink], Awaitable[None]]) -> None:
        self._on_link = on_link
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._keep(p)) for p in self.ports]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        # each port's end (cancelled, or an error) is its result; a cancel of stop() itself
        # is passed on
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _keep(self, path: str) -> None:
        backoff = 0.2
        while True:
            try:
                port = serial.Serial(path, self.baud, timeout=0, write_timeout=2)
            except (OSError, serial.SerialException) as exc:
                log.debug("serial %s: %s", path, exc)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            backoff = 0.2
            try:
                port.reset_input_buffer()  # said before anyone listened: WHO asks anew
                await self._serve(path, port)
            except Exception:  # a bug must cost this port one reopen, never its service
                log.exception("serial %s: unexpected error; reopening the port", path)
            finally:
                port.close()
            await asyncio.sleep(0.2)

    async def _serve(self, path: str, port: serial.Serial) -> None:
        loop = asyncio.get_running_loop()
        dec = SlipDecoder()
        readable = asyncio.Event()
        loop.add_reader(port.fileno(), readable.set)
        link: SerialLink | None = None
        reason = "port closed"
        out = PortWriter(port)
        try:
            await out.write(_packet(SerialKind.WHO))
            while link is None or not link.closed.is_set():
                try:
                    async with asyncio.timeout(1.0):  # not wait_for: on 3.11 it can eat a cancel
                        await readable.wait()
                except TimeoutError:
                    if link is None:
                        await out.write(_packet(SerialKind.WHO))
                    continue
                readable.clear()
                data = port.read(max(1, port.in_waiting))
                if not data:
                    continue
                for pkt in dec.feed(data):
                    kind, body = pkt[0], pkt[1:]
                    if kind == SerialKind.FRAME:
                        if link is not None:
                            link.on_frame(body)
                    elif kind == SerialKind.HELLO:
                        if link is not None and body == link.hello:  # it crossed our WHO
                            await out.write(_LINK_UP)
                            continue
                        try:
                            hello = _parse_hello(body)
                        except (ValueError, RecursionError) as exc:  # bad JSON, or absurdly nested
                            self._line_error(path, f"bad HELLO: {exc}")
                            continue
                        if link is not None:  # the device restarted or re-advertised
                            link.closed.set()
                            self.links.pop(link.device_id, None)
                            link.on_close("device restarted")
                        link = SerialLink(out, hello)
                        link.hello = body
                        link.wake = readable.set
                        self.links[link.device_id] = link
                        assert self._on_link is not None
                        await self._on_link(link)
                        await out.write(_LINK_UP)
                    else:
                        self._line_error(path, f"packet kind {kind}")
                if dec.errors:
                    self._line_error(path, f"{dec.errors} bad SLIP packets", dec.errors)
                    dec.errors = 0
            reason = "closed by gateway"
        except (OSError, serial.SerialException) as exc:
            reason = f"port lost: {exc}"
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(port.fileno())
            if link is not None:
                if self.links.get(link.device_id) is link:
                    del self.links[link.device_id]
                link.closed.set()
                link.on_close(reason)
            await out.close()

    def _line_error(self, path: str, what: str, n: int = 1) -> None:
        if self.line_errors == 0:
            log.warning("serial %s: dropped %s (further drops are counted, not logged)", path, what)
        self.line_errors += n
