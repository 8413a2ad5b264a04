"""A connected device's GATT table as BlueZ exports it, `.../serviceXXXX/charXXXX/descXXXX`, and
the calls on it: ReadValue, WriteValue, AcquireNotify (a SOCK_SEQPACKET pair whose fd travels
over D-Bus) and StartNotify/StopNotify (PropertiesChanged on Value)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from dbus_fast import Message, Variant

from simulators.virtual_bluez.defs import (
    CCCD_UUID,
    CHAR,
    DESC,
    ERR_FAILED,
    ERR_INVALID_ARGS,
    ERR_NOT_CONNECTED,
    ERR_NOT_PERMITTED,
    ERR_NOT_SUPPORTED,
    ERR_UNKNOWN_METHOD,
    M_READ,
    M_WRITE,
    SERVICE,
    Faults,
)
from simulators.virtual_bluez.device import VDevice
from simulators.virtual_bluez.objects import ObjectTree

_FLAG_NAMES = [(0x02, "read"), (0x04, "write-without-response"), (0x08, "write"),
               (0x10, "notify"), (0x20, "indicate")]  # fmt: skip


def data_handle(dev: VDevice) -> int | None:
    """The value handle of the device's own notify characteristic (the perimon data stream)."""
    for svc_uuid, chars in dev.gatt:
        for h, _uuid, flags in chars:
            if flags & 0x10 and not svc_uuid.startswith("0000"):
                return h
    return None


class GattObjects:
    """The GATT objects of the connected devices and their method calls."""

    def __init__(self, tree: ObjectTree, faults: Faults) -> None:
        self.tree = tree
        self.faults = faults
        self._next_token = 1

    def export(self, dev: VDevice) -> None:
        """Services, characteristics and CCCDs from the table the device registered."""
        dpath = dev.path
        dev.gatt_paths = []
        dev.char_by_handle = {}
        dev.handle_by_char = {}
        for svc_uuid, chars in dev.gatt:
            if not chars:
                continue
            svc_handle = chars[0][0] - 2
            spath = f"{dpath}/service{svc_handle:04x}"
            self.tree.add(spath, {SERVICE: {
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
                self.tree.add(cpath, {CHAR: props})
                dev.gatt_paths.append(cpath)
                dev.char_by_handle[h] = cpath
                dev.handle_by_char[cpath] = h
                if flags & 0x30:
                    dpath_ = f"{cpath}/desc{h + 1:04x}"
                    self.tree.add(dpath_, {DESC: {
                        "UUID": Variant("s", CCCD_UUID),
                        "Characteristic": Variant("o", cpath),
                        "Value": Variant("ay", b""),
                        "Handle": Variant("q", h + 1),
                    }})  # fmt: skip
                    dev.gatt_paths.append(dpath_)

    def unexport(self, dev: VDevice) -> None:
        """The link is gone: notifications released, reads failed, the objects removed."""
        self.release_notify(dev)
        dev.start_notify.clear()
        for fut in dev.reads.values():
            if not fut.done():
                fut.cancel()
        dev.reads.clear()
        for p in reversed(dev.gatt_paths):
            self.tree.remove(p)
        dev.gatt_paths = []

    # ---- notifications to the host ----

    async def to_host(self, dev: VDevice, path: str, data: bytes, loop) -> None:
        """One notification the controller delivered: through the acquired socket, or as
        PropertiesChanged on Value to the clients that called StartNotify."""
        sock = dev.notify_sock
        if sock is not None and dev.handle_by_char.get(path) == data_handle(dev):
            try:
                await loop.sock_sendall(sock, data)  # blocks while the reader is behind
                return
            except OSError:
                self.release_notify(dev)
        if any(p == path for p, _ in dev.start_notify):
            self.tree.changed(path, CHAR, {"Value": Variant("ay", data)})

    def release_notify(self, dev: VDevice) -> None:
        sock, dev.notify_sock = dev.notify_sock, None
        if sock is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()
        for path in dev.char_by_handle.values():
            props = self.tree.objects.get(path, {}).get(CHAR)
            if props and props.get("NotifyAcquired", Variant("b", False)).value:
                self.tree.changed(path, CHAR, {"NotifyAcquired": Variant("b", False),
                                               "Notifying": Variant("b", False)})  # fmt: skip

    # ---- method calls ----

    def char_call(self, msg: Message, dev: VDevice):
        m = msg.member
        path = msg.path
        handle = dev.handle_by_char.get(path)
        if handle is None or not dev.connected:
            return Message.new_error(msg, ERR_NOT_CONNECTED, "Not connected")
        flags = self.tree.objects[path][CHAR]["Flags"].value
        if m == "ReadValue":
            if "read" not in flags:
                return Message.new_error(msg, ERR_NOT_PERMITTED, "Read not permitted")
            return self.tree.reply_later(msg, self._read(msg, dev, path, handle))
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

            return self.tree.reply_later(msg, write())
        if m == "AcquireNotify":
            return self._acquire_notify(msg, dev, path, flags)
        if m == "StartNotify":
            if "notify" not in flags and "indicate" not in flags:
                return Message.new_error(msg, ERR_NOT_SUPPORTED, "Operation is not supported")
            if dev.notify_sock is not None and dev.handle_by_char.get(path) == data_handle(dev):
                return Message.new_error(msg, ERR_NOT_PERMITTED, "Notify acquired")
            dev.start_notify.add((path, msg.sender))
            self.tree.changed(path, CHAR, {"Notifying": Variant("b", True)})
            return Message.new_method_return(msg)
        if m == "StopNotify":
            dev.start_notify.discard((path, msg.sender))
            if not any(p == path for p, _ in dev.start_notify):
                self.tree.changed(path, CHAR, {"Notifying": Variant("b", False)})
            return Message.new_method_return(msg)
        return Message.new_error(msg, ERR_NOT_SUPPORTED, "Operation is not supported")

    def _acquire_notify(self, msg: Message, dev: VDevice, path: str, flags: list[str]):
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
                self.release_notify(dev)

        loop.add_reader(ours.fileno(), on_hangup)
        self.tree.changed(path, CHAR, {"NotifyAcquired": Variant("b", True),
                                       "Notifying": Variant("b", True)})  # fmt: skip
        reply = Message.new_method_return(msg, "hq", [0, dev.mtu], [theirs.fileno()])

        async def send_fd():
            try:
                await self.tree.send(reply)
            finally:
                theirs.close()

        self.tree.tasks.spawn(send_fd())
        return True

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
        self.tree.changed(path, CHAR, {"Value": Variant("ay", value)})
        return Message.new_method_return(msg, "ay", [value])

    def desc_call(self, msg: Message, dev: VDevice):
        if msg.member == "ReadValue":
            v = self.tree.objects[msg.path][DESC]["Value"].value
            return Message.new_method_return(msg, "ay", [v])
        if msg.member == "WriteValue":
            return Message.new_error(msg, ERR_NOT_PERMITTED, "Write not permitted")
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, msg.member)
