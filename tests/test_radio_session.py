"""The session handshake is bound to the BLE link: the real fetal-heart firmware (radio_ble on
bluetooth_sim under the MicroPython Unix port, provisioned with a key) against a scripted
central that plays the gateway and then the attacker.

* A second SESSION on the same connection (anyone able to write the control characteristic)
  is not answered, so it cannot replace the connection nonce under the gateway: the gateway's
  signed commands keep working.
* A relay: the attacker's own central connects to the device and forwards the gateway's
  challenge. The device's reply names the central it answered; the gateway, which knows its
  own address, refuses it. The same reply obtained by the gateway itself opens the session.
* The gateway's BlueZ transport knows that address: it reads its adapter's (the virtual
  BlueZ's D-Bus API) and its sessions are bound to it.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from gateway import protocol as p
from gateway.device import auth
from gateway.device.session import LinkStats
from simulators import virtual_bluez as vb
from simulators.ble_central import ScriptedCentral
from simulators.ble_rig import BleRig
from simulators.fleet import DeviceSpec, VirtualDevice
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.system

GATEWAY = bytes.fromhex(vb.ADAPTER_ADDRESS.replace(":", ""))
RELAY = bytes.fromhex("02aa55aa55aa")


class CapturingCentral(ScriptedCentral):
    """The scripted central, keeping every reply frame's bytes (a gateway checks their tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw_replies: dict[int, bytes] = {}  # request id -> the newest reply frame

    def on_message(self, kind: int, body: bytes) -> None:
        super().on_message(kind, body)
        if kind == vb.M_NOTIFY:
            try:
                f = p.decode_frame(body[4:])
            except p.FrameError:
                return
            if f.stream == p.Stream.REPLY:
                self.raw_replies[f.payload[1]] = body[4:]

    def connect_from(self, conn: int, address: bytes) -> None:
        """A central with this address connects (ScriptedCentral.connect, with an address)."""
        self.adv.clear()
        self.conn = conn
        self.send(vb.M_CONNECT, struct.pack("<HB", conn, 0) + address)
        self.send(vb.M_MTU, struct.pack("<HH", conn, 247))

    def session(self, rid: int, challenge: bytes) -> None:
        self.raw_replies.pop(rid, None)
        self.command(rid, p.Op.SESSION, challenge)


def _admit(fa: auth.FrameAuth, raw: bytes) -> list[p.Frame]:
    return fa.admit(p.decode_frame(raw), raw)


def test_the_session_reply_is_bound_to_the_link_and_given_once_per_connection(tmp_path):
    async def main() -> None:
        central = CapturingCentral()
        server = await asyncio.start_server(central.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        dev = VirtualDevice(DeviceSpec("fh-sess", "fetal_heart", seed=3), f"127.0.0.1:{port}",
                            tmp_path, radio_kind="ble")  # fmt: skip
        await dev.start()
        try:
            await eventually_async(lambda: central.ctrl and central.adv.is_set(), 20,
                                   "the device registered its GATT table and advertised")  # fmt: skip
            # 1. The gateway's connection and handshake.
            stats = LinkStats()
            gw = auth.FrameAuth(dev.key, stats)
            challenge = gw.new_connection(GATEWAY)
            central.connect_from(1, GATEWAY)
            central.session(1, challenge)
            await central.reply(1)
            assert _admit(gw, central.raw_replies[1]) and gw.established
            # 2. Someone on the same link asks for a session again, then the gateway sends a
            # signed command: the device ignored the second SESSION, so the command (signed
            # with the first connection nonce) is answered.
            central.session(2, bytes(range(8)))
            sync = gw.control_frame(p.control_payload(p.Op.TIME_SYNC, 3, p.time_sync_args(1)))
            central.replies.pop(3, None)
            central.write(1, sync)
            assert (await central.reply(3)).status == p.Status.OK
            assert 2 not in central.replies, "a second SESSION on one connection was answered"
            # 3. A relay: the attacker's central connects and forwards the gateway's challenge.
            central.disconnect(1)
            await asyncio.wait_for(central.adv.wait(), 10)
            challenge = gw.new_connection(GATEWAY)
            central.connect_from(2, RELAY)
            central.session(4, challenge)
            await central.reply(4)
            relayed = central.raw_replies[4]
            assert relayed[12 + 3 + 3 * p.NONCE_LEN : -p.TAG_LEN - p.CRC_LEN] == RELAY
            assert _admit(gw, relayed) == [] and not gw.established
            assert stats.auth_failed == 1
            # 4. The gateway itself connects and gets its session.
            central.disconnect(2)
            await asyncio.wait_for(central.adv.wait(), 10)
            challenge = gw.new_connection(GATEWAY)
            central.connect_from(3, GATEWAY)
            central.session(5, challenge)
            await central.reply(5)
            assert _admit(gw, central.raw_replies[5]) and gw.established
            assert (stats.auth_failed, stats.replayed) == (1, 0)
        finally:
            await dev.stop()
            server.close()
        log = "\n".join(dev.console_lines())
        assert "Traceback" not in log, log

    asyncio.run(main())


def test_the_ble_gateway_binds_its_sessions_to_its_adapter_address(broker, tmp_path):
    out = {}

    async def main() -> None:
        async with BleRig(tmp_path, broker, [DeviceSpec("fh-bind", "fetal_heart", seed=4)]) as rig:
            await rig.wait_connected(timeout_s=20)
            session = rig.gw.sessions["fh-bind"]
            await rig.until(lambda: session.auth.established, 10, "no authenticated session")
            out["address"] = rig.gw.transport.address
            out["peer"] = session.auth.peer
            out["stats"] = session.state.stats

    asyncio.run(main())
    assert out["address"] == out["peer"] == GATEWAY
    assert out["stats"].auth_failed == 0 and out["stats"].frames > 0
