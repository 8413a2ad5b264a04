# The `bluetooth` module for the Unix port: the same BLE surface the firmware uses on an ESP32
# (BLE, UUID, FLAG_*, irq events), with the radio replaced by a socket to the virtual BlueZ
# process (simulators/virtual_bluez/), which plays the air and the gateway's controller.
# The simulation HAL installs it as `bluetooth` (sys.modules) only when a device is set to
# radio "ble"; on a board the real module is used and this file is never imported.
#
# Link messages, both ways: [u16 length of kind+body][u8 kind][body], little-endian.
# Device -> virtual BlueZ: HELLO (JSON: address, GATT table), ADV (advertising on/off and its
# payloads), NOTIFY (conn, handle, value), READ_RSP (token, value), DISC (conn).
# Virtual BlueZ -> device: CONNECT, DISCONNECT, MTU (the central's ATT MTU), WRITE, READ,
# CONN_UPDATE and COMPLETED (notifications that left the controller: TX buffer credits).
# docs/ble.md has the details.
import asyncio
import json
import struct

from micropython import const

FLAG_BROADCAST = const(0x0001)
FLAG_READ = const(0x0002)
FLAG_WRITE_NO_RESPONSE = const(0x0004)
FLAG_WRITE = const(0x0008)
FLAG_NOTIFY = const(0x0010)
FLAG_INDICATE = const(0x0020)

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_CONNECTION_UPDATE = const(27)

M_HELLO = const(1)
M_ADV = const(2)
M_NOTIFY = const(3)
M_READ_RSP = const(4)
M_DISC = const(5)
M_CONNECT = const(16)
M_DISCONNECT = const(17)
M_MTU = const(18)
M_WRITE = const(20)
M_READ = const(21)
M_CONN_UPDATE = const(22)
M_COMPLETED = const(23)

_ENOMEM = const(12)
_ENOTCONN = const(107)
_TX_SLOTS = const(12)  # notifications the controller may hold at once (NimBLE's mbuf pool)
_MAX_ATT_MTU = const(517)

ENDPOINT = None  # (host, port) of the virtual BlueZ; set by the simulation HAL
ADDRESS = b"\x02\x00\x00\x00\x00\x01"  # public address the simulated controller reports


class UUID:
    def __init__(self, value):
        if isinstance(value, int):
            self.value = "%08x-0000-1000-8000-00805f9b34fb" % value
        else:
            s = str(value).lower()
            if len(s) <= 4:
                s = "%08x-0000-1000-8000-00805f9b34fb" % int(s, 16)
            self.value = s

    def __eq__(self, other):
        return isinstance(other, UUID) and other.value == self.value

    def __str__(self):
        return self.value


class BLE:
    _instance = None

    def __new__(cls):
        if BLE._instance is None:
            BLE._instance = object.__new__(cls)
            BLE._instance._init()
        return BLE._instance

    def _init(self):
        self._active = False
        self._irq = None
        self._cfg = {"gap_name": b"MPY", "mtu": 23, "mac": (0, ADDRESS)}
        self._values = {}  # handle -> bytearray (the local attribute table)
        self._bufsize = {}
        self._table = []
        self._next_handle = 1
        self._adv = None  # (interval_us, adv_data, resp_data) while advertising
        self._conn = None
        self._mtu = 23
        self._inflight = 0
        self._w = None
        self._task = None
        self._flush_ev = asyncio.Event()
        self.notifies = 0
        self.enomem = 0

    # ---- the bluetooth.BLE API ----

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if self._active and self._task is None:
            self._task = asyncio.create_task(self._run())
        return self._active

    def config(self, *args, **kw):
        if args:
            return self._cfg[args[0]]
        for k, v in kw.items():
            if k == "gap_name" and isinstance(v, str):
                v = v.encode()
            self._cfg[k] = v

    def irq(self, handler):
        self._irq = handler

    def gatts_register_services(self, services):
        out = []
        self._table = []
        for svc_uuid, chars in services:
            self._next_handle += 1  # the service declaration
            handles = []
            tchars = []
            for ch in chars:
                uuid, flags = ch[0], ch[1]
                self._next_handle += 1  # the characteristic declaration
                h = self._next_handle
                self._next_handle += 1
                self._values[h] = bytearray()
                self._bufsize[h] = 20
                handles.append(h)
                tchars.append([h, str(uuid), flags])
                if flags & (FLAG_NOTIFY | FLAG_INDICATE):
                    self._next_handle += 1  # the CCCD
            out.append(tuple(handles))
            self._table.append([str(svc_uuid), tchars])
        self._send_hello()
        return tuple(out)

    def gatts_write(self, handle, data, send_update=False):
        self._values[handle] = bytearray(data)
        if send_update and self._conn is not None:
            try:
                self.gatts_notify(self._conn, handle)
            except OSError:
                pass

    def gatts_read(self, handle):
        return bytes(self._values[handle])

    def gatts_set_buffer(self, handle, size, append=False):
        self._bufsize[handle] = size

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        if interval_us is None:
            self._adv = None
        else:
            self._adv = (interval_us, bytes(adv_data or b""), bytes(resp_data or b""))
        self._send_adv()

    def gap_disconnect(self, conn):
        if self._conn != conn:
            return False
        self._send(M_DISC, struct.pack("<H", conn))
        self._disconnected(conn, 0x16)
        return True

    def gatts_notify(self, conn, handle, data=None):
        if conn != self._conn or self._w is None:
            raise OSError(_ENOTCONN)
        if self._inflight >= _TX_SLOTS:
            self.enomem += 1
            raise OSError(_ENOMEM)
        if data is None:
            data = self._values[handle]
        self._inflight += 1
        self.notifies += 1
        self._send(M_NOTIFY, struct.pack("<HH", conn, handle) + data)

    # ---- the simulated controller ----

    def _fire(self, event, data):
        if self._irq is not None:
            self._irq(event, data)

    def _send(self, kind, body):
        w = self._w
        if w is None:
            return
        try:
            w.write(struct.pack("<HB", len(body) + 1, kind) + body)
        except OSError:
            self._w = None
            return
        if w.out_buf:
            self._flush_ev.set()  # the socket took part of it: the flusher sends the rest

    def pending(self):
        """Bytes written by the stack but not yet taken by the socket."""
        return len(self._w.out_buf) if self._w is not None else 0

    async def _flush(self, w):
        try:
            while self._w is w:
                self._flush_ev.clear()
                if w.out_buf:
                    await w.drain()
                else:
                    await self._flush_ev.wait()
        except OSError:
            pass

    def _send_hello(self):
        mac = self._cfg["mac"][1]
        addr = ":".join("%02X" % b for b in mac)
        self._send(M_HELLO, json.dumps({"address": addr, "gatt": self._table}).encode())

    def _send_adv(self):
        if self._adv is None or self._conn is not None:
            self._send(M_ADV, b"")
        else:
            iv, a, r = self._adv
            self._send(M_ADV, struct.pack("<IB", iv, len(a)) + a + r)

    def _disconnected(self, conn, reason):
        if self._conn is None:
            return
        self._conn = None
        self._inflight = 0
        self._adv = None  # like NimBLE: advertising is not resumed by the stack
        self._fire(_IRQ_CENTRAL_DISCONNECT, (conn, 0, b"\x00" * 6))

    def _on_message(self, kind, body):
        if kind == M_CONNECT:
            conn, atype = struct.unpack_from("<HB", body, 0)
            self._conn = conn
            self._mtu = 23
            self._inflight = 0
            self._adv = None  # a connectable advertising set stops when a central connects
            self._fire(_IRQ_CENTRAL_CONNECT, (conn, atype, bytes(body[3:9])))
        elif kind == M_DISCONNECT:
            conn, reason = struct.unpack_from("<HB", body, 0)
            if conn == self._conn:
                self._disconnected(conn, reason)
        elif kind == M_MTU:
            conn, central = struct.unpack_from("<HH", body, 0)
            mine = min(_MAX_ATT_MTU, max(23, self._cfg.get("mtu", 23)))
            self._mtu = min(central, mine)
            self._send(M_MTU, struct.pack("<HH", conn, self._mtu))
            self._fire(_IRQ_MTU_EXCHANGED, (conn, self._mtu))
        elif kind == M_WRITE:
            conn, handle = struct.unpack_from("<HH", body, 0)
            if handle in self._values and conn == self._conn:
                self._values[handle] = bytearray(body[4 : 4 + self._bufsize.get(handle, 20)])
                self._fire(_IRQ_GATTS_WRITE, (conn, handle))
        elif kind == M_READ:
            token, handle = struct.unpack_from("<HH", body, 0)
            v = self._values.get(handle, b"")
            self._send(M_READ_RSP, struct.pack("<H", token) + bytes(v[: self._mtu - 1]))
        elif kind == M_CONN_UPDATE:
            conn, iv, lat, sto = struct.unpack_from("<HHHH", body, 0)
            self._fire(_IRQ_CONNECTION_UPDATE, (conn, iv, lat, sto, 0))
        elif kind == M_COMPLETED:
            n = struct.unpack_from("<H", body, 0)[0]
            self._inflight = max(0, self._inflight - n)

    async def _run(self):
        backoff = 100
        while self._active:
            w = None
            try:
                host, port = ENDPOINT
                r, w = await asyncio.open_connection(host, port)
                self._w = w
                asyncio.create_task(self._flush(w))
                self._send_hello()
                self._send_adv()
                backoff = 100
                while True:
                    head = await r.readexactly(3)
                    n, kind = struct.unpack("<HB", head)
                    body = await r.readexactly(n - 1) if n > 1 else b""
                    self._on_message(kind, body)
            except (OSError, EOFError):
                backoff = min(backoff * 2, 2000)
            self._w = None
            self._flush_ev.set()
            if self._conn is not None:
                self._disconnected(self._conn, 0x08)
            if w is not None:
                try:
                    w.close()
                except OSError:
                    pass
            await asyncio.sleep_ms(backoff)
