"""Scanning: discovery sessions on the adapter (SetDiscoveryFilter, StartDiscovery, StopDiscovery)
and passive advertisement monitors, and what an advertising device looks like to the host: its
Device1 object, created at its first report and updated (RSSI, advertised fields) at each one."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from dbus_fast import Message, Variant

from simulators.virtual_bluez.defs import (
    ADAPTER,
    ADAPTER_PATH,
    DEVICE,
    ERR_FAILED,
    ERR_UNKNOWN_METHOD,
    MONITOR,
)
from simulators.virtual_bluez.device import VDevice
from simulators.virtual_bluez.monitor import AdvertisementMonitors
from simulators.virtual_bluez.objects import ObjectTree

_ADV_REPORT_S = 0.25  # how often an advertising device's report (RSSI) reaches the host


class Scanner:
    def __init__(self, tree: ObjectTree, devices: dict[str, VDevice]) -> None:
        self.tree = tree
        self.devices = devices  # by address, the controller's
        self.discovery: set[str] = set()  # D-Bus senders with a discovery session
        self.filters: dict[str, dict[str, Any]] = {}
        self.monitors = AdvertisementMonitors(tree, on_added=self.report_all)
        self.discoveries = 0  # StartDiscovery calls
        self.found = 0  # DeviceFound calls

    @property
    def active(self) -> bool:
        """Someone is listening: a discovery session or an active monitor."""
        return bool(self.discovery or self.monitors.monitors)

    async def run(self) -> None:
        """While discovery runs, every advertising device is reported (its RSSI wanders); while
        an advertisement monitor is active, every device whose advertising data it matches."""
        while True:
            await asyncio.sleep(_ADV_REPORT_S)
            if self.active:
                self.report_all()

    def report_all(self) -> None:
        for dev in list(self.devices.values()):
            if dev.adv is not None and not dev.connected and dev.address:
                self.report(dev)

    def advertised(self, dev: VDevice) -> None:
        """The device started advertising (or changed what it advertises)."""
        if self.active and dev.address and not dev.connected:
            self.report(dev)

    def connected(self, dev: VDevice) -> None:
        self.monitors.forget(dev.path)

    def report(self, dev: VDevice) -> None:
        fields = dev.adv_fields()
        if not self.discovery or not self._matches_filter(fields["UUIDs"].value):
            monitors = self.monitors.matching(dev.adv or b"")
            if not monitors:
                return
            fields = dev.adv_fields(scan_response=False)  # passive: advertising data only
            self._report_fields(dev, fields)
            for m in monitors:
                if dev.path not in m.found:
                    m.found.add(dev.path)
                    self.found += 1
                    self.tree.call_client(m.owner, m.path, MONITOR, "DeviceFound", "o",
                                          [dev.path])  # fmt: skip
            return
        self._report_fields(dev, fields)

    def _report_fields(self, dev: VDevice, fields: dict[str, Variant]) -> None:
        dev.rssi = max(-95, min(-35, dev.rssi + random.randint(-3, 3)))
        fields["RSSI"] = Variant("n", dev.rssi)
        path = dev.path
        if path not in self.tree.objects:
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
            self.tree.add(path, {DEVICE: props})
            return
        current = self.tree.objects[path][DEVICE]
        changed = {k: v for k, v in fields.items() if k not in current or current[k] != v}
        if "Name" in changed:
            changed["Alias"] = changed["Name"]
        if changed:
            self.tree.changed(path, DEVICE, changed)

    def _matches_filter(self, uuids: list[str]) -> bool:
        wanted: set[str] = set()
        for f in self.filters.values():
            if not f.get("UUIDs"):
                return True
            wanted |= {u.lower() for u in f["UUIDs"]}
        return not self.filters or bool(wanted & {u.lower() for u in uuids})

    def _set_discovering(self) -> None:
        on = bool(self.discovery)
        if self.tree.objects[ADAPTER_PATH][ADAPTER]["Discovering"].value != on:
            self.tree.changed(ADAPTER_PATH, ADAPTER, {"Discovering": Variant("b", on)})

    def adapter_call(self, msg: Message) -> Message:
        """Adapter1's discovery methods."""
        m = msg.member
        if m == "SetDiscoveryFilter":
            f = {k: v.value for k, v in msg.body[0].items()}
            if f:
                self.filters[msg.sender] = f
            else:
                self.filters.pop(msg.sender, None)
            return Message.new_method_return(msg)
        if m == "StartDiscovery":
            self.discoveries += 1
            self.discovery.add(msg.sender)
            self._set_discovering()
            self.report_all()
            return Message.new_method_return(msg)
        if m == "StopDiscovery":
            if msg.sender not in self.discovery:
                return Message.new_error(msg, ERR_FAILED, "No discovery started")
            self.discovery.discard(msg.sender)
            self._set_discovering()
            return Message.new_method_return(msg)
        if m == "GetDiscoveryFilters":
            return Message.new_method_return(
                msg, "as", [["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData"]]
            )
        return Message.new_error(msg, ERR_UNKNOWN_METHOD, m)

    def client_left(self, name: str) -> None:
        """A client left the bus: its scans and monitors go with it."""
        self.discovery.discard(name)
        self.filters.pop(name, None)
        self.monitors.client_left(name)
        if self.tree.bus is not None:
            self._set_discovering()
