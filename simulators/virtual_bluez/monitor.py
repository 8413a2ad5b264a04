"""Passive scanning: the adapter's AdvertisementMonitorManager1 and the clients' monitors.

As BlueZ, RegisterMonitor(root) makes the client's AdvertisementMonitor1 objects at or under
root its monitors, found through the client's object manager now and through InterfacesAdded
later (bleak exports them after registering). Only the "or_patterns" type is supported; a
monitor is activated, then called DeviceFound once per matching device until it connects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dbus_fast import Message, MessageType, Variant

from simulators.virtual_bluez.advertising import ad_structures
from simulators.virtual_bluez.defs import (
    ERR_ALREADY_EXISTS,
    ERR_DOES_NOT_EXIST,
    ERR_UNKNOWN_METHOD,
    MONITOR,
    OM,
)
from simulators.virtual_bluez.objects import ObjectTree


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


class AdvertisementMonitors:
    """The registered roots and the active monitors under them. `on_added` runs when a monitor
    becomes active, so the devices already advertising are matched against it."""

    def __init__(self, tree: ObjectTree, on_added: Callable[[], None]) -> None:
        self.tree = tree
        self.on_added = on_added
        self.apps: set[tuple[str, str]] = set()  # (client, root path) registered
        self.monitors: dict[tuple[str, str], Monitor] = {}  # (client, object path)
        self.registered = 0  # RegisterMonitor calls accepted

    def matching(self, adv: bytes) -> list[Monitor]:
        return [m for m in self.monitors.values() if m.matches(adv)]

    def forget(self, device_path: str) -> None:
        """The device connected: found anew when it advertises again."""
        for m in self.monitors.values():
            m.found.discard(device_path)

    def manager_call(self, msg: Message):
        """AdvertisementMonitorManager1.RegisterMonitor(root) / UnregisterMonitor(root)."""
        key = (msg.sender, msg.body[0] if msg.body else "")
        if msg.member == "RegisterMonitor":
            if key in self.apps:
                return Message.new_error(msg, ERR_ALREADY_EXISTS, "Already Exists")
            self.apps.add(key)
            self.registered += 1
            self.tree.tasks.spawn(self._find_monitors(*key))
            return Message.new_method_return(msg)
        if msg.member == "UnregisterMonitor":
            if key not in self.apps:
                return Message.new_error(msg, ERR_DOES_NOT_EXIST, "Does Not Exist")
            self.apps.discard(key)
            for mkey in [k for k in self.monitors if self._app_of(*k) is None]:
                del self.monitors[mkey]
            return Message.new_method_return(msg)
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, msg.member)

    def on_signal(self, msg: Message) -> None:
        """A client's InterfacesAdded/InterfacesRemoved: monitors exported or withdrawn."""
        if msg.interface == OM and msg.member == "InterfacesAdded":
            path, ifaces = msg.body
            if MONITOR in ifaces and self._app_of(msg.sender, path) is not None:
                self._add_monitor(msg.sender, path, ifaces[MONITOR])
        elif msg.interface == OM and msg.member == "InterfacesRemoved":
            path, names = msg.body
            if MONITOR in names:
                self.monitors.pop((msg.sender, path), None)

    def client_left(self, name: str) -> None:
        self.apps = {a for a in self.apps if a[0] != name}
        self.monitors = {k: m for k, m in self.monitors.items() if k[0] != name}

    def _app_of(self, owner: str, path: str) -> tuple[str, str] | None:
        for app in self.apps:
            if app[0] == owner and (path == app[1] or path.startswith(app[1].rstrip("/") + "/")):
                return app
        return None

    async def _find_monitors(self, owner: str, root: str) -> None:
        assert self.tree.bus is not None
        reply = await self.tree.bus.call(Message(destination=owner, path=root, interface=OM,
                                                 member="GetManagedObjects"))  # fmt: skip
        if reply.message_type == MessageType.METHOD_RETURN:
            for path, ifaces in reply.body[0].items():
                if MONITOR in ifaces:
                    self._add_monitor(owner, path, ifaces[MONITOR])

    def _add_monitor(self, owner: str, path: str, props: dict[str, Variant]) -> None:
        kind = props.get("Type")
        patterns = props.get("Patterns")
        if kind is None or kind.value != "or_patterns" or not patterns or not patterns.value:
            self.tree.call_client(owner, path, MONITOR, "Release")  # BlueZ refuses it
            return
        pats = [(int(a), int(b), bytes(c)) for a, b, c in patterns.value]
        self.monitors[(owner, path)] = Monitor(owner, path, pats)
        self.tree.call_client(owner, path, MONITOR, "Activate")
        self.on_added()
