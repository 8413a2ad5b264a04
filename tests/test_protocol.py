"""Wire protocol v1: the firmware side (under the real MicroPython) and the gateway side
(CPython) agree on the same byte vectors, in both directions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gateway import protocol as p
from tests.harness.micropython import run_micropython

MPY = Path(__file__).parent / "mpy" / "protocol_vectors.py"
FIRMWARE_PROTOCOL = Path(__file__).resolve().parents[1] / "firmware" / "lib" / "protocol.py"


@pytest.fixture(scope="module")
def vectors(firmware_lib=None):
    from simulators.fleet import FIRMWARE_DIR

    return json.loads(run_micropython(MPY, str(FIRMWARE_DIR / "lib"), "encode"))


@pytest.mark.system
def test_crc_is_crc16_ccitt_false(vectors):
    assert vectors["crc"] == 0x29B1 == p.crc16(b"123456789")


@pytest.mark.system
def test_firmware_frames_decode_in_gateway(vectors):
    frames = [p.decode_frame(bytes.fromhex(h)) for h in vectors["frames"]]
    status, info, event, pcm, adpcm, tcb, small = frames
    assert (status.device_type, status.stream, status.boot, status.seq, status.t_ms) == (
        p.DeviceType.FETAL_HEART, p.Stream.STATUS, 7, 3, 123456,
    )  # fmt: skip
    s = p.decode_status(status.payload)
    assert (s.battery_mv, s.battery_pct, s.on_skin, s.charging) == (3900, 71, True, False)
    assert info.more and info.boot == 65535 and info.seq == 2**32 - 1 and info.t_ms == 2**32 - 1
    assert json.loads(info.payload) == {"id": "x"}
    assert event.tag == b"\x01" * 8 and event.flags & p.Flag.AUTH and event.payload == bytes([1])
    tone = np.array(vectors["tone"], dtype=np.int16)
    np.testing.assert_array_equal(p.samples_of(pcm), tone[:100])
    assert pcm.seq == 4000
    decoded = p.samples_of(adpcm).astype(float)
    assert len(decoded) == 454
    err = decoded[50:] - tone[50:454]  # after the step size has adapted
    snr_db = 10 * np.log10(np.mean(tone[50:454].astype(float) ** 2) / np.mean(err**2))
    assert snr_db > 20, snr_db
    t = p.decode_tcb(tcb.payload)
    assert t.contact and not t.saturated and t.temperature_c == 31.25
    assert t.dark_before == (12, 13) and t.dark_after == (14, 15)
    assert t.led_drive == (100, 110, 120, 130, 140, 150)
    assert t.flashes.shape == (6, 2, 5) and int(t.flashes[5, 1, 4]) == 1000 + 50 + 1 + 4
    assert len(bytes.fromhex(vectors["frames"][-1])) == 20  # fits a 23-byte ATT MTU exactly
    assert len(p.samples_of(small)) == 3


@pytest.mark.system
def test_gateway_frames_decode_in_firmware():
    from simulators.fleet import FIRMWARE_DIR

    sent = [
        p.Frame(p.Flag(0), 0, p.Stream.CONTROL, 0, 5, 99,
                p.control_payload(p.Op.RESEND, 5, p.resend_args(p.Stream.DOPPLER, 10, 4010))),
        p.Frame(p.Flag(0), 0, p.Stream.CONTROL, 0, 6, 0,
                p.control_payload(p.Op.TIME_SYNC, 6, p.time_sync_args(1_700_000_000_123))),
        p.Frame(p.Flag.MORE, 2, p.Stream.TCB, 1, 2, 3, b"abc", tag=bytes(range(8))),
    ]  # fmt: skip
    lines = [p.encode_frame(f).hex() for f in sent]
    corrupt = bytearray(p.encode_frame(sent[0]))
    corrupt[5] ^= 0x40
    lines.append(corrupt.hex())
    out = run_micropython(MPY, str(FIRMWARE_DIR / "lib"), "decode", stdin="\n".join(lines) + "\n")
    got = [json.loads(x) for x in out.splitlines()]
    assert got[0]["op"] == p.Op.RESEND and got[0]["rid"] == 5 and got[0]["stream"] == 30
    assert bytes.fromhex(got[0]["payload"])[2:] == p.resend_args(p.Stream.DOPPLER, 10, 4010)
    assert got[1]["op"] == p.Op.TIME_SYNC
    assert got[2]["tag"] == bytes(range(8)).hex() and got[2]["flags"] & p.Flag.MORE
    assert got[2]["payload"] == b"abc".hex() and got[2]["dt"] == 2
    assert got[3] is None  # the firmware rejects a frame whose CRC does not match


def _firmware_consts() -> dict[str, int]:
    text = FIRMWARE_PROTOCOL.read_text()
    return {m[0]: int(m[1], 0) for m in re.findall(r"^(\w+) = const\((\w+)\)", text, re.M)}


@pytest.mark.unit
def test_constants_agree_between_the_two_sides():
    c = _firmware_consts()
    assert c["VERSION"] == p.VERSION and c["HEADER_LEN"] == p.HEADER_LEN
    assert c["CRC_LEN"] == p.CRC_LEN and c["TAG_LEN"] == p.TAG_LEN
    for flag in p.Flag:
        assert c[f"F_{flag.name}"] == flag.value
    for stream in p.Stream:
        assert c[f"S_{stream.name}"] == stream.value
    for op in p.Op:
        assert c[f"OP_{op.name}"] == op.value
    for ev in p.Event:
        assert c[f"EV_{ev.name}"] == ev.value
    assert c["DT_FETAL_HEART"] == p.DeviceType.FETAL_HEART
    assert c["DT_JAUNDICE"] == p.DeviceType.JAUNDICE


@pytest.mark.unit
def test_pairing_constants_agree_between_the_two_sides():
    c = _firmware_consts()
    for step in p.PairStep:
        assert c[f"PS_{step.name}"] == step.value
    assert c["PAIR_SECRET_LEN"] == p.PAIR_SECRET_LEN and c["KEY_LEN"] == p.KEY_LEN


@pytest.mark.unit
def test_usb_serial_constants_agree_between_the_two_sides():
    c = _firmware_consts()
    for kind in p.SerialKind:
        assert c[f"SER_{kind.name}"] == kind.value
    for name in ("SLIP_END", "SLIP_ESC", "SLIP_ESC_END", "SLIP_ESC_ESC", "SERIAL_LINK_MTU"):
        assert c[name] == getattr(p, name), name
    assert p.SERIAL_LINK_MTU - p.ATT_OVERHEAD == p.MAX_FRAME_LEN


@pytest.mark.unit
def test_sim_feed_channels_agree():
    from simulators import fleet

    text = (fleet.FIRMWARE_DIR / "sim" / "sim_feed.py").read_text()
    c = {m[0]: int(m[1]) for m in re.findall(r"^(CH_\w+) = const\((\d+)\)", text, re.M)}
    assert c == {k: getattr(fleet, k) for k in c}
    assert len(c) == 7


@pytest.mark.unit
@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "too short"),
        (b"\x10" * 13, "too short"),
        (bytes(600), "too long"),
        (bytes(20), "CRC"),
    ],
)
def test_malformed_frames_are_rejected_with_a_reason(data, reason):
    with pytest.raises(p.FrameError, match=reason):
        p.decode_frame(data)


@pytest.mark.unit
def test_wrong_version_and_bad_auth_length():
    body = bytearray(p.encode_frame(p.Frame(p.Flag(0), 1, 2, 0, 0, 0, b"abcd")))
    body[0] = 0x20
    body[-2:] = p.crc16(bytes(body[:-2])).to_bytes(2, "little")
    with pytest.raises(p.FrameError, match="version 2"):
        p.decode_frame(bytes(body))
    short = bytearray(p.encode_frame(p.Frame(p.Flag(0), 1, 2, 0, 0, 0, b"ab")))
    short[0] |= p.Flag.AUTH
    short[-2:] = p.crc16(bytes(short[:-2])).to_bytes(2, "little")
    with pytest.raises(p.FrameError, match="tag"):
        p.decode_frame(bytes(short))


@pytest.mark.unit
def test_bad_payloads_name_the_problem():
    with pytest.raises(p.FrameError, match="odd"):
        p.pcm16_decode(b"abc")
    with pytest.raises(p.FrameError, match="index"):
        p.adpcm_decode(b"\x00\x00\x99\x12")
    with pytest.raises(p.FrameError, match="expected 4"):
        p.decode_status(b"\x00")
    with pytest.raises(p.FrameError):
        p.decode_tcb(b"\x01\x00\x00" + bytes(10))


@pytest.mark.unit
def test_max_payload_fits_both_mtus():
    assert p.max_payload(23, False) == 20 - p.HEADER_LEN - p.CRC_LEN
    assert p.max_payload(247, True) == 244 - p.HEADER_LEN - p.CRC_LEN - p.TAG_LEN
