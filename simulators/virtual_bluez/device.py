"""One virtual peripheral as the adapter sees it: its link to the firmware, what it advertises,
its connection and the handles of its GATT objects."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from dataclasses import dataclass

from dbus_fast import Variant

from simulators.virtual_bluez.advertising import device_properties, preferred_interval
from simulators.virtual_bluez.defs import ADAPTER_PATH


def device_path(address: str) -> str:
    """The Device1 object path of an address: /org/bluez/hci0/dev_XX_XX_XX_XX_XX_XX."""
    return f"{ADAPTER_PATH}/dev_{address.replace(':', '_')}"


def device_path_of(path: str) -> str:
    """The Device1 object path an object path is at or under (its GATT objects)."""
    return "/".join(path.split("/")[:5])


@dataclass
class Stats:
    connects: int = 0
    drops: int = 0
    refused: int = 0
    notifications: int = 0
    notify_bytes: int = 0
    lost_in_air: int = 0  # in the controller when the link went down
    writes: int = 0


class VDevice:
    """One virtual peripheral as the adapter sees it."""

    def __init__(self, reader, writer) -> None:
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
        self.address = ""
        self.gatt: list = []
        self.adv: bytes | None = None
        self.resp = b""
        self.connected = False
        self.conn = 0
        self.mtu = 23
        self.rssi = -60 - random.randint(0, 15)
        self.mtu_event = asyncio.Event()
        self.reads: dict[int, asyncio.Future] = {}
        self.txq: asyncio.Queue | None = None
        self.tx_task: asyncio.Task | None = None
        self.notify_sock: socket.socket | None = None
        self.start_notify: set[tuple[str, str]] = set()  # (char path, sender)
        self.gatt_paths: list[str] = []
        self.char_by_handle: dict[int, str] = {}
        self.handle_by_char: dict[str, int] = {}
        self.stats = Stats()
        self.pref_interval = (24, 40)  # 1.25 ms units, unless the scan response asks otherwise
        self.advertising = asyncio.Event()

    @property
    def path(self) -> str:
        return device_path(self.address)

    def send(self, kind: int, body: bytes = b"") -> None:
        if self.writer.is_closing():
            return
        self.writer.write(struct.pack("<HB", len(body) + 1, kind) + body)

    def adv_fields(self, scan_response: bool = True) -> dict[str, Variant]:
        """Device1 properties from the advertising data and scan response, BlueZ's types. A
        passive scan sends no scan request, so it never sees the scan response."""
        adv, resp = self.adv or b"", self.resp if scan_response else b""
        iv = preferred_interval(adv, resp)
        if iv is not None:
            self.pref_interval = iv
        return device_properties(adv, resp)
