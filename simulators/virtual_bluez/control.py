"""The control channel: `org.perimon.VirtualBluez1` at /org/perimon/VirtualBluez, on the same bus.

DropLink(address) -> b: link loss (supervision timeout) on one device.
SetFaults(JSON) : the fault knobs by name (defs.Faults).
Status() -> JSON: every device (name, connected, MTU, RSSI, counters), scanning, the faults.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from simulators.virtual_bluez.defs import (
    BLUEZ,
    CONTROL_IFACE,
    CONTROL_PATH,
    ERR_INVALID_ARGS,
    ERR_UNKNOWN_METHOD,
)

if TYPE_CHECKING:
    from simulators.virtual_bluez.daemon import VirtualBluez


def control_call(vb: VirtualBluez, msg: Message) -> Message:
    """The virtual BlueZ's side: one call on the control interface answered."""
    m = msg.member
    try:
        if m == "DropLink":
            return Message.new_method_return(msg, "b", [vb.drop(msg.body[0])])
        if m == "SetFaults":
            vb.set_faults(**json.loads(msg.body[0]))
            return Message.new_method_return(msg)
        if m == "Status":
            return Message.new_method_return(msg, "s", [json.dumps(vb.status())])
    except (TypeError, ValueError, KeyError) as exc:
        return Message.new_error(msg, ERR_INVALID_ARGS, str(exc))
    return Message.new_error(msg, ERR_UNKNOWN_METHOD, m)


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
