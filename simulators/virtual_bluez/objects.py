"""The D-Bus object tree a virtual BlueZ exports as `org.bluez`: the objects and their properties,
the signals that keep a client's copy current (InterfacesAdded/Removed, PropertiesChanged), and
the standard interfaces every object answers (ObjectManager, Properties, Introspectable)."""

from __future__ import annotations

import asyncio
import logging

from dbus_fast import Message, Variant
from dbus_fast.aio import MessageBus

from simulators.virtual_bluez.defs import (
    DEVICE,
    ERR_FAILED,
    ERR_INVALID_ARGS,
    ERR_NOT_PERMITTED,
    ERR_UNKNOWN_METHOD,
    INTROSPECT,
    OM,
    PROPS,
)
from simulators.virtual_bluez.tasks import Tasks

log = logging.getLogger(__name__)

Interfaces = dict[str, dict[str, Variant]]  # interface -> property -> value


class ObjectTree:
    """The bus connection and everything exported on it, by object path."""

    def __init__(self, tasks: Tasks) -> None:
        self.tasks = tasks
        self.bus: MessageBus | None = None
        self.objects: dict[str, Interfaces] = {}

    async def connect(self, bus_address: str) -> MessageBus:
        self.bus = await MessageBus(bus_address=bus_address, negotiate_unix_fd=True).connect()
        return self.bus

    def disconnect(self) -> None:
        if self.bus:
            self.bus.disconnect()

    def send(self, msg: Message):
        assert self.bus is not None
        return self.bus.send(msg)

    # ---- the objects and their signals ----

    def changed(self, path: str, iface: str, changed: dict[str, Variant], invalidated=()) -> None:
        obj = self.objects.get(path, {}).get(iface)
        if obj is None:
            return
        obj.update(changed)
        for name in invalidated:
            obj.pop(name, None)
        self.send(Message.new_signal(path, PROPS, "PropertiesChanged", "sa{sv}as",
                                     [iface, changed, list(invalidated)]))  # fmt: skip

    def add(self, path: str, ifaces: Interfaces) -> None:
        full = {INTROSPECT: {}, **ifaces, PROPS: {}}
        self.objects[path] = full
        self.send(Message.new_signal("/", OM, "InterfacesAdded", "oa{sa{sv}}", [path, full]))

    def remove(self, path: str) -> None:
        ifaces = self.objects.pop(path, None)
        if ifaces is not None:
            self.send(Message.new_signal("/", OM, "InterfacesRemoved", "oas", [path, list(ifaces)]))

    # ---- calls ----

    def call_client(self, owner: str, path: str, iface: str, member: str, signature: str = "",
                    body: list | None = None) -> None:  # fmt: skip
        """A method call to a client's object; its answer is not waited for."""
        self.send(Message(destination=owner, path=path, interface=iface, member=member,
                          signature=signature, body=body or []))  # fmt: skip

    def reply_later(self, msg: Message, coro) -> bool:
        """Answer `msg` with what `coro` returns, when it returns (True: the call is taken)."""

        async def run():
            try:
                reply = await coro
            except asyncio.CancelledError:
                reply = Message.new_error(msg, ERR_FAILED, "Operation canceled")
            except Exception as exc:  # any failure is the caller's D-Bus error, not ours
                log.exception("%s.%s failed", msg.interface, msg.member)
                reply = Message.new_error(msg, ERR_FAILED, str(exc))
            if self.bus is not None and self.bus.connected:
                self.send(reply)

        self.tasks.spawn(run())
        return True

    # ---- the standard interfaces ----

    def managed_objects(self, msg: Message) -> Message:
        """ObjectManager.GetManagedObjects: the objects under the path called."""
        prefix = (msg.path or "").rstrip("/") + "/"
        objs = {p: o for p, o in self.objects.items() if p.startswith(prefix)}
        return Message.new_method_return(msg, "a{oa{sa{sv}}}", [objs])

    def introspect(self, msg: Message) -> Message:
        path = msg.path
        prefix = path.rstrip("/") + "/"
        kids = sorted(
            {p[len(prefix) :].split("/")[0] for p in self.objects if p.startswith(prefix)}
        )
        nodes = "".join(f'<node name="{k}"/>' for k in kids)
        ifaces = "".join(f'<interface name="{i}"/>' for i in self.objects.get(path, {}))
        return Message.new_method_return(msg, "s", [f"<node>{ifaces}{nodes}</node>"])

    def properties(self, msg: Message) -> Message:
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
                self.changed(msg.path, iface, {name: value})
                return Message.new_method_return(msg)
            return Message.new_error(msg, ERR_NOT_PERMITTED, f"{name} is read-only")
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, msg.member)
