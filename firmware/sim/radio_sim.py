# Simulated radio for the Unix port: the GATT link carried over a TCP socket to the gateway's
# simulation transport (docs/protocol.md, "Simulated radio link"). Same surface as radio_ble:
# connected, mtu, notify(frame) -> bool, on_write callback, run() task.
import asyncio
import json
import struct

from micropython import const

L_ADV = const(1)
L_MTU = const(2)
L_NOTIFY = const(3)
L_WRITE = const(4)
_FRAME_MTU = const(247)  # frames are sized for this until a link says its MTU (docs/ble.md)


class SimRadio:
    def __init__(self, host, port, adv):
        self.host = host
        self.port = port
        self.adv = adv  # dict: id, type, name
        self.connected = False
        self.mtu = _FRAME_MTU
        self.on_write = None
        self.on_connect = None
        self._w = None
        self._pending = 0
        self.connects = 0

    def readvertise(self):
        """Advertise self.adv anew (a pairing flag came or went): drop the link, reconnect."""
        if self._w is not None:
            try:
                self._w.close()
            except OSError:
                pass

    def set_battery(self, pct):
        pass  # the socket link has no Battery service; BleRadio publishes it

    def notify(self, frame):
        if not self.connected or self._pending > 8192:
            return False  # like a full BLE TX queue: the caller keeps the frame
        self._w.write(struct.pack("<HB", len(frame) + 1, L_NOTIFY) + frame)
        self._pending += len(frame) + 3
        return True

    async def _flush(self):
        try:
            while self.connected:
                if self._pending:
                    self._pending = 0
                    await self._w.drain()
                await asyncio.sleep_ms(10)
        except OSError:
            pass  # the reader side notices the broken link and reconnects

    async def run(self):
        backoff = 200
        while True:
            w = None
            flusher = None
            try:
                r, w = await asyncio.open_connection(self.host, self.port)
                self._w = w
                adv = json.dumps(self.adv).encode()
                w.write(struct.pack("<HB", len(adv) + 1, L_ADV) + adv)
                await w.drain()
                backoff = 200
                while True:
                    head = await r.readexactly(3)
                    n, kind = struct.unpack("<HB", head)
                    body = await r.readexactly(n - 1) if n > 1 else b""
                    if kind == L_MTU and len(body) == 2:
                        self.mtu = struct.unpack("<H", body)[0]
                        if not self.connected:
                            self.connected = True
                            self.connects += 1
                            flusher = asyncio.create_task(self._flush())
                            if self.on_connect:
                                self.on_connect()
                    elif kind == L_WRITE and self.on_write:
                        self.on_write(body)
            except (OSError, EOFError):
                backoff = min(backoff * 2, 5000) if not self.connected else 200
            self.connected = False  # the MTU is kept: the same central renegotiates it
            if flusher:
                flusher.cancel()
            if w is not None:
                try:
                    w.close()
                except OSError:
                    pass
            await asyncio.sleep_ms(backoff)


def make_radio(settings, adv):
    """The simulated radio a device's settings ask for: this socket link, or with
    "radio_kind": "ble" the board's BLE GATT server (radio_ble) running on bluetooth_sim,
    whose socket goes to the virtual BlueZ at settings["radio"]."""
    host, port = settings["radio"].rsplit(":", 1)
    if settings.get("radio_kind", "sim") != "ble":
        return SimRadio(host, int(port), adv)
    import sys

    import bluetooth_sim

    sys.modules["bluetooth"] = bluetooth_sim  # radio_ble's `import bluetooth` gets the simulator
    from radio_ble import BleRadio

    bluetooth_sim.ENDPOINT = (host, int(port))
    bluetooth_sim.ADDRESS = bytes.fromhex(settings.get("ble_address", "020000000001"))
    return BleRadio(adv)
