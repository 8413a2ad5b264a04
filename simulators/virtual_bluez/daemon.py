"""The virtual bluetoothd: the adapter /org/bluez/hci0 on the bus as `org.bluez`, its parts
(object tree, scanner, controller, GATT objects) and the routing of each D-Bus call to them."""

from __future__ import annotations

import logging

from dbus_fast import Message, MessageType, Variant

from simulators.virtual_bluez.control import control_call
from simulators.virtual_bluez.controller import Controller
from simulators.virtual_bluez.defs import (
    ADAPTER,
    ADAPTER_ADDRESS,
    ADAPTER_PATH,
    BLUEZ,
    CHAR,
    CONTROL_IFACE,
    CONTROL_PATH,
    DBUS,
    DESC,
    DEVICE,
    ERR_DOES_NOT_EXIST,
    ERR_FAILED,
    ERR_UNKNOWN_METHOD,
    ERR_UNKNOWN_OBJECT,
    HCI_LOCAL_HOST_TERMINATED,
    INTROSPECT,
    MONITOR_MANAGER,
    OM,
    PROPS,
    Faults,
)
from simulators.virtual_bluez.device import VDevice
from simulators.virtual_bluez.gatt import GattObjects
from simulators.virtual_bluez.objects import Interfaces, ObjectTree
from simulators.virtual_bluez.scanner import Scanner
from simulators.virtual_bluez.tasks import Tasks

log = logging.getLogger(__name__)


def adapter_object() -> Interfaces:
    """hci0 as a Pi's built-in radio shows it: powered, central and peripheral roles, passive
    scanning with or_patterns monitors."""
    return {
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


class VirtualBluez:
    def __init__(self, bus_address: str, listen: str = "127.0.0.1:0", faults: Faults | None = None):
        self.bus_address = bus_address
        host, _, port = listen.rpartition(":")
        self.host, self.port = host, int(port)
        self.faults = faults or Faults()
        self.tasks = Tasks()
        self.tree = ObjectTree(self.tasks)
        self.devices: dict[str, VDevice] = {}  # by address
        self.scanner = Scanner(self.tree, self.devices)
        self.gatt = GattObjects(self.tree, self.faults)
        self.controller = Controller(self.tree, self.gatt, self.scanner, self.faults, self.devices)

    # ---- lifecycle ----

    async def start(self) -> None:
        bus = await self.tree.connect(self.bus_address)
        bus.add_message_handler(self._on_message)
        self.tree.objects[ADAPTER_PATH] = adapter_object()
        self.port = await self.controller.listen(self.host, self.port)
        for rule in (f"type='signal',interface='{OM}'",  # monitors exported by clients
                     f"type='signal',sender='{DBUS}',member='NameOwnerChanged'"):  # fmt: skip
            await bus.call(Message(destination=DBUS, path="/org/freedesktop/DBus",
                                   interface=DBUS, member="AddMatch", signature="s",
                                   body=[rule]))  # fmt: skip
        await bus.request_name(BLUEZ)
        self.tasks.spawn(self.scanner.run())
        log.info("virtual BlueZ on %s, devices connect to %s:%d", self.bus_address, self.host,
                 self.port)  # fmt: skip

    async def stop(self) -> None:
        self.controller.close()
        self.tasks.cancel()
        self.controller.disconnect_all()
        self.tree.disconnect()

    # ---- the control channel's verbs ----

    def drop(self, address: str) -> bool:
        """Link loss (supervision timeout) on one device."""
        return self.controller.drop(address)

    def set_faults(self, **kw) -> None:
        self.faults.update(**kw)

    def status(self) -> dict:
        return {
            "devices": {
                d.address: {
                    "name": (d.adv_fields().get("Name") or Variant("s", "")).value
                    if d.adv
                    else self.tree.objects.get(d.path, {})
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
            "discovering": bool(self.scanner.discovery),
            "monitors": len(self.scanner.monitors.monitors),
            "start_discovery": self.scanner.discoveries,
            "register_monitor": self.scanner.monitors.registered,
            "device_found": self.scanner.found,
            "faults": {**self.faults.__dict__},
        }

    # ---- D-Bus messages ----

    def _on_message(self, msg: Message):
        if msg.message_type == MessageType.SIGNAL:
            self._on_signal(msg)
            return False
        if msg.message_type != MessageType.METHOD_CALL:
            return False
        path, iface, member = msg.path or "", msg.interface, msg.member
        if iface == OM and member == "GetManagedObjects":
            return self.tree.managed_objects(msg)
        if path == CONTROL_PATH and iface in (CONTROL_IFACE, None):
            return control_call(self, msg)
        if path not in self.tree.objects:
            if path.startswith("/org/bluez"):
                return Message.new_error(msg, ERR_UNKNOWN_OBJECT, f"no object at {path}")
            return False
        if iface == PROPS:
            return self.tree.properties(msg)
        if iface == INTROSPECT:
            return self.tree.introspect(msg)
        if iface == ADAPTER and path == ADAPTER_PATH:
            return self._adapter_call(msg)
        if iface == MONITOR_MANAGER and path == ADAPTER_PATH:
            return self.scanner.monitors.manager_call(msg)
        if iface in (DEVICE, CHAR, DESC):
            dev = self.controller.device_of(path)
            if dev is None:
                return Message.new_error(msg, ERR_FAILED, "Device not available")
            if iface == DEVICE:
                return self.controller.device_call(msg, dev)
            if iface == CHAR:
                return self.gatt.char_call(msg, dev)
            return self.gatt.desc_call(msg, dev)
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, f"{iface}.{member} not supported")

    def _on_signal(self, msg: Message) -> None:
        if msg.interface == OM:
            self.scanner.monitors.on_signal(msg)
        elif msg.member == "NameOwnerChanged" and msg.sender == DBUS:
            name, _old, new = msg.body
            if not new:  # a client left the bus: its scans and monitors go with it
                self.scanner.client_left(name)

    def _adapter_call(self, msg: Message):
        if msg.member == "RemoveDevice":
            dev = self.controller.device_of(msg.body[0])
            if dev is None and msg.body[0] not in self.tree.objects:
                return Message.new_error(msg, ERR_DOES_NOT_EXIST, "Does Not Exist")
            if dev is not None:
                self.controller.teardown(dev, HCI_LOCAL_HOST_TERMINATED)
            self.tree.remove(msg.body[0])
            return Message.new_method_return(msg)
        return self.scanner.adapter_call(msg)
