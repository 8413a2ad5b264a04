"""The one interface every radio transport implements.

The gateway never asks which transport it has: it is handed `DeviceLink`s as devices connect,
sets their callbacks, writes control frames to them and is told when they go away. Each
transport (simulated radio, BLE through BlueZ, USB serial) is one module behind this.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any

# A device whose link the gateway closed (refused, or paired) is not reconnected for this long
# by a transport that would otherwise reconnect it at once (BLE), unless its advertisement
# changes or a pairing expects it (Transport.expect). A label pairing waits longer than this
# for the device's next link (gateway/device/pairing.py, LABEL_LINK_WAIT_S).
REFUSED_HOLD_S = 30.0
# Links held open for pairing at once (a device's pairing window, gateway/device/pairing.py): anyone
# in radio range can advertise one, so never more than this, and never every connection slot.
MAX_PAIRING_LINKS = 2


class DeviceLink(abc.ABC):
    """A live connection to one device: notifications in, control writes out."""

    device_id: str
    device_type: int
    name: str
    att_mtu: int
    # This gateway's radio address as the device sees it (6 bytes, as its SESSION reply names
    # the central), so a reply relayed through another central is refused; None when the link
    # has no address to check (a cable, the simulated socket radio).
    local_address: bytes | None = None

    def __init__(self) -> None:
        self.on_frame: Callable[[bytes], None] = lambda frame: None
        self.on_close: Callable[[str], None] = lambda reason: None
        self.pairing = False  # the device advertised an open pairing window (button pressed)

    @abc.abstractmethod
    async def write(self, frame: bytes) -> None:
        """Send one frame to the device's control characteristic."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Drop the link (the device will reconnect)."""


class Transport(abc.ABC):
    @abc.abstractmethod
    async def start(self, on_link: Callable[[DeviceLink], Awaitable[None]]) -> None:
        """Begin accepting devices; `on_link` is awaited for each new connection."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close every link and stop accepting."""

    def expect(self, device_id: str) -> None:
        """A pairing waits for this device's next link: connect it again without the pause
        after a link the gateway closed. Nothing to do where there is no such pause."""
        return None

    def allow(self, device_id: str) -> bool:
        """A device was just paired: let it connect from now on. Only a transport with an
        allowlist (BLE) has anything to do; True if the device was not allowed before."""
        return False

    def device_stats(self, device_id: str) -> dict[str, Any] | None:
        """Radio statistics for the device status (RSSI, reconnects...), where there are any."""
        return None
