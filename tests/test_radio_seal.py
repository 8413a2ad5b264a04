"""A passive listener on the radio reads no readings: the real firmware (fetal-heart monitor and
jaundice meter, radio_ble on bluetooth_sim under the MicroPython Unix port, each provisioned
with a key) streams to a scripted central, which keeps every notification as the air carried
it. The gateway's side (FrameAuth, after a genuine handshake) opens them into valid Doppler,
PPG and TcB payloads; the same bytes as a sniffer has them are not those payloads, and opening
them under another key gives nothing valid either."""

from __future__ import annotations

import asyncio
import secrets
import struct

import numpy as np
import pytest

from gateway import protocol as p
from gateway.device import auth
from gateway.device.session import LinkStats
from simulators import virtual_bluez as vb
from simulators.ble_central import ScriptedCentral
from simulators.fleet import DeviceSpec, VirtualDevice
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.system

GATEWAY = bytes.fromhex(vb.ADAPTER_ADDRESS.replace(":", ""))


class Sniffer(ScriptedCentral):
    """The scripted central, keeping every notification's bytes as they crossed the air."""

    def __init__(self) -> None:
        super().__init__()
        self.air: list[bytes] = []

    def on_message(self, kind: int, body: bytes) -> None:
        super().on_message(kind, body)
        if kind == vb.M_NOTIFY:
            self.air.append(body[4:])

    def connect_from(self, conn: int, address: bytes) -> None:
        self.adv.clear()
        self.conn = conn
        self.send(vb.M_CONNECT, struct.pack("<HB", conn, 0) + address)
        self.send(vb.M_MTU, struct.pack("<HH", conn, 247))


async def _capture(spec: DeviceSpec, tmp_path, enough) -> tuple[bytes, list[bytes]]:
    """The device's key and what the air carried until `enough(frames)`."""
    central = Sniffer()
    server = await asyncio.start_server(central.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dev = VirtualDevice(spec, f"127.0.0.1:{port}", tmp_path, radio_kind="ble")
    await dev.start()
    try:
        await eventually_async(lambda: central.ctrl and central.adv.is_set(), 20,
                               "the device registered its GATT table and advertised")  # fmt: skip
        gw = auth.FrameAuth(dev.key, LinkStats())
        challenge = gw.new_connection(GATEWAY)
        central.connect_from(1, GATEWAY)
        central.command(1, p.Op.SESSION, challenge)
        await central.reply(1)
        await eventually_async(lambda: enough([p.decode_frame(f) for f in central.air]), 60,
                               "the device streamed")  # fmt: skip
    finally:
        await dev.stop()
        server.close()
    assert "Traceback" not in "\n".join(dev.console_lines())
    return dev.key, list(central.air)


def _open_all(key: bytes, air: list[bytes]) -> tuple[list[p.Frame], LinkStats]:
    """What a gateway holding `key` admits of the captured frames (session reply first)."""
    stats = LinkStats()
    gw = auth.FrameAuth(key, stats)
    gw.new_connection(GATEWAY)
    frames = [p.decode_frame(f) for f in air]
    reply = next(f for f in frames if f.stream == p.Stream.REPLY and f.payload[0] == p.Op.SESSION)
    gw.challenge = reply.payload[3 : 3 + p.NONCE_LEN]  # the challenge this capture answered
    opened: list[p.Frame] = []
    for raw in air:
        opened += gw.admit(p.decode_frame(raw), raw)
    return opened, stats


def _valid_adpcm(payload: bytes) -> bool:
    return len(payload) > p.ADPCM_HEADER_LEN and payload[2] <= 88


def test_a_sniffer_reads_no_doppler_or_ppg_and_only_the_key_opens_them(tmp_path):
    spec = DeviceSpec("fh-seal", "fetal_heart", seed=5)

    def enough(frames: list[p.Frame]) -> bool:
        return sum(f.stream == p.Stream.DOPPLER for f in frames) >= 40 and \
            sum(f.stream == p.Stream.PPG for f in frames) >= 4  # fmt: skip

    key, air = asyncio.run(_capture(spec, tmp_path, enough))
    sniffed = [p.decode_frame(f) for f in air]  # the header is in clear: the CRC holds
    assert all(f.flags & p.Flag.AUTH for f in sniffed)
    opened, stats = _open_all(key, air)
    assert (stats.auth_failed, stats.replayed, stats.unsigned) == (0, 0, 0)
    assert len(opened) == len(sniffed)
    by_seq = {(f.stream, f.seq): f for f in opened}

    doppler = [f for f in sniffed if f.stream == p.Stream.DOPPLER]
    # opened: every frame a valid ADPCM block, decoding to audio
    assert all(_valid_adpcm(by_seq[(f.stream, f.seq)].payload) for f in doppler)
    for f in doppler:
        assert f.payload != by_seq[(f.stream, f.seq)].payload  # the air never carries it
    # as sniffed: the step index is a random byte, over 88 in about 65 % of frames
    assert sum(not _valid_adpcm(f.payload) for f in doppler) > len(doppler) // 3

    ppg = [f for f in sniffed if f.stream == p.Stream.PPG]
    clear = np.concatenate([p.samples_of(by_seq[(f.stream, f.seq)]).astype(float) for f in ppg])
    noise = np.concatenate([p.pcm16_decode(f.payload).astype(float) for f in ppg])
    # the pulse is smooth at 50 Hz; its sealed bytes are uniform noise over the int16 range
    assert np.median(np.abs(np.diff(clear))) < 2000 < 10000 < np.median(np.abs(np.diff(noise)))

    # another key (a gateway that enrolled a different one) opens nothing: no session starts
    wrong, stats = _open_all(secrets.token_bytes(p.KEY_LEN), air)
    assert wrong == [] and stats.auth_failed >= 1


def test_a_sniffer_reads_no_tcb_counts(tmp_path):
    spec = DeviceSpec("jm-seal", "jaundice", seed=6, press_every_s=2.0)

    def enough(frames: list[p.Frame]) -> bool:
        return sum(f.stream == p.Stream.TCB and not f.more for f in frames) >= 2

    key, air = asyncio.run(_capture(spec, tmp_path, enough))
    opened, stats = _open_all(key, air)
    assert (stats.auth_failed, stats.replayed, stats.unsigned) == (0, 0, 0)

    def records(frames: list[p.Frame]) -> list[bytes]:
        out, part = [], b""
        for f in frames:
            if f.stream == p.Stream.TCB:
                part += f.payload
                if not f.more:
                    out.append(part)
                    part = b""
        return out

    clear = records(opened)
    sniffed = records([p.decode_frame(f) for f in air])
    assert len(clear) == len(sniffed) >= 2
    for c, s in zip(clear, sniffed, strict=True):
        counts = p.decode_tcb(c)  # the gateway reads the measurement
        assert counts.flashes.size > 0 and all(d > 0 for d in counts.led_drive)
        assert s != c
        with pytest.raises(p.FrameError):
            p.decode_tcb(s)  # a sniffer's copy is not a record
