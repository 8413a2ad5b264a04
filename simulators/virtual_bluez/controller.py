"""The adapter's controller and the air between it and each device's firmware.

Each virtual device's firmware (MicroPython with firmware/sim/bluetooth_sim as its `bluetooth`
module) connects over TCP and plays the peripheral: it registers its GATT table, advertises,
accepts the connection, answers the MTU exchange, gets writes and sends notifications. Here:
one LE connection attempt at a time, a limited number of links, a limited controller buffer
whose credits flow back to the device (so a slow link backs up into the device's ring buffer),
and no reordering. Device1's Connect and Disconnect land here too."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time

from dbus_fast import Message, Variant

from simulators.virtual_bluez.defs import (
    ADAPTER_ADDRESS,
    CENTRAL_MTU,
    DEVICE,
    ERR_FAILED,
    ERR_NOT_SUPPORTED,
    ERR_UNKNOWN_METHOD,
    HCI_LOCAL_HOST_TERMINATED,
    HCI_REMOTE_USER_TERMINATED,
    HCI_SUPERVISION_TIMEOUT,
    M_ADV,
    M_COMPLETED,
    M_CONN_UPDATE,
    M_CONNECT,
    M_DISC,
    M_DISCONNECT,
    M_HELLO,
    M_MTU,
    M_MTU_REQ,
    M_MTU_RSP,
    M_NOTIFY,
    M_READ_RSP,
    Faults,
)
from simulators.virtual_bluez.device import VDevice, device_path_of
from simulators.virtual_bluez.gatt import GattObjects
from simulators.virtual_bluez.objects import ObjectTree
from simulators.virtual_bluez.scanner import Scanner

log = logging.getLogger(__name__)

_CONNECT_S = 0.03  # a connection takes a few advertising intervals to establish


class Controller:
    def __init__(self, tree: ObjectTree, gatt: GattObjects, scanner: Scanner, faults: Faults,
                 devices: dict[str, VDevice]) -> None:  # fmt: skip
        self.tree = tree
        self.gatt = gatt
        self.scanner = scanner
        self.faults = faults
        self.devices = devices  # by address
        self._server: asyncio.base_events.Server | None = None
        self._connect_lock = asyncio.Lock()
        self._next_conn = 0x40

    async def listen(self, host: str, port: int) -> int:
        """Accept device links; the port they connect to."""
        self._server = await asyncio.start_server(self._serve_device, host, port)
        return self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        """No new device links."""
        if self._server:
            self._server.close()

    def disconnect_all(self) -> None:
        """The adapter goes away: every link ends, every device link is closed."""
        for dev in list(self.devices.values()):
            self.teardown(dev, HCI_LOCAL_HOST_TERMINATED)
            dev.writer.close()

    def device_of(self, path: str) -> VDevice | None:
        """The device whose Device1 object `path` is, or is under."""
        dpath = device_path_of(path)
        for dev in self.devices.values():
            if dev.address and dev.path == dpath:
                return dev
        return None

    # ---- the device side (TCP) ----

    async def _serve_device(self, reader, writer) -> None:
        dev = VDevice(reader, writer)
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
        except Exception:  # one device's broken link must not take the adapter down
            log.exception("device link failed")
        finally:
            self.teardown(dev, HCI_SUPERVISION_TIMEOUT)
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
                self.teardown(old, HCI_SUPERVISION_TIMEOUT)
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
                self.scanner.advertised(dev)
        elif kind == M_MTU:  # the device's answer to the central's exchange
            _conn, mtu = struct.unpack_from("<HH", body)
            dev.mtu = mtu
            dev.mtu_event.set()
        elif kind == M_MTU_REQ:  # the device's own exchange: the central answers with its MTU
            conn, mtu = struct.unpack_from("<HH", body)
            if dev.connected and conn == dev.conn:
                dev.mtu = min(mtu, CENTRAL_MTU)
                dev.send(M_MTU_RSP, struct.pack("<HH", conn, CENTRAL_MTU))
                dev.mtu_event.set()
        elif kind == M_READ_RSP:
            token = struct.unpack_from("<H", body)[0]
            fut = dev.reads.pop(token, None)
            if fut is not None and not fut.done():
                fut.set_result(bytes(body[2:]))
        elif kind == M_DISC:
            self.teardown(dev, HCI_REMOTE_USER_TERMINATED)

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
                await self.gatt.to_host(dev, path, data, loop)
            dev.stats.notifications += 1
            dev.stats.notify_bytes += len(data)
            done += 1
            if done >= 4:
                dev.send(M_COMPLETED, struct.pack("<H", done))
                done = 0
            if self.faults.throughput_bps > 0:
                await asyncio.sleep(len(data) / self.faults.throughput_bps)

    # ---- connections ----

    def device_call(self, msg: Message, dev: VDevice):
        """Device1's methods."""
        m = msg.member
        if m == "Connect":
            return self.tree.reply_later(msg, self._connect(msg, dev))
        if m == "Disconnect":

            async def disconnect():
                await asyncio.sleep(self.faults.latency_s)
                self.teardown(dev, HCI_LOCAL_HOST_TERMINATED)
                return Message.new_method_return(msg)

            return self.tree.reply_later(msg, disconnect())
        if m in ("Pair", "CancelPairing", "ConnectProfile", "DisconnectProfile"):
            return Message.new_error(msg, ERR_NOT_SUPPORTED, "Operation is not supported")
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, m)

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
            self.scanner.connected(dev)
            dev.mtu = 23
            dev.mtu_event.clear()
            dev.stats.connects += 1
            q: asyncio.Queue = asyncio.Queue()
            dev.txq = q
            dev.tx_task = self.tree.tasks.spawn(self._deliver(dev, q))
            central = bytes.fromhex(ADAPTER_ADDRESS.replace(":", ""))
            dev.send(M_CONNECT, struct.pack("<HB", dev.conn, 0) + central)
            self.tree.changed(dev.path, DEVICE, {"Connected": Variant("b", True)})
            # BlueZ exchanges the MTU first, then discovers services; the device may start
            # its own exchange too, and services are resolved after whichever ends first.
            if self.faults.central_mtu_exchange:
                dev.send(M_MTU, struct.pack("<HH", dev.conn, CENTRAL_MTU))
            try:
                await asyncio.wait_for(dev.mtu_event.wait(), 2.0 + self.faults.latency_s * 2)
            except TimeoutError:
                self.teardown(dev, HCI_SUPERVISION_TIMEOUT)
                return Message.new_error(msg, ERR_FAILED, "le-connection-abort-by-remote")
            if not dev.connected:
                return Message.new_error(msg, ERR_FAILED, "le-connection-abort-by-remote")
            self.gatt.export(dev)
            uuids = list(self.tree.objects[dev.path][DEVICE]["UUIDs"].value)
            for svc_uuid, _ in dev.gatt:
                if svc_uuid not in uuids:
                    uuids.append(svc_uuid)
            resolved = {"UUIDs": Variant("as", uuids), "ServicesResolved": Variant("b", True)}
            self.tree.changed(dev.path, DEVICE, resolved)
            lo, hi = dev.pref_interval
            dev.send(M_CONN_UPDATE, struct.pack("<HHHH", dev.conn, max(lo, min(hi, 24)), 0, 400))
            log.info("%s connected (MTU %d)", dev.address, dev.mtu)
            return Message.new_method_return(msg)

    def teardown(self, dev: VDevice, reason: int) -> None:
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
        self.gatt.unexport(dev)
        if dev.path in self.tree.objects:
            self.tree.changed(dev.path, DEVICE, {"ServicesResolved": Variant("b", False)})
            self.tree.changed(dev.path, DEVICE, {"Connected": Variant("b", False)})
        log.info("%s disconnected (reason 0x%02x)", dev.address, reason)

    def drop(self, address: str) -> bool:
        """Link loss (supervision timeout) on one device."""
        dev = self.devices.get(address)
        if dev is None or not dev.connected:
            return False
        dev.stats.drops += 1
        self.teardown(dev, HCI_SUPERVISION_TIMEOUT)
        return True
