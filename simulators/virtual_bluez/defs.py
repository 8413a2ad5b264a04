"""Names and numbers: D-Bus and BlueZ interfaces and errors, the adapter, HCI reasons, the device
link's message numbers, and the fault knobs."""

from __future__ import annotations

from dataclasses import dataclass, field

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

# Device link messages: the same numbers as firmware/sim/bluetooth_sim.py (checked by a test).
M_HELLO = 1
M_ADV = 2
M_NOTIFY = 3
M_READ_RSP = 4
M_DISC = 5
M_MTU_REQ = 6  # the device starts an ATT MTU exchange (gattc_exchange_mtu)
M_CONNECT = 16
M_DISCONNECT = 17
M_MTU = 18
M_MTU_RSP = 19  # the answer to the device's MTU_REQ
M_WRITE = 20
M_READ = 21
M_CONN_UPDATE = 22
M_COMPLETED = 23

CENTRAL_MTU = 517  # what BlueZ offers in its ATT Exchange MTU request
HCI_SUPERVISION_TIMEOUT = 0x08
HCI_REMOTE_USER_TERMINATED = 0x13
HCI_LOCAL_HOST_TERMINATED = 0x16


@dataclass
class Faults:
    latency_s: float = 0.0  # added to every packet in both directions and to connecting
    throughput_bps: float = 0.0  # cap per link on notification bytes (0: only the credits)
    max_links: int = 7  # LE links the adapter holds (a Pi's built-in radio: about 7)
    refuse: dict[str, int] = field(default_factory=dict)  # address -> attempts to refuse
    # BlueZ starts an ATT MTU exchange on every connection; False plays a central that does
    # not, so only the device's own request (gattc_exchange_mtu) raises the MTU above 23
    central_mtu_exchange: bool = True

    def update(self, **kw) -> None:
        """Knobs by name, as SetFaults' JSON has them; `refuse` sets the addresses it names."""
        for k, v in kw.items():
            if k == "refuse":
                self.refuse.update({str(a): int(n) for a, n in v.items()})
            elif k in ("latency_s", "throughput_bps"):
                setattr(self, k, float(v))
            elif k == "max_links":
                self.max_links = int(v)
            elif k == "central_mtu_exchange":
                self.central_mtu_exchange = bool(v)
            else:
                raise KeyError(f"unknown fault {k!r}")
