# The device's BLE radio: a GATT server on MicroPython's `bluetooth` module (ESP32, NimBLE),
# with the surface link.py expects: connected, mtu, notify(frame) -> bool, on_write, on_connect
# and run(). Under the Unix port the simulation HAL installs bluetooth_sim as `bluetooth`.
#
# Threads (aioble's rule, docs/firmware.md): on an ESP32 the `bluetooth` IRQ handler runs on
# the NimBLE host's task, concurrently with the asyncio loop. _irq therefore only copies the
# event into a ring allocated here and sets a ThreadSafeFlag; run() takes the events off the
# ring in the loop and does the work there: connection state, advertising, the MTU exchange,
# and the control writes handed to on_write (the link, the app, pairing).
#
# GATT table (UUIDs mirrored from gateway/transports/uuids.py; a test checks they agree):
#   perimon service: data characteristic (notify: one v1 frame per notification) and control
#   characteristic (write, write without response: one v1 frame per write);
#   Device Information (0x180A): manufacturer, model, serial number (the device id), firmware;
#   Battery (0x180F): battery level (read, notify).
# Advertising: flags, the perimon service UUID and the device id as the local name; the scan
# response carries manufacturer data [format, device type] and the preferred connection
# interval (AD type 0x12), since MicroPython's peripheral API cannot request a parameter update.
import struct

import asyncio
import bluetooth
from micropython import const

PERIMON_SERVICE = "7a1e0001-5c3b-4f2e-9d8a-6e1f0b2c3d4e"
DATA_CHAR = "7a1e0002-5c3b-4f2e-9d8a-6e1f0b2c3d4e"
CONTROL_CHAR = "7a1e0003-5c3b-4f2e-9d8a-6e1f0b2c3d4e"
DEVICE_INFORMATION_SERVICE = const(0x180A)
MANUFACTURER_NAME_CHAR = const(0x2A29)
MODEL_NUMBER_CHAR = const(0x2A24)
SERIAL_NUMBER_CHAR = const(0x2A25)
FIRMWARE_REVISION_CHAR = const(0x2A26)
BATTERY_SERVICE = const(0x180F)
BATTERY_LEVEL_CHAR = const(0x2A19)
COMPANY_ID = const(0xFFFF)
ADV_FORMAT = const(1)
# manufacturer data byte 3, bit 0: the pairing window is open
ADV_PAIRING = const(0x01)
MODEL_NUMBERS = {1: "perimon-fetal-heart", 2: "perimon-jaundice"}

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_INDICATE_DONE = const(20)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_CONNECTION_UPDATE = const(27)

_ADV_FLAGS = const(0x01)
_ADV_UUID128_COMPLETE = const(0x07)
_ADV_NAME_SHORT = const(0x08)
_ADV_NAME_COMPLETE = const(0x09)
_ADV_CONN_INTERVAL = const(0x12)
_ADV_MANUFACTURER = const(0xFF)
_ADV_MAX = const(31)

_MAX_MTU = const(247)  # one LL data PDU with data length extension: 251 - 4 bytes L2CAP
_ENOMEM = const(12)  # gatts_notify: the controller's buffers are full
_ADV_INTERVAL_US = const(100_000)
_WRITE_BUF = const(256)  # largest control frame the write characteristic accepts
# The IRQ's ring: one slot per event, [u8 event, pad, u16 conn, u16 arg, pad, value...]; arg is
# the MTU, the connection interval or the length of the value: a written value or the address
# of a central that connected.
_RING_SLOTS = const(8)  # a power of two
_SLOT = const(8 + _WRITE_BUF)
_RING_FOR_LINK = const(2)  # slots a control write leaves free for connection events


def uuid_le(uuid):
    """A 128-bit UUID string as the 16 little-endian bytes advertising data carries."""
    h = uuid.replace("-", "")
    return bytes(int(h[i : i + 2], 16) for i in range(30, -2, -2))


def _ad(kind, payload):
    return struct.pack("BB", len(payload) + 1, kind) + payload


def adv_payloads(name, device_type, interval_min_ms, interval_max_ms, pairing=False):
    """(advertising data, scan response) for a perimon device; each fits 31 bytes. While the
    pairing window is open the manufacturer data carries a third byte, ADV_PAIRING."""
    name = name.encode() if isinstance(name, str) else name
    adv = _ad(_ADV_FLAGS, b"\x06") + _ad(_ADV_UUID128_COMPLETE, uuid_le(PERIMON_SERVICE))
    room = _ADV_MAX - len(adv) - 2
    short = len(name) > room
    adv += _ad(_ADV_NAME_SHORT if short else _ADV_NAME_COMPLETE, name[:room])
    mfr = struct.pack("<HBB", COMPANY_ID, ADV_FORMAT, device_type)
    resp = _ad(_ADV_MANUFACTURER, mfr + (bytes((ADV_PAIRING,)) if pairing else b""))
    resp += _ad(
        _ADV_CONN_INTERVAL,
        struct.pack("<HH", interval_min_ms * 4 // 5, interval_max_ms * 4 // 5),  # 1.25 ms units
    )
    if short and len(resp) + 2 + len(name) <= _ADV_MAX:
        resp += _ad(_ADV_NAME_COMPLETE, name)
    return adv, resp


class BleRadio:
    def __init__(self, adv, firmware="1.0.0", interval_ms=(15, 30)):
        self.adv = adv  # dict: id, type, name
        self.connected = False  # subscribed and MTU exchanged: notifications may go (_ready)
        # Frames are sized for the MTU the device asks for until a link settles on another;
        # never for the 23 bytes a link starts with (docs/ble.md, MTU).
        self.mtu = _MAX_MTU
        self.on_write = None
        self.on_connect = None
        self.connects = 0
        # centrals connected, counted at the connect itself: a SESSION written before the MTU
        # exchange ends (before on_connect) belongs to the new connection (linkauth.session)
        self.centrals = 0
        self.busy = 0  # notifications refused by a full controller buffer (frames kept)
        self.oversize = 0  # frames built for a larger MTU than this link's (kept for resend)
        self.irq_dropped = 0  # control writes the ring had no room for (the gateway retries)
        self.interval_ms = 0.0
        self._conn = None  # changed by the radio task only, so notify never sees it vanish
        self.peer = bytes(6)  # the connected central's address: the SESSION reply names it
        self._subscribed = False
        self._mtu_known = False
        self._advertising = False
        # The IRQ's side: it writes slots and _head, the task reads them and moves _tail.
        self._ring = bytearray(_RING_SLOTS * _SLOT)
        self._head = 0
        self._tail = 0
        self._flag = asyncio.ThreadSafeFlag()
        ble = bluetooth.BLE()
        self.ble = ble
        ble.active(True)
        ble.config(gap_name=adv["id"], mtu=_MAX_MTU)
        perimon = (
            bluetooth.UUID(PERIMON_SERVICE),
            (
                (bluetooth.UUID(DATA_CHAR), bluetooth.FLAG_NOTIFY),
                (
                    bluetooth.UUID(CONTROL_CHAR),
                    bluetooth.FLAG_WRITE | bluetooth.FLAG_WRITE_NO_RESPONSE,
                ),
            ),
        )
        dis = (
            bluetooth.UUID(DEVICE_INFORMATION_SERVICE),
            (
                (bluetooth.UUID(MANUFACTURER_NAME_CHAR), bluetooth.FLAG_READ),
                (bluetooth.UUID(MODEL_NUMBER_CHAR), bluetooth.FLAG_READ),
                (bluetooth.UUID(SERIAL_NUMBER_CHAR), bluetooth.FLAG_READ),
                (bluetooth.UUID(FIRMWARE_REVISION_CHAR), bluetooth.FLAG_READ),
            ),
        )
        bas = (
            bluetooth.UUID(BATTERY_SERVICE),
            ((bluetooth.UUID(BATTERY_LEVEL_CHAR), bluetooth.FLAG_READ | bluetooth.FLAG_NOTIFY),),
        )
        ((self.h_data, self.h_ctrl), (h_man, h_model, h_serial, h_fw), (self.h_batt,)) = (
            ble.gatts_register_services((perimon, dis, bas))
        )
        ble.gatts_set_buffer(self.h_ctrl, _WRITE_BUF)
        ble.gatts_write(h_man, b"perimon")
        ble.gatts_write(h_model, MODEL_NUMBERS.get(adv["type"], "perimon").encode())
        ble.gatts_write(h_serial, adv["id"].encode())
        ble.gatts_write(h_fw, firmware.encode())
        ble.gatts_write(self.h_batt, b"\x64")
        self._interval = interval_ms
        self._adv_data, self._resp_data = adv_payloads(
            adv["id"], adv["type"], interval_ms[0], interval_ms[1]
        )
        ble.irq(self._irq)  # last: the handler may run at once, on the host's thread

    def readvertise(self):
        """Advertise self.adv anew (the pairing flag came or went); a connected central is
        dropped so that it sees the new advertisement."""
        self._adv_data, self._resp_data = adv_payloads(
            self.adv["id"], self.adv["type"], self._interval[0], self._interval[1],
            bool(self.adv.get("pairing")),
        )  # fmt: skip
        if self._conn is not None:
            self.ble.gap_disconnect(self._conn)  # advertising resumes at its IRQ
        else:
            self._advertise()

    def _advertise(self):
        self.ble.gap_advertise(_ADV_INTERVAL_US, self._adv_data, resp_data=self._resp_data)
        self._advertising = True

    def _irq(self, event, data):
        # The NimBLE host's thread: copy, wake the task, nothing else. A control write is
        # dropped when the ring is nearly full (the gateway's request times out and is sent
        # again); the last slots are kept for connection events, which nothing would repeat.
        if event == _IRQ_GATTS_WRITE and data[1] != self.h_ctrl:
            return
        if event not in (_IRQ_CENTRAL_CONNECT, _IRQ_CENTRAL_DISCONNECT, _IRQ_GATTS_WRITE,
                         _IRQ_MTU_EXCHANGED, _IRQ_CONNECTION_UPDATE):  # fmt: skip
            return
        h = self._head
        used = (h - self._tail) & 0xFFFF
        room = _RING_SLOTS - (_RING_FOR_LINK if event == _IRQ_GATTS_WRITE else 0)
        if used >= room:
            self.irq_dropped += 1
            self._flag.set()
            return
        r = self._ring
        off = (h & (_RING_SLOTS - 1)) * _SLOT
        arg = 0
        if event == _IRQ_GATTS_WRITE:
            value = self.ble.gatts_read(self.h_ctrl)  # at most _WRITE_BUF (gatts_set_buffer)
            arg = len(value)
            if arg > _WRITE_BUF:  # a slice assignment of another length would resize the ring
                self.irq_dropped += 1
                return
            r[off + 8 : off + 8 + arg] = value
        elif event == _IRQ_CENTRAL_CONNECT:
            arg = 6
            r[off + 8 : off + 14] = data[2]  # the central's address
        elif event == _IRQ_MTU_EXCHANGED or event == _IRQ_CONNECTION_UPDATE:
            arg = data[1]
        r[off] = event
        struct.pack_into("<HH", r, off + 2, data[0], arg)
        self._head = (h + 1) & 0xFFFF  # after the slot is written: the task may read it now
        self._flag.set()

    def _drain(self):
        """Handle what the IRQ recorded, oldest first."""
        r = self._ring
        while self._tail != self._head:
            off = (self._tail & (_RING_SLOTS - 1)) * _SLOT
            event = r[off]
            conn, arg = struct.unpack_from("<HH", r, off + 2)
            value = None
            if event == _IRQ_GATTS_WRITE or event == _IRQ_CENTRAL_CONNECT:
                value = bytes(r[off + 8 : off + 8 + arg])
            self._tail = (self._tail + 1) & 0xFFFF  # the slot is free before the work is done
            self._event(event, conn, arg, value)

    def _event(self, event, conn, arg, value):
        if event == _IRQ_CENTRAL_CONNECT:
            self._conn = conn
            self.peer = value
            self.centrals += 1
            self._advertising = False
            self._subscribed = self._mtu_known = self.connected = False
            try:
                self.ble.gattc_exchange_mtu(conn)  # ask for _MAX_MTU ourselves...
            except OSError:
                pass  # ...unless the central's exchange came first (EALREADY) or it has gone
        elif conn != self._conn:
            return  # from a link that has ended
        elif event == _IRQ_CENTRAL_DISCONNECT:
            self._conn = None
            self.connected = False
            self._advertise()  # at once, so the gateway can reconnect
        elif event == _IRQ_MTU_EXCHANGED:
            self.mtu = min(arg, _MAX_MTU)
            self._mtu_known = True
            self._ready()
        elif event == _IRQ_CONNECTION_UPDATE:
            self.interval_ms = arg * 1.25
        elif event == _IRQ_GATTS_WRITE:
            # The gateway subscribes to the data characteristic before its first control
            # write (a time sync), so from here on notifications reach a listener.
            self._subscribed = True
            self._ready()
            if self.on_write:
                self.on_write(value)

    def _ready(self):
        if not self.connected and self._subscribed and self._mtu_known:
            self.connected = True
            self.connects += 1
            if self.on_connect:
                self.on_connect()

    def notify(self, frame):
        """Send one frame; False (the caller keeps it) when the link is down or backed up."""
        conn = self._conn
        if not self.connected or conn is None:
            return False
        if len(frame) > self.mtu - 3:
            self.oversize += 1  # built for a larger MTU before a reconnect: kept for resend
            return True
        try:
            self.ble.gatts_notify(conn, self.h_data, frame)
        except OSError as e:
            if e.errno == _ENOMEM:
                self.busy += 1  # the controller's buffers are full; retry later
            return False  # else the link has just gone: its IRQ is on the way
        return True

    def set_battery(self, pct):
        self.ble.gatts_write(self.h_batt, bytes((max(0, min(100, pct)),)))

    async def _keep_advertising(self):
        while True:
            await asyncio.sleep_ms(1000)
            if self._conn is None and not self._advertising:
                self._advertise()  # never sit silent and unconnectable

    async def run(self):
        """The radio task: the IRQ's events, handled in the loop."""
        self._advertise()
        keeper = asyncio.create_task(self._keep_advertising())
        try:
            while True:
                await self._flag.wait()
                self._drain()
        finally:
            keeper.cancel()
