"""Simulated radio: virtual devices reach the gateway over loopback TCP.

It carries exactly what a BLE link carries (an advertisement, the negotiated ATT MTU,
notifications from the device, writes to it), framed as docs/protocol.md "Simulated radio
link" describes. It is a test and demo transport; real devices use BLE or USB serial.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.transports.base import DeviceLink, Transport

log = logging.getLogger(__name__)

L_ADV = 1
L_MTU = 2
L_NOTIFY = 3
L_WRITE = 4
_MAX_MESSAGE = 4096


class SimLink(DeviceLink):
    def __init__(self, writer: asyncio.StreamWriter, adv: dict[str, Any], att_mtu: int) -> None:
        super().__init__()
        self._writer = writer
        self.device_id = str(adv["id"])
        self.device_type = int(adv["type"])
        self.name = str(adv.get("name", ""))
        self.pairing = bool(adv.get("pairing"))  # the device's pairing window is open
        self.att_mtu = att_mtu

    async def write(self, frame: bytes) -> None:
        if self._writer.is_closing():
            return
        self._writer.write(struct.pack("<HB", len(frame) + 1, L_WRITE) + frame)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()


class SimRadioTransport(Transport):
    def __init__(self, listen: str, att_mtu: int = 247) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host, int(port)
        self.att_mtu = att_mtu
        self._server: asyncio.Server | None = None
        self._links: set[SimLink] = set()
        self._on_link: Callable[[DeviceLink], Awaitable[None]] | None = None

    async def start(self, on_link: Callable[[DeviceLink], Awaitable[None]]) -> None:
        self._on_link = on_link
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("simulated radio listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        for link in list(self._links):
            await link.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = None
        reason = "link lost"
        try:
            kind, body = await _read_message(reader)
            if kind != L_ADV:
                raise ValueError("first message is not an advertisement")
            adv = json.loads(body)
            if not isinstance(adv, dict) or "id" not in adv or "type" not in adv:
                raise ValueError("advertisement lacks id or type")
            link = SimLink(writer, adv, self.att_mtu)
            self._links.add(link)
            assert self._on_link is not None
            await self._on_link(link)
            writer.write(struct.pack("<HBH", 3, L_MTU, self.att_mtu))
            await writer.drain()
            while True:
                kind, body = await _read_message(reader)
                if kind == L_NOTIFY:
                    link.on_frame(body)
        except asyncio.IncompleteReadError:
            reason = "link lost"
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"bad link message: {exc}"
            log.warning("simulated radio: %s", reason)
        except ConnectionError:
            reason = "link lost"
        except Exception as exc:  # a bug on one link must not take the transport down
            reason = f"gateway error: {exc}"
            log.exception("simulated radio: link failed")
        finally:
            writer.close()
            if link is not None:
                self._links.discard(link)
                link.on_close(reason)


async def _read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(3)
    n, kind = struct.unpack("<HB", head)
    if not 1 <= n <= _MAX_MESSAGE:
        raise ValueError(f"message length {n} out of range")
    body = await reader.readexactly(n - 1)
    return kind, body
