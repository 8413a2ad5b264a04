"""Virtual BlueZ: simulated BLE devices published on a private D-Bus bus as `org.bluez`.

The gateway's unmodified bleak code (its BlueZ backend) talks to this process exactly as it
talks to bluetoothd on a Raspberry Pi: it finds the adapter `/org/bluez/hci0` through the
ObjectManager, scans with SetDiscoveryFilter/StartDiscovery, sees `org.bluez.Device1` objects
with BlueZ's advertisement properties and D-Bus types, connects, waits for ServicesResolved,
reads the `GattService1`/`GattCharacteristic1`/`GattDescriptor1` objects laid out as
`.../dev_XX_XX_XX_XX_XX_XX/serviceXXXX/charXXXX/descXXXX`, writes with WriteValue, and receives
notifications through AcquireNotify (a SOCK_SEQPACKET pair whose fd travels over D-Bus) or
StartNotify (PropertiesChanged on Value).

On the other side, each virtual device's firmware (MicroPython with firmware/lib/bluetooth_sim
as its `bluetooth` module) connects over TCP and plays the peripheral: it registers its GATT
table, advertises, accepts the connection, answers the MTU exchange, gets writes and sends
notifications. This process is the air and the adapter's controller between them: one LE
connection attempt at a time, a limited number of links, a limited controller buffer whose
credits flow back to the device (so a slow link backs up into the device's ring buffer), and
no reordering.

Fault knobs (SetFaults on `org.perimon.VirtualBluez1` at /org/perimon/VirtualBluez, or the
constructor): drop a link (supervision timeout), refuse the next connection attempts of a
device, add latency to every packet, cap each link's throughput, limit the adapter's links.

Run: python -m simulators.virtual_bluez --bus unix:path=... --listen 127.0.0.1:0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from gateway.process import cpu_seconds, stop_process

log = logging.getLogger("virtual_bluez")

BLUEZ = "org.bluez"
ADAPTER_PATH = "/org/bluez/hci0"
ADAPTER_ADDRESS = "00:1A:7D:DA:71:13"
CONTROL_PATH = "/org/perimon/VirtualBluez"
CONTROL_IFACE = "org.perimon.VirtualBluez1"
OM = "org.freedesktop.DBus.ObjectManager"
PROPS = "org.freedesktop.DBus.Properties"
INTROSPECT = "org.freedesktop.DBus.Introspectable"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
SERVICE = "org.bluez.GattService1"
CHAR = "org.bluez.GattCharacteristic1"
DESC = "org.bluez.GattDescriptor1"
MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
MONITOR = "org.bluez.AdvertisementMonitor1"
DBUS = "org.freedesktop.DBus"
CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"
ERR_FAILED = "org.bluez.Error.Failed"
ERR_NOT_CONNECTED = "org.bluez.Error.NotConnected"
ERR_NOT_PERMITTED = "org.bluez.Error.NotPermitted"
ERR_NOT_SUPPORTED = "org.bluez.Error.NotSupported"
ERR_IN_PROGRESS = "org.bluez.Error.InProgress"
ERR_ALREADY_EXISTS = "org.bluez.Error.AlreadyExists"
ERR_DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
ERR_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
ERR_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
ERR_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"

# Device link messages: the same numbers as firmware/lib/bluetooth_sim.py (checked by a test).
M_HELLO = 1
M_ADV = 2
M_NOTIFY = 3
M_READ_RSP = 4
M_DISC = 5
M_CONNECT = 16
M_DISCONNECT = 17
M_MTU = 18
M_WRITE = 20
M_READ = 21
M_CONN_UPDATE = 22
M_COMPLETED = 23

CENTRAL_MTU = 517  # what BlueZ offers in its ATT Exchange MTU request
HCI_SUPERVISION_TIMEOUT = 0x08
HCI_REMOTE_USER_TERMINATED = 0x13
HCI_LOCAL_HOST_TERMINATED = 0x16
_FLAG_NAMES = [(0x02, "read"), (0x04, "write-without-response"), (0x08, "write"),
               (0x10, "notify"), (0x20, "indicate")]  # fmt: skip
_ADV_REPORT_S = 0.25  # how often an advertising device's report (RSSI) reaches the host
_CONNECT_S = 0.03  # a connection takes a few advertising intervals to establish


@dataclass
class Faults:
    latency_s: float = 0.0  # added to every packet in both directions and to connecting
    throughput_bps: float = 0.0  # cap per link on notification bytes (0: only the credits)
    max_links: int = 7  # LE links the adapter holds (a Pi's built-in radio: about 7)
    refuse: dict[str, int] = field(default_factory=dict)  # address -> attempts to refuse


@dataclass
class Stats:
    connects: int = 0
    drops: int = 0
    refused: int = 0
    notifications: int = 0
    notify_bytes: int = 0
    lost_in_air: int = 0  # in the controller when the link went down
    writes: int = 0


@dataclass
class Monitor:
    """An org.bluez.AdvertisementMonitor1 object a client registered (type "or_patterns")."""

    owner: str  # the client's unique bus name
    path: str
    patterns: list[tuple[int, int, bytes]]  # (start position, AD type, content)
    found: set[str] = field(default_factory=set)  # device paths DeviceFound was called for

    def matches(self, adv: bytes) -> bool:
        """BlueZ's or_patterns: some AD structure of the type holds the content at start."""
        for kind, payload in ad_structures(adv):
            for start, ad_type, content in self.patterns:
                if kind == ad_type and payload[start : start + len(content)] == content:
                    return True
        return False


def _dev_path(address: str) -> str:
    return f"{ADAPTER_PATH}/dev_{address.replace(':', '_')}"


def parse_ad(data: bytes) -> dict[int, bytes]:
    """AD structures as {type: payload}; repeated types are concatenated."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0 or i + 1 + n > len(data):
            break
        kind = data[i + 1]
        out[kind] = out.get(kind, b"") + bytes(data[i + 2 : i + 1 + n])
        i += 1 + n
    return out


def ad_structures(data: bytes) -> list[tuple[int, bytes]]:
    """AD structures as (type, payload) in the order they are on the air."""
    out = []
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0 or i + 1 + n > len(data):
            break
        out.append((data[i + 1], bytes(data[i + 2 : i + 1 + n])))
        i += 1 + n
    return out


def _uuid128(le: bytes) -> str:
    h = le[::-1].hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _uuid16(v: int) -> str:
    return f"{v:08x}-0000-1000-8000-00805f9b34fb"


class VDevice:
    """One virtual peripheral as the adapter sees it."""

    def __init__(self, hub: VirtualBluez, reader, writer) -> None:
        self.hub = hub
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
        return _dev_path(self.address)

    def send(self, kind: int, body: bytes = b"") -> None:
        if self.writer.is_closing():
            return
        self.writer.write(struct.pack("<HB", len(body) + 1, kind) + body)

    def adv_fields(self, scan_response: bool = True) -> dict[str, Variant]:
        """Device1 properties from the advertising data and scan response, BlueZ's types. A
        passive scan sends no scan request, so it never sees the scan response."""
        ad = parse_ad(self.adv or b"")
        rsp = parse_ad(self.resp if scan_response else b"")
        both = {**ad, **rsp}
        props: dict[str, Variant] = {}
        name = both.get(0x09) or both.get(0x08)
        if name:
            props["Name"] = Variant("s", name.decode("utf-8", "replace"))
        uuids = []
        for kind in (0x06, 0x07):
            raw = ad.get(kind, b"") + rsp.get(kind, b"")
            uuids += [_uuid128(raw[i : i + 16]) for i in range(0, len(raw) - 15, 16)]
        for kind in (0x02, 0x03):
            raw = ad.get(kind, b"") + rsp.get(kind, b"")
            uuids += [
                _uuid16(struct.unpack_from("<H", raw, i)[0]) for i in range(0, len(raw) - 1, 2)
            ]
        props["UUIDs"] = Variant("as", uuids)
        mfr = both.get(0xFF)
        if mfr and len(mfr) >= 2:
            cid = struct.unpack_from("<H", mfr)[0]
            props["ManufacturerData"] = Variant("a{qv}", {cid: Variant("ay", bytes(mfr[2:]))})
        if 0x01 in ad:
            props["AdvertisingFlags"] = Variant("ay", bytes(ad[0x01]))
        if 0x0A in both:
            props["TxPower"] = Variant("n", struct.unpack("b", both[0x0A][:1])[0])
        iv = both.get(0x12)
        if iv and len(iv) == 4:
            self.pref_interval = struct.unpack("<HH", iv)
        return props


class VirtualBluez:
    def __init__(self, bus_address: str, listen: str = "127.0.0.1:0", faults: Faults | None = None):
        self.bus_address = bus_address
        host, _, port = listen.rpartition(":")
        self.host, self.port = host, int(port)
        self.faults = faults or Faults()
        self.bus: MessageBus | None = None
        self.objects: dict[str, dict[str, dict[str, Variant]]] = {}
        self.devices: dict[str, VDevice] = {}  # by address
        self.discovery: set[str] = set()  # D-Bus senders with a discovery session
        self.filters: dict[str, dict[str, Any]] = {}
        self.monitor_apps: set[tuple[str, str]] = set()  # (client, root path) registered
        self.monitors: dict[tuple[str, str], Monitor] = {}  # (client, object path)
        self.counters = {"start_discovery": 0, "register_monitor": 0, "device_found": 0}
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._connect_lock = asyncio.Lock()
        self._next_conn = 0x40
        self._next_token = 1
        self.started = time.monotonic()

    # ---- lifecycle ----

    async def start(self) -> None:
        self.bus = await MessageBus(bus_address=self.bus_address, negotiate_unix_fd=True).connect()
        self.bus.add_message_handler(self._on_message)
        self.objects[ADAPTER_PATH] = {
            INTROSPECT: {},
            PROPS: {},
            ADAPTER: {
                "Address": Variant("s", ADAPTER_ADDRESS),
                "AddressType": Variant("s", "public"),
                "Name": Variant("s", "perimon-gw"),
                "Alias": Variant("s", "perimon-gw"),
                "Class": Variant("u", 0),
                "Powered": Variant("b", True),
                "PowerState": Variant("s", "on"),
                "Discoverable": Variant("b", False),
                "DiscoverableTimeout": Variant("u", 180),
                "Pairable": Variant("b", False),
                "PairableTimeout": Variant("u", 0),
                "Discovering": Variant("b", False),
                "UUIDs": Variant("as", []),
                "Modalias": Variant("s", "usb:v1D6Bp0246d0542"),
                "Roles": Variant("as", ["central", "peripheral"]),
                "ExperimentalFeatures": Variant("as", []),
            },
            MONITOR_MANAGER: {
                "SupportedMonitorTypes": Variant("as", ["or_patterns"]),
                "SupportedFeatures": Variant("as", []),
                "ActiveFeatures": Variant("as", []),
            },
        }
        self._server = await asyncio.start_server(self._serve_device, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        for rule in (f"type='signal',interface='{OM}'",  # monitors exported by clients
                     f"type='signal',sender='{DBUS}',member='NameOwnerChanged'"):  # fmt: skip
            await self.bus.call(Message(destination=DBUS, path="/org/freedesktop/DBus",
                                        interface=DBUS, member="AddMatch", signature="s",
                                        body=[rule]))  # fmt: skip
        await self.bus.request_name(BLUEZ)
        self._spawn(self._advertising_loop())
        log.info("virtual BlueZ on %s, devices connect to %s:%d", self.bus_address, self.host,
                 self.port)  # fmt: skip

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for dev in list(self.devices.values()):
            self._teardown(dev, HCI_LOCAL_HOST_TERMINATED)
            dev.writer.close()
        if self.bus:
            self.bus.disconnect()

    def _spawn(self, coro) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # ---- D-Bus objects and signals ----

    def _send(self, msg: Message):
        assert self.bus is not None
        return self.bus.send(msg)

    def _changed(self, path: str, iface: str, changed: dict[str, Variant], invalidated=()) -> None:
        obj = self.objects.get(path, {}).get(iface)
        if obj is None:
            return
        obj.update(changed)
        for name in invalidated:
            obj.pop(name, None)
        self._send(Message.new_signal(path, PROPS, "PropertiesChanged", "sa{sv}as",
                                      [iface, changed, list(invalidated)]))  # fmt: skip

    def _add(self, path: str, ifaces: dict[str, dict[str, Variant]]) -> None:
        full = {INTROSPECT: {}, **ifaces, PROPS: {}}
        self.objects[path] = full
        self._send(Message.new_signal("/", OM, "InterfacesAdded", "oa{sa{sv}}", [path, full]))

    def _remove(self, path: str) -> None:
        ifaces = self.objects.pop(path, None)
        if ifaces is not None:
            self._send(
                Message.new_signal("/", OM, "InterfacesRemoved", "oas", [path, list(ifaces)])
            )

    def _set_discovering(self) -> None:
        on = bool(self.discovery)
        if self.objects[ADAPTER_PATH][ADAPTER]["Discovering"].value != on:
            self._changed(ADAPTER_PATH, ADAPTER, {"Discovering": Variant("b", on)})

    def _matches_filter(self, dev: VDevice, uuids: list[str]) -> bool:
        wanted: set[str] = set()
        for f in self.filters.values():
            if not f.get("UUIDs"):
                return True
            wanted |= {u.lower() for u in f["UUIDs"]}
        return not self.filters or bool(wanted & {u.lower() for u in uuids})

    async def _advertising_loop(self) -> None:
        """While discovery runs, every advertising device is reported (its RSSI wanders); while
        an advertisement monitor is active, every device whose advertising data it matches."""
        while True:
            await asyncio.sleep(_ADV_REPORT_S)
            if not self.discovery and not self.monitors:
                continue
            for dev in list(self.devices.values()):
                if dev.adv is None or dev.connected or not dev.address:
                    continue
                self._report(dev)

    def _report(self, dev: VDevice) -> None:
        fields = dev.adv_fields()
        if not self.discovery or not self._matches_filter(dev, fields["UUIDs"].value):
            monitors = [m for m in self.monitors.values() if m.matches(dev.adv or b"")]
            if not monitors:
                return
            fields = dev.adv_fields(scan_response=False)  # passive: advertising data only
            self._report_fields(dev, fields)
            for m in monitors:
                if dev.path not in m.found:
                    m.found.add(dev.path)
                    self.counters["device_found"] += 1
                    self._call_client(m.owner, m.path, MONITOR, "DeviceFound", "o", [dev.path])
            return
        self._report_fields(dev, fields)

    def _report_fields(self, dev: VDevice, fields: dict[str, Variant]) -> None:
        dev.rssi = max(-95, min(-35, dev.rssi + random.randint(-3, 3)))
        fields["RSSI"] = Variant("n", dev.rssi)
        path = dev.path
        if path not in self.objects:
            name = fields.get("Name")
            props = {
                "Address": Variant("s", dev.address),
                "AddressType": Variant("s", "public"),
                "Alias": Variant("s", name.value if name else dev.address.replace(":", "-")),
                "Paired": Variant("b", False),
                "Bonded": Variant("b", False),
                "Trusted": Variant("b", False),
                "Blocked": Variant("b", False),
                "LegacyPairing": Variant("b", False),
                "Connected": Variant("b", False),
                "ServicesResolved": Variant("b", False),
                "Adapter": Variant("o", ADAPTER_PATH),
                **fields,
            }
            self._add(path, {DEVICE: props})
            return
        current = self.objects[path][DEVICE]
        changed = {k: v for k, v in fields.items() if k not in current or current[k] != v}
        if "Name" in changed:
            changed["Alias"] = changed["Name"]
        if changed:
            self._changed(path, DEVICE, changed)

    # ---- the device side (TCP) ----

    async def _serve_device(self, reader, writer) -> None:
        dev = VDevice(self, reader, writer)
        try:
            while True:
                head = await reader.readexactly(3)
                n, kind = struct.unpack("<HB", head)
                body = await reader.readexactly(n - 1) if n > 1 else b""
                if kind == M_NOTIFY:
                    self._on_notify(dev, body)
                else:
                    self._on_device_message(dev, kind, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("device link failed")
        finally:
            self._teardown(dev, HCI_SUPERVISION_TIMEOUT)
            dev.adv = None
            dev.advertising.clear()
            if self.devices.get(dev.address) is dev:
                del self.devices[dev.address]
            writer.close()

    def _on_device_message(self, dev: VDevice, kind: int, body: bytes) -> None:
        if kind == M_HELLO:
            hello = json.loads(body)
            old = self.devices.get(hello["address"])
            if old is not None and old is not dev:
                self._teardown(old, HCI_SUPERVISION_TIMEOUT)
                old.writer.close()
            dev.address = hello["address"]
            dev.gatt = hello["gatt"]
            self.devices[dev.address] = dev
        elif kind == M_ADV:
            if not body:
                dev.adv = None
                dev.advertising.clear()
            else:
                _iv, n = struct.unpack_from("<IB", body)
                dev.adv = bytes(body[5 : 5 + n])
                dev.resp = bytes(body[5 + n :])
                dev.adv_fields()
                dev.advertising.set()
                if (self.discovery or self.monitors) and dev.address and not dev.connected:
                    self._report(dev)
        elif kind == M_MTU:
            _conn, mtu = struct.unpack_from("<HH", body)
            dev.mtu = mtu
            dev.mtu_event.set()
        elif kind == M_READ_RSP:
            token = struct.unpack_from("<H", body)[0]
            fut = dev.reads.pop(token, None)
            if fut is not None and not fut.done():
                fut.set_result(bytes(body[2:]))
        elif kind == M_DISC:
            self._teardown(dev, HCI_REMOTE_USER_TERMINATED)

    def _on_notify(self, dev: VDevice, body: bytes) -> None:
        conn, handle = struct.unpack_from("<HH", body)
        if not dev.connected or conn != dev.conn or dev.txq is None:
            return  # the link is gone: the device learns it from DISCONNECT
        due = time.monotonic() + self.faults.latency_s
        dev.txq.put_nowait((due, handle, bytes(body[4:])))

    async def _deliver(self, dev: VDevice, q: asyncio.Queue) -> None:
        """The controller: notifications in order, paced, credits back to the device."""
        loop = asyncio.get_running_loop()
        done = 0
        while True:
            if q.empty() and done:
                dev.send(M_COMPLETED, struct.pack("<H", done))
                done = 0
            due, handle, data = await q.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            path = dev.char_by_handle.get(handle)
            if path is not None:
                await self._to_host(dev, path, data, loop)
            dev.stats.notifications += 1
            dev.stats.notify_bytes += len(data)
            done += 1
            if done >= 4:
                dev.send(M_COMPLETED, struct.pack("<H", done))
                done = 0
            if self.faults.throughput_bps > 0:
                await asyncio.sleep(len(data) / self.faults.throughput_bps)

    async def _to_host(self, dev: VDevice, path: str, data: bytes, loop) -> None:
        sock = dev.notify_sock
        if sock is not None and dev.handle_by_char.get(path) == self._data_handle(dev):
            try:
                await loop.sock_sendall(sock, data)  # blocks while the reader is behind
                return
            except OSError:
                self._release_notify(dev)
        if any(p == path for p, _ in dev.start_notify):
            self._changed(path, CHAR, {"Value": Variant("ay", data)})

    def _data_handle(self, dev: VDevice) -> int | None:
        for svc_uuid, chars in dev.gatt:
            for h, _uuid, flags in chars:
                if flags & 0x10 and not svc_uuid.startswith("0000"):
                    return h
        return None

    # ---- connections ----

    def _export_gatt(self, dev: VDevice) -> None:
        dpath = dev.path
        dev.gatt_paths = []
        dev.char_by_handle = {}
        dev.handle_by_char = {}
        for svc_uuid, chars in dev.gatt:
            if not chars:
                continue
            svc_handle = chars[0][0] - 2
            spath = f"{dpath}/service{svc_handle:04x}"
            self._add(spath, {SERVICE: {
                "UUID": Variant("s", svc_uuid),
                "Device": Variant("o", dpath),
                "Primary": Variant("b", True),
                "Includes": Variant("ao", []),
                "Handle": Variant("q", svc_handle),
            }})  # fmt: skip
            dev.gatt_paths.append(spath)
            for h, uuid, flags in chars:
                cpath = f"{spath}/char{h - 1:04x}"
                props = {
                    "UUID": Variant("s", uuid),
                    "Service": Variant("o", spath),
                    "Value": Variant("ay", b""),
                    "Flags": Variant("as", [n for bit, n in _FLAG_NAMES if flags & bit]),
                    "MTU": Variant("q", dev.mtu),
                    "Handle": Variant("q", h - 1),
                }
                if flags & 0x30:
                    props["Notifying"] = Variant("b", False)
                    props["NotifyAcquired"] = Variant("b", False)
                if flags & 0x04:
                    props["WriteAcquired"] = Variant("b", False)
                self._add(cpath, {CHAR: props})
                dev.gatt_paths.append(cpath)
                dev.char_by_handle[h] = cpath
                dev.handle_by_char[cpath] = h
                if flags & 0x30:
                    dpath_ = f"{cpath}/desc{h + 1:04x}"
                    self._add(dpath_, {DESC: {
                        "UUID": Variant("s", CCCD_UUID),
                        "Characteristic": Variant("o", cpath),
                        "Value": Variant("ay", b""),
                        "Handle": Variant("q", h + 1),
                    }})  # fmt: skip
                    dev.gatt_paths.append(dpath_)

    async def _connect(self, msg: Message, dev: VDevice) -> Message:
        if dev.connected:
            return Message.new_method_return(msg)
        async with self._connect_lock:  # one LE connection attempt at a time per adapter
            try:
                await asyncio.wait_for(dev.advertising.wait(), 5.0)
            except TimeoutError:
                return Message.new_error(msg, ERR_FAILED, "Page Timeout")
            if self.faults.refuse.get(dev.address, 0) > 0:
                self.faults.refuse[dev.address] -= 1
                dev.stats.refused += 1
                await asyncio.sleep(_CONNECT_S)
                return Message.new_error(msg, ERR_FAILED, "Connection refused (111)")
            links = sum(1 for d in self.devices.values() if d.connected)
            if links >= self.faults.max_links:
                return Message.new_error(msg, ERR_FAILED, "Connection Limit Exceeded (0x09)")
            await asyncio.sleep(_CONNECT_S + self.faults.latency_s)
            if dev.writer.is_closing() or dev.adv is None:
                return Message.new_error(msg, ERR_FAILED, "le-connection-abort-by-remote")
            self._next_conn = (self._next_conn + 1) & 0x0EFF
            dev.conn = self._next_conn
            dev.connected = True
            dev.adv = None
            dev.advertising.clear()
            for m in self.monitors.values():
                m.found.discard(dev.path)  # found anew when it advertises again
            dev.mtu = 23
            dev.mtu_event.clear()
            dev.stats.connects += 1
            q: asyncio.Queue = asyncio.Queue()
            dev.txq = q
            dev.tx_task = self._spawn(self._deliver(dev, q))
            central = bytes.fromhex(ADAPTER_ADDRESS.replace(":", ""))
            dev.send(M_CONNECT, struct.pack("<HB", dev.conn, 0) + central)
            self._changed(dev.path, DEVICE, {"Connected": Variant("b", True)})
            # BlueZ exchanges the MTU first, then discovers services.
            dev.send(M_MTU, struct.pack("<HH", dev.conn, CENTRAL_MTU))
            try:
                await asyncio.wait_for(dev.mtu_event.wait(), 2.0 + self.faults.latency_s * 2)
            except TimeoutError:
                self._teardown(dev, HCI_SUPERVISION_TIMEOUT)
                return Message.new_error(msg, ERR_FAILED, "le-connection-abort-by-remote")
            if not dev.connected:
                return Message.new_error(msg, ERR_FAILED, "le-connection-abort-by-remote")
            self._export_gatt(dev)
            uuids = list(self.objects[dev.path][DEVICE]["UUIDs"].value)
            for svc_uuid, _ in dev.gatt:
                if svc_uuid not in uuids:
                    uuids.append(svc_uuid)
            self._changed(dev.path, DEVICE, {"UUIDs": Variant("as", uuids),
                                             "ServicesResolved": Variant("b", True)})  # fmt: skip
            lo, hi = dev.pref_interval
            dev.send(M_CONN_UPDATE, struct.pack("<HHHH", dev.conn, max(lo, min(hi, 24)), 0, 400))
            log.info("%s connected (MTU %d)", dev.address, dev.mtu)
            return Message.new_method_return(msg)

    def _release_notify(self, dev: VDevice) -> None:
        sock, dev.notify_sock = dev.notify_sock, None
        if sock is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()
        for path in dev.char_by_handle.values():
            props = self.objects.get(path, {}).get(CHAR)
            if props and props.get("NotifyAcquired", Variant("b", False)).value:
                self._changed(path, CHAR, {"NotifyAcquired": Variant("b", False),
                                           "Notifying": Variant("b", False)})  # fmt: skip

    def _teardown(self, dev: VDevice, reason: int) -> None:
        """The link is gone: what the controller held is lost, the host objects go away."""
        if not dev.connected:
            return
        dev.connected = False
        dev.send(M_DISCONNECT, struct.pack("<HB", dev.conn, reason))
        if dev.tx_task is not None:
            dev.tx_task.cancel()
        if dev.txq is not None:
            dev.stats.lost_in_air += dev.txq.qsize()
        dev.txq = None
        dev.tx_task = None
        self._release_notify(dev)
        dev.start_notify.clear()
        for fut in dev.reads.values():
            if not fut.done():
                fut.cancel()
        dev.reads.clear()
        for p in reversed(dev.gatt_paths):
            self._remove(p)
        dev.gatt_paths = []
        if dev.path in self.objects:
            self._changed(dev.path, DEVICE, {"ServicesResolved": Variant("b", False)})
            self._changed(dev.path, DEVICE, {"Connected": Variant("b", False)})
        log.info("%s disconnected (reason 0x%02x)", dev.address, reason)

    def drop(self, address: str) -> bool:
        """Link loss (supervision timeout) on one device."""
        dev = self.devices.get(address)
        if dev is None or not dev.connected:
            return False
        dev.stats.drops += 1
        self._teardown(dev, HCI_SUPERVISION_TIMEOUT)
        return True

    # ---- D-Bus method calls ----

    def _on_message(self, msg: Message):
        if msg.message_type == MessageType.SIGNAL:
            self._on_signal(msg)
            return False
        if msg.message_type != MessageType.METHOD_CALL:
            return False
        path, iface, member = msg.path or "", msg.interface, msg.member
        if iface == OM and member == "GetManagedObjects":
            objs = {p: o for p, o in self.objects.items() if p.startswith(path.rstrip("/") + "/")}
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [objs])
        if path == CONTROL_PATH and iface in (CONTROL_IFACE, None):
            return self._control(msg)
        if path not in self.objects:
            if path.startswith("/org/bluez"):
                return Message.new_error(msg, ERR_UNKNOWN_OBJECT, f"no object at {path}")
            return False
        if iface == PROPS:
            return self._properties(msg)
        if iface == INTROSPECT:
            return Message.new_method_return(msg, "s", [self._introspect(path)])
        if iface == ADAPTER and path == ADAPTER_PATH:
            return self._adapter_call(msg)
        if iface == MONITOR_MANAGER and path == ADAPTER_PATH:
            return self._monitor_manager_call(msg)
        if iface in (DEVICE, CHAR, DESC):
            dev = self._device_of(path)
            if dev is None:
                return Message.new_error(msg, ERR_FAILED, "Device not available")
            handler = {DEVICE: self._device_call, CHAR: self._char_call, DESC: self._desc_call}
            return handler[iface](msg, dev)
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, f"{iface}.{member} not supported")

    def _reply_later(self, msg: Message, coro) -> bool:
        async def run():
            try:
                reply = await coro
            except asyncio.CancelledError:
                reply = Message.new_error(msg, ERR_FAILED, "Operation canceled")
            except Exception as exc:
                log.exception("%s.%s failed", msg.interface, msg.member)
                reply = Message.new_error(msg, ERR_FAILED, str(exc))
            if self.bus is not None and self.bus.connected:
                self._send(reply)

        self._spawn(run())
        return True

    def _device_of(self, path: str) -> VDevice | None:
        dpath = "/".join(path.split("/")[:5])
        for dev in self.devices.values():
            if dev.address and dev.path == dpath:
                return dev
        return None

    def _introspect(self, path: str) -> str:
        prefix = path.rstrip("/") + "/"
        kids = sorted(
            {p[len(prefix) :].split("/")[0] for p in self.objects if p.startswith(prefix)}
        )
        nodes = "".join(f'<node name="{k}"/>' for k in kids)
        ifaces = "".join(f'<interface name="{i}"/>' for i in self.objects.get(path, {}))
        return f"<node>{ifaces}{nodes}</node>"

    def _properties(self, msg: Message):
        body = msg.body
        obj = self.objects[msg.path]
        if msg.member == "GetAll":
            return Message.new_method_return(msg, "a{sv}", [obj.get(body[0], {})])
        if msg.member == "Get":
            v = obj.get(body[0], {}).get(body[1])
            if v is None:
                return Message.new_error(msg, ERR_INVALID_ARGS, "No such property")
            return Message.new_method_return(msg, "v", [v])
        if msg.member == "Set":
            iface, name, value = body
            if iface == DEVICE and name in ("Trusted", "Blocked"):
                self._changed(msg.path, iface, {name: value})
                return Message.new_method_return(msg)
            return Message.new_error(msg, ERR_NOT_PERMITTED, f"{name} is read-only")
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, msg.member)

    def _adapter_call(self, msg: Message):
        m = msg.member
        if m == "SetDiscoveryFilter":
            f = {k: v.value for k, v in msg.body[0].items()}
            if f:
                self.filters[msg.sender] = f
            else:
                self.filters.pop(msg.sender, None)
            return Message.new_method_return(msg)
        if m == "StartDiscovery":
            self.counters["start_discovery"] += 1
            self.discovery.add(msg.sender)
            self._set_discovering()
            for dev in list(self.devices.values()):
                if dev.adv is not None and not dev.connected and dev.address:
                    self._report(dev)
            return Message.new_method_return(msg)
        if m == "StopDiscovery":
            if msg.sender not in self.discovery:
                return Message.new_error(msg, "org.bluez.Error.Failed", "No discovery started")
            self.discovery.discard(msg.sender)
            self._set_discovering()
            return Message.new_method_return(msg)
        if m == "GetDiscoveryFilters":
            return Message.new_method_return(
                msg, "as", [["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData"]]
            )
        if m == "RemoveDevice":
            dev = self._device_of(msg.body[0])
            if dev is None and msg.body[0] not in self.objects:
                return Message.new_error(msg, "org.bluez.Error.DoesNotExist", "Does Not Exist")
            if dev is not None:
                self._teardown(dev, HCI_LOCAL_HOST_TERMINATED)
            self._remove(msg.body[0])
            return Message.new_method_return(msg)
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, m)

    def _device_call(self, msg: Message, dev: VDevice):
        m = msg.member
        if m == "Connect":
            return self._reply_later(msg, self._connect(msg, dev))
        if m == "Disconnect":

            async def disconnect():
                await asyncio.sleep(self.faults.latency_s)
                self._teardown(dev, HCI_LOCAL_HOST_TERMINATED)
                return Message.new_method_return(msg)

            return self._reply_later(msg, disconnect())
        if m in ("Pair", "CancelPairing", "ConnectProfile", "DisconnectProfile"):
            return Message.new_error(msg, ERR_NOT_SUPPORTED, "Operation is not supported")
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, m)

    def _char_call(self, msg: Message, dev: VDevice):
        m = msg.member
        path = msg.path
        handle = dev.handle_by_char.get(path)
        if handle is None or not dev.connected:
            return Message.new_error(msg, ERR_NOT_CONNECTED, "Not connected")
        flags = self.objects[path][CHAR]["Flags"].value
        if m == "ReadValue":
            if "read" not in flags:
                return Message.new_error(msg, ERR_NOT_PERMITTED, "Read not permitted")
            return self._reply_later(msg, self._read(msg, dev, path, handle))
        if m == "WriteValue":
            if "write" not in flags and "write-without-response" not in flags:
                return Message.new_error(msg, ERR_NOT_PERMITTED, "Write not permitted")
            value = bytes(msg.body[0])
            if len(value) > dev.mtu - 3:
                return Message.new_error(msg, ERR_INVALID_ARGS, "Invalid Length")

            async def write():
                await asyncio.sleep(self.faults.latency_s)
                if not dev.connected:
                    return Message.new_error(msg, ERR_FAILED, "Not connected")
                dev.send(M_WRITE, struct.pack("<HH", dev.conn, handle) + value)
                dev.stats.writes += 1
                return Message.new_method_return(msg)

            return self._reply_later(msg, write())
        if m == "AcquireNotify":
            if "notify" not in flags:
                return Message.new_error(msg, ERR_NOT_SUPPORTED, "Operation is not supported")
            if dev.notify_sock is not None or any(p == path for p, _ in dev.start_notify):
                return Message.new_error(msg, ERR_NOT_PERMITTED, "Notify acquired")
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            ours.setblocking(False)
            dev.notify_sock = ours
            loop = asyncio.get_running_loop()

            def on_hangup() -> None:  # the client closed its end: notifications released
                try:
                    if ours.recv(1) == b"":
                        raise OSError("closed")
                except BlockingIOError:
                    return
                except OSError:
                    pass
                if dev.notify_sock is ours:
                    self._release_notify(dev)

            loop.add_reader(ours.fileno(), on_hangup)
            self._changed(path, CHAR, {"NotifyAcquired": Variant("b", True),
                                       "Notifying": Variant("b", True)})  # fmt: skip
            reply = Message.new_method_return(msg, "hq", [0, dev.mtu], [theirs.fileno()])

            async def send_fd():
                try:
                    await self._send(reply)
                finally:
                    theirs.close()

            self._spawn(send_fd())
            return True
        if m == "StartNotify":
            if "notify" not in flags and "indicate" not in flags:
                return Message.new_error(msg, ERR_NOT_SUPPORTED, "Operation is not supported")
            if dev.notify_sock is not None and dev.handle_by_char.get(path) == self._data_handle(
                dev
            ):
                return Message.new_error(msg, ERR_NOT_PERMITTED, "Notify acquired")
            dev.start_notify.add((path, msg.sender))
            self._changed(path, CHAR, {"Notifying": Variant("b", True)})
            return Message.new_method_return(msg)
        if m == "StopNotify":
            dev.start_notify.discard((path, msg.sender))
            if not any(p == path for p, _ in dev.start_notify):
                self._changed(path, CHAR, {"Notifying": Variant("b", False)})
            return Message.new_method_return(msg)
        return Message.new_error(msg, ERR_NOT_SUPPORTED, "Operation is not supported")

    async def _read(self, msg: Message, dev: VDevice, path: str, handle: int) -> Message:
        self._next_token = (self._next_token + 1) & 0xFFFF
        token = self._next_token
        fut = asyncio.get_running_loop().create_future()
        dev.reads[token] = fut
        await asyncio.sleep(self.faults.latency_s)
        dev.send(M_READ, struct.pack("<HH", token, handle))
        try:
            value = await asyncio.wait_for(fut, 5.0 + self.faults.latency_s)
        except (TimeoutError, asyncio.CancelledError):
            return Message.new_error(msg, ERR_FAILED, "Operation failed with ATT error: 0x0e")
        self._changed(path, CHAR, {"Value": Variant("ay", value)})
        return Message.new_method_return(msg, "ay", [value])

    def _desc_call(self, msg: Message, dev: VDevice):
        if msg.member == "ReadValue":
            v = self.objects[msg.path][DESC]["Value"].value
            return Message.new_method_return(msg, "ay", [v])
        if msg.member == "WriteValue":
            return Message.new_error(msg, ERR_NOT_PERMITTED, "Write not permitted")
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, msg.member)

    # ---- passive scanning: advertisement monitors ----

    def _monitor_manager_call(self, msg: Message):
        """RegisterMonitor(root) / UnregisterMonitor(root): as BlueZ, the monitors are the
        client's AdvertisementMonitor1 objects at or under root, found through its object
        manager now and through InterfacesAdded later (bleak exports after registering)."""
        key = (msg.sender, msg.body[0] if msg.body else "")
        if msg.member == "RegisterMonitor":
            if key in self.monitor_apps:
                return Message.new_error(msg, ERR_ALREADY_EXISTS, "Already Exists")
            self.monitor_apps.add(key)
            self.counters["register_monitor"] += 1
            self._spawn(self._find_monitors(*key))
            return Message.new_method_return(msg)
        if msg.member == "UnregisterMonitor":
            if key not in self.monitor_apps:
                return Message.new_error(msg, ERR_DOES_NOT_EXIST, "Does Not Exist")
            self.monitor_apps.discard(key)
            for mkey in [k for k in self.monitors if self._app_of(*k) is None]:
                del self.monitors[mkey]
            return Message.new_method_return(msg)
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, msg.member)

    def _app_of(self, owner: str, path: str) -> tuple[str, str] | None:
        for app in self.monitor_apps:
            if app[0] == owner and (path == app[1] or path.startswith(app[1].rstrip("/") + "/")):
                return app
        return None

    async def _find_monitors(self, owner: str, root: str) -> None:
        assert self.bus is not None
        reply = await self.bus.call(Message(destination=owner, path=root, interface=OM,
                                            member="GetManagedObjects"))  # fmt: skip
        if reply.message_type == MessageType.METHOD_RETURN:
            for path, ifaces in reply.body[0].items():
                if MONITOR in ifaces:
                    self._add_monitor(owner, path, ifaces[MONITOR])

    def _add_monitor(self, owner: str, path: str, props: dict[str, Variant]) -> None:
        kind = props.get("Type")
        patterns = props.get("Patterns")
        if kind is None or kind.value != "or_patterns" or not patterns or not patterns.value:
            self._call_client(owner, path, MONITOR, "Release")  # BlueZ refuses it
            return
        pats = [(int(a), int(b), bytes(c)) for a, b, c in patterns.value]
        self.monitors[(owner, path)] = Monitor(owner, path, pats)
        self._call_client(owner, path, MONITOR, "Activate")
        for dev in list(self.devices.values()):
            if dev.adv is not None and not dev.connected and dev.address:
                self._report(dev)

    def _call_client(self, owner: str, path: str, iface: str, member: str, signature: str = "",
                     body: list | None = None) -> None:  # fmt: skip
        """A method call to a client's object; its answer is not waited for."""
        self._send(Message(destination=owner, path=path, interface=iface, member=member,
                           signature=signature, body=body or []))  # fmt: skip

    def _on_signal(self, msg: Message) -> None:
        if msg.interface == OM and msg.member == "InterfacesAdded":
            path, ifaces = msg.body
            if MONITOR in ifaces and self._app_of(msg.sender, path) is not None:
                self._add_monitor(msg.sender, path, ifaces[MONITOR])
        elif msg.interface == OM and msg.member == "InterfacesRemoved":
            path, names = msg.body
            if MONITOR in names:
                self.monitors.pop((msg.sender, path), None)
        elif msg.member == "NameOwnerChanged" and msg.sender == DBUS:
            name, _old, new = msg.body
            if not new:  # a client left the bus: its scans and monitors go with it
                self.discovery.discard(name)
                self.filters.pop(name, None)
                self.monitor_apps = {a for a in self.monitor_apps if a[0] != name}
                self.monitors = {k: m for k, m in self.monitors.items() if k[0] != name}
                if self.bus is not None:
                    self._set_discovering()

    # ---- fault and status control ----

    def _control(self, msg: Message):
        m = msg.member
        try:
            if m == "DropLink":
                return Message.new_method_return(msg, "b", [self.drop(msg.body[0])])
            if m == "SetFaults":
                self.set_faults(**json.loads(msg.body[0]))
                return Message.new_method_return(msg)
            if m == "Status":
                return Message.new_method_return(msg, "s", [json.dumps(self.status())])
        except (TypeError, ValueError, KeyError) as exc:
            return Message.new_error(msg, ERR_INVALID_ARGS, str(exc))
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, m)

    def set_faults(self, **kw) -> None:
        for k, v in kw.items():
            if k == "refuse":
                self.faults.refuse.update({str(a): int(n) for a, n in v.items()})
            elif k in ("latency_s", "throughput_bps"):
                setattr(self.faults, k, float(v))
            elif k == "max_links":
                self.faults.max_links = int(v)
            else:
                raise KeyError(f"unknown fault {k!r}")

    def status(self) -> dict:
        return {
            "devices": {
                d.address: {
                    "name": (d.adv_fields().get("Name") or Variant("s", "")).value
                    if d.adv
                    else self.objects.get(d.path, {})
                    .get(DEVICE, {})
                    .get("Name", Variant("s", ""))
                    .value,
                    "connected": d.connected,
                    "mtu": d.mtu,
                    "rssi": d.rssi,
                    **d.stats.__dict__,
                }
                for d in self.devices.values()
                if d.address
            },
            "discovering": bool(self.discovery),
            "monitors": len(self.monitors),
            **self.counters,
            "faults": {**self.faults.__dict__},
        }


class VirtualBluezControl:
    """The fault knobs and status of a running virtual BlueZ, over its bus."""

    def __init__(self, bus_address: str) -> None:
        self.bus_address = bus_address
        self.bus: MessageBus | None = None

    async def _call(self, member: str, signature: str = "", body: list | None = None):
        if self.bus is None:
            self.bus = await MessageBus(bus_address=self.bus_address).connect()
        reply = await self.bus.call(Message(destination=BLUEZ, path=CONTROL_PATH,
                                            interface=CONTROL_IFACE, member=member,
                                            signature=signature, body=body or []))  # fmt: skip
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"{reply.error_name}: {reply.body}")
        return reply.body

    async def drop(self, address: str) -> bool:
        return (await self._call("DropLink", "s", [address]))[0]

    async def set_faults(self, **kw) -> None:
        await self._call("SetFaults", "s", [json.dumps(kw)])

    async def status(self) -> dict:
        return json.loads((await self._call("Status"))[0])

    async def bus_clients(self) -> int:
        """Connections open on the bus (unique names), this one and the virtual BlueZ's
        included: a client that leaks connections shows here."""
        if self.bus is None:
            self.bus = await MessageBus(bus_address=self.bus_address).connect()
        reply = await self.bus.call(Message(destination="org.freedesktop.DBus",
                                            path="/org/freedesktop/DBus",
                                            interface="org.freedesktop.DBus",
                                            member="ListNames"))  # fmt: skip
        return sum(1 for n in reply.body[0] if n.startswith(":"))

    def close(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None


# ---- a private bus and the process around it ----

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>perimon-test</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
  <limit name="max_incoming_unix_fds">1024</limit>
</busconfig>
"""


def dbus_daemon_binary() -> str | None:
    return shutil.which("dbus-daemon") or (
        "/usr/bin/dbus-daemon" if Path("/usr/bin/dbus-daemon").exists() else None
    )


class PrivateBus:
    """A dbus-daemon of our own: nothing else on it, gone when stopped."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="perimon-bus-")
            workdir = Path(self._tmp.name)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateBus:
        daemon = dbus_daemon_binary()
        if daemon is None:
            raise FileNotFoundError("dbus-daemon is not installed (Debian package: dbus)")
        conf = self.dir / "bus.conf"
        conf.write_text(_BUS_CONFIG.format(socket=self.socket))
        self.proc = subprocess.Popen(
            [daemon, f"--config-file={conf}", "--nofork", "--nopidfile", "--print-address"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"dbus-daemon did not start: {self.proc.stderr.read()}")
        self.address = line.split(",")[0] if line.startswith("unix:") else self.address
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)
        if self._tmp is not None:
            self._tmp.cleanup()


class VirtualBluezProcess:
    """`python -m simulators.virtual_bluez` as a child process, for tests, demo, benchmark."""

    def __init__(self, bus_address: str, listen: str = "127.0.0.1:0", max_links: int = 7,
                 log_file: Path | None = None) -> None:  # fmt: skip
        self.bus_address = bus_address
        self.listen = listen
        self.max_links = max_links
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def radio(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> VirtualBluezProcess:
        err = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        repo = Path(__file__).resolve().parents[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulators.virtual_bluez", "--bus", self.bus_address,
             "--listen", self.listen, "--max-links", str(self.max_links)],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=repo,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )  # fmt: skip
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            raise RuntimeError("virtual BlueZ did not start")
        self.port = int(line[1])
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)


async def _main(args: argparse.Namespace) -> None:
    vb = VirtualBluez(args.bus, args.listen, Faults(max_links=args.max_links))
    await vb.start()
    print(f"READY {vb.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await vb.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bus", required=True, help="D-Bus address to publish org.bluez on")
    ap.add_argument("--listen", default="127.0.0.1:0", help="where virtual devices connect")
    ap.add_argument("--max-links", type=int, default=7)
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")  # fmt: skip
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
