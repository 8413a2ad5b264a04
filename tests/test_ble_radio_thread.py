"""The BLE radio under a host stack that calls it from its own thread, as NimBLE does on an
ESP32: the real firmware (radio_ble on bluetooth_sim, whose IRQs come from a second thread of
the MicroPython Unix port, which has no GIL) against a scripted central that connects, writes
and drops the link hundreds of times, often while a write and notifications are in flight.
Work done in the IRQ (the link's queue and resend store, the connection handle going to None
under gatts_notify) races the asyncio loop here; bluetooth_sim also names any call the handler
makes into the stack ("BLE call from IRQ"), which the firmware's handler never does."""

from __future__ import annotations

import asyncio
import json
import random
import struct
import time

import pytest

from gateway import protocol as p
from simulators import virtual_bluez as vb
from simulators.fleet import DeviceSpec, VirtualDevice
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.system

CYCLES = 150


class Central:
    """The other end of bluetooth_sim's socket: a controller and central in a few lines."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.adv = asyncio.Event()
        self.connected_to: dict[int, bool] = {}
        self.ctrl = 0
        self.mtu: dict[int, int] = {}
        self.notified: dict[int, int] = {}  # conn -> notifications
        self.frames_ok = 0
        self.bad_frames = 0
        self.doppler_seq = 0  # the newest Doppler frame's first sample

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        try:
            while True:
                n, kind = struct.unpack("<HB", await reader.readexactly(3))
                body = await reader.readexactly(n - 1) if n > 1 else b""
                self.on_message(kind, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def on_message(self, kind: int, body: bytes) -> None:
        if kind == vb.M_HELLO:
            for _svc, chars in json.loads(body)["gatt"]:
                for h, uuid, _flags in chars:
                    if uuid == "7a1e0003-5c3b-4f2e-9d8a-6e1f0b2c3d4e":
                        self.ctrl = h
        elif kind == vb.M_ADV:
            if body:
                self.adv.set()
            else:
                self.adv.clear()
        elif kind in (vb.M_MTU, vb.M_MTU_REQ):
            conn, mtu = struct.unpack_from("<HH", body)
            self.mtu[conn] = mtu
            if kind == vb.M_MTU_REQ:
                self.send(vb.M_MTU_RSP, struct.pack("<HH", conn, 517))
        elif kind == vb.M_NOTIFY:
            conn, _h = struct.unpack_from("<HH", body)
            try:
                f = p.decode_frame(body[4:])
                self.frames_ok += 1
                if f.stream == p.Stream.DOPPLER:
                    self.doppler_seq = max(self.doppler_seq, f.seq)
            except p.FrameError:
                self.bad_frames += 1
            self.notified[conn] = self.notified.get(conn, 0) + 1
            self.send(vb.M_COMPLETED, struct.pack("<H", 1))  # the air took it: a credit back

    def send(self, kind: int, body: bytes = b"") -> None:
        assert self.writer is not None
        self.writer.write(struct.pack("<HB", len(body) + 1, kind) + body)

    def connect(self, conn: int) -> None:
        """A central connects (the device's advertising stops) and exchanges the MTU."""
        self.adv.clear()
        self.send(vb.M_CONNECT, struct.pack("<HB", conn, 0) + bytes(6))
        self.send(vb.M_MTU, struct.pack("<HH", conn, 517))

    def write(self, conn: int, frame: bytes) -> None:
        self.send(vb.M_WRITE, struct.pack("<HH", conn, self.ctrl) + frame)


def control(op: p.Op, rid: int, args: bytes = b"") -> bytes:
    frame = p.Frame(p.Flag(0), 0, p.Stream.CONTROL, 0, rid, 0, p.control_payload(op, rid, args))
    return p.encode_frame(frame)


def test_links_dropped_mid_write_and_mid_notify_never_kill_the_device(tmp_path):
    rng = random.Random(16)

    async def main() -> None:
        central = Central()
        server = await asyncio.start_server(central.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        spec = DeviceSpec("fh-thr", "fetal_heart", seed=1, signed=False)
        dev = VirtualDevice(spec, f"127.0.0.1:{port}", tmp_path, radio_kind="ble")
        await dev.start()
        try:
            await eventually_async(lambda: central.ctrl and central.adv.is_set(), 20,
                                   "the device registered its GATT table and advertised")  # fmt: skip
            for conn in range(1, CYCLES + 1):
                await asyncio.wait_for(central.adv.wait(), 5)  # advertising again after a drop
                central.connect(conn)
                central.write(conn, control(p.Op.TIME_SYNC, conn & 0xFF,
                                            p.time_sync_args(int(time.time() * 1000))))  # fmt: skip
                if conn % 10 == 0:  # a whole link's worth of data now and then
                    await eventually_async(lambda c=conn: central.notified.get(c, 0) >= 3, 10,
                                           f"notifications on link {conn}")  # fmt: skip
                await asyncio.sleep(rng.uniform(0.0, 0.03))
                # a resend of the last second (frames read from the store while Doppler is
                # written to it) and the link's end arrive together, with notifications going
                last = central.doppler_seq
                resend = p.resend_args(p.Stream.DOPPLER, max(0, last - 4000), last + 1)
                central.write(conn, control(p.Op.RESEND, (conn + 1) & 0xFF, resend))
                central.send(vb.M_DISCONNECT, struct.pack("<HB", conn, vb.HCI_SUPERVISION_TIMEOUT))
                assert dev.proc is not None and dev.proc.returncode is None, "the device died"
            conn = CYCLES + 1  # after the storm the device still streams, sender and all
            await asyncio.wait_for(central.adv.wait(), 5)
            central.connect(conn)
            central.write(conn, control(p.Op.TIME_SYNC, 1, p.time_sync_args(0)))
            await eventually_async(lambda: central.notified.get(conn, 0) >= 20, 10,
                                   "the device streams on a link after the storm")  # fmt: skip
        finally:
            await dev.stop()
            server.close()
        log = "\n".join(dev.console_lines())
        for bad in ("Traceback", "Unhandled exception", "BLE call from IRQ"):
            assert bad not in log, log
        assert central.bad_frames == 0 and central.frames_ok > 0

    asyncio.run(main())
