"""USB serial: a device plugged in by cable speaks the same protocol (wards without BLE,
provisioning). pyserial opens the port; frames are delimited with SLIP (RFC 1055).

Each SLIP packet is [u8 kind][body], the same messages the simulated radio link carries:
  1 HELLO   device -> gateway: JSON {"id", "type", "name"} (the advertisement's content)
  2 LINK_UP gateway -> device: u16 largest frame the gateway accepts (plays the ATT MTU)
  3 FRAME   device -> gateway: one protocol v1 frame (a notification)
  4 WRITE   gateway -> device: one protocol v1 frame (a control write)
  5 WHO     gateway -> device: asks for HELLO (the device may have spoken before the port
            was opened)
A packet that is not valid SLIP, or a FRAME before HELLO, is dropped; the v1 CRC still
guards each frame. An unplugged port is reopened with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import struct
from collections.abc import Awaitable, Callable

import serial

from gateway.transports.base import DeviceLink, Transport

log = logging.getLogger(__name__)

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
K_HELLO, K_LINK_UP, K_FRAME, K_WRITE, K_WHO = 1, 2, 3, 4, 5
_MAX_PACKET = 4096
_FRAME_MAX = 512  # a cable has no ATT MTU; frames up to this size


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
        out = []
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


class SerialLink(DeviceLink):
    def __init__(self, port: serial.Serial, hello: dict) -> None:
        super().__init__()
        self.port = port
        self.device_id = str(hello["id"])
        self.device_type = int(hello["type"])
        self.name = str(hello.get("name", ""))
        self.att_mtu = _FRAME_MAX
        self.closed = asyncio.Event()
        self.wake: Callable[[], None] = lambda: None

    async def write(self, frame: bytes) -> None:
        if self.closed.is_set():
            raise SerialLinkError("port closed")
        try:
            self.port.write(slip_encode(bytes((K_WRITE,)) + frame))
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
        self._tasks: list[asyncio.Task] = []
        self._on_link: Callable[[DeviceLink], Awaitable[None]] | None = None

    async def start(self, on_link: Callable[[DeviceLink], Awaitable[None]]) -> None:
        self._on_link = on_link
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._keep(p)) for p in self.ports]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _keep(self, path: str) -> None:
        backoff = 0.2
        while True:
            try:
                port = serial.Serial(path, self.baud, timeout=0, write_timeout=2)
            except (OSError, serial.SerialException) as exc:
                log.debug("serial %s: %s", path, exc)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            try:
                await self._serve(path, port)
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
        try:
            port.write(slip_encode(bytes((K_WHO,))))
            while link is None or not link.closed.is_set():
                try:
                    await asyncio.wait_for(readable.wait(), 1.0)
                except TimeoutError:
                    if link is None:
                        port.write(slip_encode(bytes((K_WHO,))))
                    continue
                readable.clear()
                data = port.read(max(1, port.in_waiting))
                if not data:
                    continue
                for pkt in dec.feed(data):
                    kind, body = pkt[0], pkt[1:]
                    if kind == K_FRAME and link is not None:
                        link.on_frame(body)
                    elif kind == K_HELLO:
                        hello = json.loads(body)
                        if link is not None:  # the device rebooted: a new link
                            link.closed.set()
                            link.on_close("device restarted")
                        link = SerialLink(port, hello)
                        link.wake = readable.set
                        self.links[link.device_id] = link
                        assert self._on_link is not None
                        await self._on_link(link)
                        port.write(slip_encode(struct.pack("<BH", K_LINK_UP, _FRAME_MAX)))
            reason = "closed by gateway"
        except (OSError, serial.SerialException) as exc:
            reason = f"port lost: {exc}"
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"bad packet: {exc}"
            log.warning("serial %s: %s", path, reason)
        finally:
            with contextlib.suppress(Exception):
                loop.remove_reader(port.fileno())
            if link is not None:
                self.links.pop(link.device_id, None)
                link.closed.set()
                link.on_close(reason)
