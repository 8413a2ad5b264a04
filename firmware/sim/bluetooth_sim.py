# The `bluetooth` module for the Unix port: the same BLE surface the firmware uses on an ESP32
# (BLE, UUID, FLAG_*, irq events, gattc_exchange_mtu), with the radio replaced by a socket to
# the virtual BlueZ process (simulators/virtual_bluez/), which plays the air and the gateway's
# controller. The simulation HAL installs it as `bluetooth` (sys.modules) only when a device is
# set to radio "ble"; on a board the real module is used and this file is never imported.
#
# Threads, as on an ESP32: there the NimBLE host runs in a FreeRTOS task of its own and calls
# the Python IRQ handler from that task, concurrently with the asyncio loop. Here a second
# thread (`_thread`) plays the host: it owns the socket's reading side and calls the handler.
# The Unix port has no GIL, so a handler that touches the loop's objects races for real, and a
# test can see it. The firmware's calls (gatts_notify, gap_advertise, ...) take the host's lock,
# as NimBLE's do. An exception in the handler is printed and the host carries on, as
# MicroPython's does. The firmware's rule (docs/firmware.md) is that its handler only records
# the event: any call other than gatts_read made from the handler is printed once per call
# ("BLE call from IRQ: ..."), which the tests look for.
#
# Link messages, both ways: [u16 length of kind+body][u8 kind][body], little-endian.
# Device -> virtual BlueZ: HELLO (JSON: address, GATT table), ADV (advertising on/off and its
# payloads), NOTIFY (conn, handle, value), READ_RSP (token, value), DISC (conn), MTU (the answer
# to the central's exchange), MTU_REQ (the device starts an exchange: gattc_exchange_mtu).
# Virtual BlueZ -> device: CONNECT, DISCONNECT, MTU (the central's exchange), MTU_RSP (the
# answer to the device's), WRITE, READ, CONN_UPDATE and COMPLETED (notifications that left the
# controller: TX buffer credits). docs/ble.md has the details.
import _thread
import json
import socket
import struct
import sys
import time

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
M_MTU_REQ = const(6)
M_CONNECT = const(16)
M_DISCONNECT = const(17)
M_MTU = const(18)
M_MTU_RSP = const(19)
M_WRITE = const(20)
M_READ = const(21)
M_CONN_UPDATE = const(22)
M_COMPLETED = const(23)

_ENOMEM = const(12)
_ENOTCONN = const(107)
_EALREADY = const(114)  # NimBLE: this side has already sent its MTU in this connection
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
        # Every attribute is set here, before the host thread starts: a dict that grows while
        # the other thread reads it is not safe without a GIL.
        self._lock = _thread.allocate_lock()  # the host stack's lock
        self._active = False
        self._started = False
        self._irq = None
        self._cfg = {"gap_name": b"MPY", "mtu": 23, "mac": (0, ADDRESS)}
        self._values = {}  # handle -> bytearray (the local attribute table)
        self._bufsize = {}
        self._table = []
        self._next_handle = 1
        self._adv = None  # (interval_us, adv_data, resp_data) while advertising
        self._conn = None
        self._mtu = 23
        self._mtu_sent = False  # this side has sent its MTU (answer or request) on this link
        self._inflight = 0
        self._sock = None
        self.notifies = 0
        self.enomem = 0
        self.irq_errors = 0
        self._host_id = None  # the host thread's ident
        self._irq_calls = []  # API calls seen from the IRQ handler, each printed once

    # ---- the bluetooth.BLE API ----

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if self._active and not self._started:
            self._started = True
            _thread.start_new_thread(self._host, ())
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
        with self._lock:
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
        self._from_irq("gatts_write")
        with self._lock:
            self._values[handle] = bytearray(data)
        if send_update and self._conn is not None:
            try:
                self.gatts_notify(self._conn, handle)
            except OSError:
                pass

    def gatts_read(self, handle):
        with self._lock:
            return bytes(self._values[handle])

    def gatts_set_buffer(self, handle, size, append=False):
        with self._lock:
            self._bufsize[handle] = size

    def gap_advertise(self, interval_us, adv_data=None, resp_data=None, connectable=True):
        self._from_irq("gap_advertise")
        with self._lock:
            if interval_us is None:
                self._adv = None
            else:
                self._adv = (interval_us, bytes(adv_data or b""), bytes(resp_data or b""))
            self._send_adv()

    def gap_disconnect(self, conn):
        """Ask the controller to end the link; _IRQ_CENTRAL_DISCONNECT follows from the host
        thread when it has ended, as on NimBLE."""
        self._from_irq("gap_disconnect")
        with self._lock:
            if self._conn != conn or self._sock is None:
                return False
            self._send(M_DISC, struct.pack("<H", conn))
            return True

    def gatts_notify(self, conn, handle, data=None):
        self._from_irq("gatts_notify")
        if not isinstance(conn, int):  # what the ESP32 port raises for gatts_notify(None, ...)
            raise TypeError("can't convert %s to int" % type(conn).__name__)
        with self._lock:
            if conn != self._conn or self._sock is None:
                raise OSError(_ENOTCONN)
            if self._inflight >= _TX_SLOTS:
                self.enomem += 1
                raise OSError(_ENOMEM)
            if data is None:
                data = self._values[handle]
            self._inflight += 1
            self.notifies += 1
            self._send(M_NOTIFY, struct.pack("<HH", conn, handle) + data)

    def gattc_exchange_mtu(self, conn):
        """Start an ATT MTU exchange as GATT client; _IRQ_MTU_EXCHANGED follows. OSError if
        this side already sent its MTU on this link (the central asked first)."""
        self._from_irq("gattc_exchange_mtu")
        if not isinstance(conn, int):
            raise TypeError("can't convert %s to int" % type(conn).__name__)
        with self._lock:
            if conn != self._conn or self._sock is None:
                raise OSError(_ENOTCONN)
            if self._mtu_sent:
                raise OSError(_EALREADY)
            self._mtu_sent = True
            self._send(M_MTU_REQ, struct.pack("<HH", conn, self._my_mtu()))

    # ---- the simulated controller and host (the host thread) ----

    def _from_irq(self, name):
        """The handler called `name`: work that belongs to the loop (see the header)."""
        if _thread.get_ident() == self._host_id and name not in self._irq_calls:
            self._irq_calls.append(name)
            print("BLE call from IRQ: " + name)

    def _my_mtu(self):
        return min(_MAX_ATT_MTU, max(23, self._cfg.get("mtu", 23)))

    def _fire(self, event, data):
        """Call the application's handler on this thread, never holding the lock (the handler
        may call gatts_read). Its exceptions are printed and the host goes on."""
        handler = self._irq
        if handler is None:
            return
        try:
            handler(event, data)
        except Exception as e:  # the ESP32 port's behaviour: a failing handler loses its event
            self.irq_errors += 1
            print("Unhandled exception in IRQ callback handler")
            sys.print_exception(e)

    def _send(self, kind, body):
        """One message to the virtual BlueZ; the lock is held by the caller."""
        s = self._sock
        if s is None:
            return
        try:
            s.sendall(struct.pack("<HB", len(body) + 1, kind) + body)
        except OSError:
            self._sock = None  # the host thread sees the broken socket and reconnects

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

    def _disconnected(self, conn):
        with self._lock:
            if self._conn is None or self._conn != conn:
                return
            self._conn = None
            self._inflight = 0
            self._adv = None  # like NimBLE: advertising is not resumed by the stack
        self._fire(_IRQ_CENTRAL_DISCONNECT, (conn, 0, b"\x00" * 6))

    def _on_message(self, kind, body):
        if kind == M_CONNECT:
            conn, atype = struct.unpack_from("<HB", body, 0)
            with self._lock:
                self._conn = conn
                self._mtu = 23
                self._mtu_sent = False
                self._inflight = 0
                self._adv = None  # a connectable advertising set stops when a central connects
            self._fire(_IRQ_CENTRAL_CONNECT, (conn, atype, bytes(body[3:9])))
        elif kind == M_DISCONNECT:
            conn, _reason = struct.unpack_from("<HB", body, 0)
            self._disconnected(conn)
        elif kind == M_MTU or kind == M_MTU_RSP:
            conn, central = struct.unpack_from("<HH", body, 0)
            with self._lock:
                if conn != self._conn:
                    return
                self._mtu = min(central, self._my_mtu())
                if kind == M_MTU:  # the central's request: answer with ours
                    self._mtu_sent = True
                    self._send(M_MTU, struct.pack("<HH", conn, self._mtu))
                mtu = self._mtu
            self._fire(_IRQ_MTU_EXCHANGED, (conn, mtu))
        elif kind == M_WRITE:
            conn, handle = struct.unpack_from("<HH", body, 0)
            with self._lock:
                if handle not in self._values or conn != self._conn:
                    return
                self._values[handle] = bytearray(body[4 : 4 + self._bufsize.get(handle, 20)])
            self._fire(_IRQ_GATTS_WRITE, (conn, handle))
        elif kind == M_READ:
            token, handle = struct.unpack_from("<HH", body, 0)
            with self._lock:
                v = self._values.get(handle, b"")
                self._send(M_READ_RSP, struct.pack("<H", token) + bytes(v[: self._mtu - 1]))
        elif kind == M_CONN_UPDATE:
            conn, iv, lat, sto = struct.unpack_from("<HHHH", body, 0)
            self._fire(_IRQ_CONNECTION_UPDATE, (conn, iv, lat, sto, 0))
        elif kind == M_COMPLETED:
            n = struct.unpack_from("<H", body, 0)[0]
            with self._lock:
                self._inflight = max(0, self._inflight - n)

    def _serve(self, s):
        """Read messages until the socket ends."""
        while True:
            head = s.read(3)
            if not head or len(head) < 3:
                return
            n, kind = struct.unpack("<HB", head)
            body = s.read(n - 1) if n > 1 else b""
            if n > 1 and (not body or len(body) < n - 1):
                return
            self._on_message(kind, body)

    def _host(self):
        """The host thread: connect to the virtual BlueZ, serve it, reconnect when it goes."""
        self._host_id = _thread.get_ident()
        backoff = 100
        while self._active:
            s = None
            try:
                host, port = ENDPOINT
                s = socket.socket()
                s.connect(socket.getaddrinfo(host, port)[0][-1])
                with self._lock:
                    self._sock = s
                    self._send_hello()
                    self._send_adv()
                backoff = 100
                self._serve(s)
            except OSError:
                backoff = min(backoff * 2, 2000)
            with self._lock:
                self._sock = None
                conn = self._conn
            if conn is not None:
                self._disconnected(conn)
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
            time.sleep_ms(backoff)
