"""Virtual BlueZ: simulated BLE devices published on a private D-Bus bus as `org.bluez`.

The gateway's unmodified bleak code (its BlueZ backend) talks to this process exactly as it
talks to bluetoothd on a Raspberry Pi: it finds the adapter `/org/bluez/hci0` through the
ObjectManager, scans with SetDiscoveryFilter/StartDiscovery, sees `org.bluez.Device1` objects
with BlueZ's advertisement properties and D-Bus types, connects, waits for ServicesResolved,
reads the `GattService1`/`GattCharacteristic1`/`GattDescriptor1` objects laid out as
`.../dev_XX_XX_XX_XX_XX_XX/serviceXXXX/charXXXX/descXXXX`, writes with WriteValue, and receives
notifications through AcquireNotify (a SOCK_SEQPACKET pair whose fd travels over D-Bus) or
StartNotify (PropertiesChanged on Value).

On the other side, each virtual device's firmware (MicroPython with firmware/sim/bluetooth_sim
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

Modules, as bleak splits its BlueZ backend:
  defs         D-Bus and BlueZ names, HCI reasons, the device link's message numbers, Faults
  advertising  AD structures and the Device1 properties they become
  objects      the exported object tree, its signals, Properties/Introspectable/ObjectManager
  device       one virtual peripheral as the adapter sees it
  scanner      discovery sessions and reports of advertising devices
  monitor      passive scanning: AdvertisementMonitorManager1 and the clients' monitors
  gatt         a connected device's GATT objects and their method calls
  controller   the link to each device's firmware: connect, deliver, disconnect
  control      org.perimon.VirtualBluez1: the fault knobs and status, both sides
  daemon       VirtualBluez: the adapter, its parts, and the routing of D-Bus calls
  process      PrivateBus (a dbus-daemon of our own) and VirtualBluezProcess
  tasks        the background tasks, cancelled at stop
"""

from simulators.virtual_bluez.advertising import (
    ad_structures,
    device_properties,
    parse_ad,
    preferred_interval,
    uuid16,
    uuid128,
)
from simulators.virtual_bluez.control import VirtualBluezControl
from simulators.virtual_bluez.daemon import VirtualBluez
from simulators.virtual_bluez.defs import (
    ADAPTER,
    ADAPTER_ADDRESS,
    ADAPTER_PATH,
    BLUEZ,
    CCCD_UUID,
    CENTRAL_MTU,
    CHAR,
    CONTROL_IFACE,
    CONTROL_PATH,
    DBUS,
    DESC,
    DEVICE,
    ERR_ALREADY_EXISTS,
    ERR_DOES_NOT_EXIST,
    ERR_FAILED,
    ERR_IN_PROGRESS,
    ERR_INVALID_ARGS,
    ERR_NOT_CONNECTED,
    ERR_NOT_PERMITTED,
    ERR_NOT_SUPPORTED,
    ERR_UNKNOWN_METHOD,
    ERR_UNKNOWN_OBJECT,
    HCI_LOCAL_HOST_TERMINATED,
    HCI_REMOTE_USER_TERMINATED,
    HCI_SUPERVISION_TIMEOUT,
    INTROSPECT,
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
    M_READ,
    M_READ_RSP,
    M_WRITE,
    MONITOR,
    MONITOR_MANAGER,
    OM,
    PROPS,
    SERVICE,
    Faults,
)
from simulators.virtual_bluez.device import Stats, VDevice
from simulators.virtual_bluez.monitor import Monitor
from simulators.virtual_bluez.process import PrivateBus, VirtualBluezProcess, dbus_daemon_binary

__all__ = [
    "ADAPTER",
    "ADAPTER_ADDRESS",
    "ADAPTER_PATH",
    "BLUEZ",
    "CCCD_UUID",
    "CENTRAL_MTU",
    "CHAR",
    "CONTROL_IFACE",
    "CONTROL_PATH",
    "DBUS",
    "DESC",
    "DEVICE",
    "ERR_ALREADY_EXISTS",
    "ERR_DOES_NOT_EXIST",
    "ERR_FAILED",
    "ERR_IN_PROGRESS",
    "ERR_INVALID_ARGS",
    "ERR_NOT_CONNECTED",
    "ERR_NOT_PERMITTED",
    "ERR_NOT_SUPPORTED",
    "ERR_UNKNOWN_METHOD",
    "ERR_UNKNOWN_OBJECT",
    "HCI_LOCAL_HOST_TERMINATED",
    "HCI_REMOTE_USER_TERMINATED",
    "HCI_SUPERVISION_TIMEOUT",
    "INTROSPECT",
    "M_ADV",
    "M_COMPLETED",
    "M_CONNECT",
    "M_CONN_UPDATE",
    "M_DISC",
    "M_DISCONNECT",
    "M_HELLO",
    "M_MTU",
    "M_MTU_REQ",
    "M_MTU_RSP",
    "M_NOTIFY",
    "M_READ",
    "M_READ_RSP",
    "M_WRITE",
    "MONITOR",
    "MONITOR_MANAGER",
    "OM",
    "PROPS",
    "SERVICE",
    "Faults",
    "Monitor",
    "PrivateBus",
    "Stats",
    "VDevice",
    "VirtualBluez",
    "VirtualBluezControl",
    "VirtualBluezProcess",
    "ad_structures",
    "dbus_daemon_binary",
    "device_properties",
    "parse_ad",
    "preferred_interval",
    "uuid16",
    "uuid128",
]
