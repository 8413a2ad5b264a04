"""A scripted BLE central for one firmware device: the other end of bluetooth_sim's socket
(firmware/sim/bluetooth_sim.py), speaking the device link messages of simulators/virtual_bluez
directly, with no D-Bus and no gateway. Tests drive the firmware's radio with it where timing
must be exact (a link dropped in the middle of a write) or where they play the gateway's part
themselves (control frames, replies)."""

from __future__ import annotations

import asyncio
import json
import struct

from gateway import protocol as p
from gateway.transports.uuids import CONTROL_CHAR
from simulators import virtual_bluez as vb

CENTRAL_MTU = 517


class ScriptedCentral:
    """Serve one device link (`serve` is an asyncio.start_server callback). It answers MTU
    exchanges, gives every notification's credit back at once, answers the device's own
    disconnect, and keeps what the device sent: notifications per connection, replies by
    request id, the newest Doppler seq."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.adv = asyncio.Event()
        self.ctrl = 0  # the control characteristic's handle (from the device's GATT table)
        self.conn = 0  # the connection now up (0: none)
        self.mtu: dict[int, int] = {}
        self.notified: dict[int, int] = {}  # conn -> notifications
        self.frames_ok = 0
        self.bad_frames = 0
        self.resent = 0  # frames with RESENT set
        self.doppler_seq = 0  # the newest Doppler frame's first sample
        self.replies: dict[int, p.Reply] = {}  # request id -> the newest reply
        self.records: list[p.Frame] = []  # INFO and EVENT frames

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
                    if uuid == CONTROL_CHAR:
                        self.ctrl = h
        elif kind == vb.M_ADV:
            if body:
                self.adv.set()
            else:
                self.adv.clear()
        elif kind in (vb.M_MTU, vb.M_MTU_REQ):
            conn, mtu = struct.unpack_from("<HH", body)
            self.mtu[conn] = min(mtu, CENTRAL_MTU)
            if kind == vb.M_MTU_REQ:
                self.send(vb.M_MTU_RSP, struct.pack("<HH", conn, CENTRAL_MTU))
        elif kind == vb.M_DISC:  # the device ends the link: the controller confirms
            (conn,) = struct.unpack_from("<H", body)
            self.disconnect(conn, vb.HCI_REMOTE_USER_TERMINATED)
        elif kind == vb.M_NOTIFY:
            conn, _h = struct.unpack_from("<HH", body)
            self.notified[conn] = self.notified.get(conn, 0) + 1
            self.send(vb.M_COMPLETED, struct.pack("<H", 1))  # the air took it: a credit back
            try:
                f = p.decode_frame(body[4:])
            except p.FrameError:
                self.bad_frames += 1
                return
            self.frames_ok += 1
            self.resent += f.resent
            if f.stream == p.Stream.DOPPLER:
                self.doppler_seq = max(self.doppler_seq, f.seq)
            elif f.stream == p.Stream.REPLY:
                reply = p.decode_reply(f.payload)
                self.replies[reply.request_id] = reply
            elif f.stream in (p.Stream.INFO, p.Stream.EVENT):
                self.records.append(f)

    def send(self, kind: int, body: bytes = b"") -> None:
        assert self.writer is not None
        self.writer.write(struct.pack("<HB", len(body) + 1, kind) + body)

    def connect(self, conn: int) -> None:
        """A central connects (the device's advertising stops) and exchanges the MTU."""
        self.adv.clear()
        self.conn = conn
        self.send(vb.M_CONNECT, struct.pack("<HB", conn, 0) + bytes(6))
        self.send(vb.M_MTU, struct.pack("<HH", conn, CENTRAL_MTU))

    def disconnect(self, conn: int, reason: int = vb.HCI_SUPERVISION_TIMEOUT) -> None:
        if self.conn == conn:
            self.conn = 0
        self.send(vb.M_DISCONNECT, struct.pack("<HB", conn, reason))

    def write(self, conn: int, frame: bytes) -> None:
        self.send(vb.M_WRITE, struct.pack("<HH", conn, self.ctrl) + frame)

    def command(self, rid: int, op: p.Op, args: bytes = b"") -> None:
        """An unsigned control frame (a device without a key, or PAIR in its window)."""
        payload = p.control_payload(op, rid, args)
        frame = p.Frame(p.Flag(0), p.DeviceType.GATEWAY, p.Stream.CONTROL, 0, rid, 0, payload)
        self.replies.pop(rid, None)
        self.write(self.conn, p.encode_frame(frame))

    async def reply(self, rid: int, timeout_s: float = 10.0) -> p.Reply:
        """The device's reply to request `rid`."""
        async with asyncio.timeout(timeout_s):
            while rid not in self.replies:
                await asyncio.sleep(0.01)
        return self.replies[rid]
