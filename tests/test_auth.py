"""Frame authentication: HMAC-SHA256 written once for MicroPython and checked under both
interpreters, the device signing frames and the gateway verifying them, and every kind of bad
frame (tampered, replayed, unsigned, wrong key, wrong boot) rejected and counted."""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import struct
from pathlib import Path

import pytest

from gateway import protocol as p
from gateway.device import auth
from gateway.device.session import LinkStats
from tests.harness.micropython import FIRMWARE_LIB, run_micropython

MPY = Path(__file__).parent / "mpy" / "auth_check.py"
LIB = str(FIRMWARE_LIB)
KEY = bytes(range(100, 132))

# RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (6 and 7 use a 131-byte key, hashed first).
RFC4231 = [
    ("0b" * 20, b"Hi There".hex(),
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex(),
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("aa" * 20, "dd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)).hex(), "cd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ("aa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data. "
     b"The key needs to be hashed before being used by the HMAC algorithm.".hex(),
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]  # fmt: skip


def _vectors() -> list[tuple[str, str, str]]:
    out = list(RFC4231)
    for n_key, n_msg in [(0, 0), (1, 1), (32, 12), (64, 64), (65, 255), (32, 244)]:
        k = bytes((7 * i + n_key) & 0xFF for i in range(n_key))
        m = bytes((13 * i + n_msg) & 0xFF for i in range(n_msg))
        out.append((k.hex() or "00", m.hex() or "00", ""))
    return out


def _firmware_hmac_under_cpython():
    spec = importlib.util.spec_from_file_location("fw_hmac", FIRMWARE_LIB / "hmac_sha256.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.system
def test_hmac_sha256_matches_rfc4231_and_python_under_both_interpreters():
    vectors = _vectors()
    stdin = "".join(f"{k} {m}\n" for k, m, _ in vectors)
    mpy = run_micropython(MPY, LIB, "hmac", stdin=stdin).split()
    fw = _firmware_hmac_under_cpython()
    assert len(mpy) == len(vectors)
    for (k, m, expect), got in zip(vectors, mpy, strict=True):
        ref = hmac.new(bytes.fromhex(k), bytes.fromhex(m), hashlib.sha256).hexdigest()
        assert got == ref, (k, m)
        assert fw.hmac_sha256(bytes.fromhex(k), bytes.fromhex(m)).hex() == ref
        if expect:
            assert ref == expect
    assert fw.equal(b"abc", b"abc") and not fw.equal(b"abc", b"abd") and not fw.equal(b"a", b"")


def _control(payload: bytes, seq: int) -> bytes:
    return p.encode_frame(p.Frame(p.Flag(0), 0, p.Stream.CONTROL, 0, seq, 0, payload))


def _reseal(frame: bytearray) -> bytes:
    """Fix the CRC after an edit, as an attacker would: only the tag can catch it."""
    frame[-2:] = p.crc16(bytes(frame[:-2])).to_bytes(2, "little")
    return bytes(frame)


@pytest.fixture(scope="module")
def device_run():
    """The firmware's Link signs three frames, answers a challenge, and then gets commands:
    good ones, a replayed one, a tampered one and an unsigned one."""
    challenge = bytes.fromhex("c0ffee0011223344")
    # The script's nonces are fixed: boot nonce 0x41 * 8, then connection nonce 0x42 * 8.
    k_s = auth.session_key(KEY, 3, b"\x41" * 8)
    conn = b"\x42" * 8

    def signed(op, rid, args, seq):
        """A command as the gateway sends it: sealed under the connection nonce, signed."""
        sealed = auth.seal(auth.seal_key(k_s), conn, p.Stream.CONTROL, seq,
                           p.control_payload(op, rid, args))  # fmt: skip
        f = p.Frame(p.Flag(0), 0, p.Stream.CONTROL, 0, seq, 0, sealed)
        return auth.sign_frame(k_s, f, conn)

    sync = signed(p.Op.TIME_SYNC, 2, p.time_sync_args(1_700_000_000_000), 1)
    tampered = bytearray(signed(p.Op.STOP, 3, b"", 2))
    tampered[13] = p.Op.START  # turn a signed STOP into START
    writes = [
        _control(p.control_payload(p.Op.SESSION, 1, challenge), 1),
        sync,
        sync,  # replayed
        _reseal(tampered),
        _control(p.control_payload(p.Op.GET_INFO, 4), 3),  # unsigned
        signed(p.Op.RESEND, 5, p.resend_args(p.Stream.DOPPLER, 0, 74), 4),
    ]
    stdin = "".join(w.hex() + "\n" for w in writes)
    out = json.loads(run_micropython(MPY, LIB, "device", KEY.hex(), stdin=stdin))
    return challenge, [bytes.fromhex(h) for h in out["frames"]], out


@pytest.mark.system
def test_device_rejects_replayed_tampered_and_unsigned_commands(device_run):
    _, frames, out = device_run
    assert out["rejected"] == 3
    replies = [p.decode_reply(p.decode_frame(f).payload) for f in frames
               if p.decode_frame(f).stream == p.Stream.REPLY]  # fmt: skip
    assert [r.op for r in replies] == [p.Op.SESSION, p.Op.TIME_SYNC, p.Op.RESEND]
    assert replies[2].status == p.Status.OK
    assert out["room"] == p.max_payload(247, True)  # signed frames leave room for the tag


def _auth(challenge: bytes) -> tuple[auth.FrameAuth, LinkStats]:
    stats = LinkStats()
    a = auth.FrameAuth(KEY, stats)
    a.new_connection()
    a.challenge = challenge
    return a, stats


@pytest.mark.system
def test_firmware_signed_frames_verify_on_the_gateway(device_run):
    challenge, frames, _ = device_run
    a, stats = _auth(challenge)
    a.resend_asked(p.Stream.DOPPLER, 0, 74)  # the script's signed RESEND
    decoded = [p.decode_frame(f) for f in frames]
    assert all(f.tag is not None and f.flags & p.Flag.AUTH for f in decoded)
    admitted = []
    for f, raw in zip(decoded, frames, strict=True):
        admitted += a.admit(f, raw)
    # frames sent before the handshake were held, then released by the session reply
    assert [(f.stream, f.seq) for f in admitted[:4]] == [
        (p.Stream.REPLY, 1), (p.Stream.EVENT, 0), (p.Stream.DOPPLER, 0), (p.Stream.DOPPLER, 74)
    ]  # fmt: skip
    assert len(admitted) == len(frames)
    resent = decoded[-1]
    assert resent.resent and resent.seq == 0 and resent.tag == decoded[1].tag  # original tag
    # sealed on the air, opened by the gateway: the device sent bytes(range(40)) as Doppler
    assert decoded[1].payload != bytes(range(40)) == admitted[2].payload
    assert resent.payload == decoded[1].payload  # resealed under the same counter: same bytes
    assert (stats.auth_failed, stats.replayed, stats.unsigned) == (0, 0, 0)
    assert a.established and a.boot == 3


@pytest.mark.system
def test_frames_stored_before_a_new_key_are_resent_signed_with_it():
    """A device paired while running (a label or button pairing) holds frames stored before
    the new key: its store keeps them in clear, and they are sealed and signed as they leave,
    under the key of that moment. Resent after the pairing, the gateway, which only knows the
    new key, opens them without an authentication failure (no false 'unverified' alert, no
    reading lost)."""
    new_key = bytes(range(200, 232))
    challenge = bytes.fromhex("0011223344556677")
    # nonces: 0x41 * 8 for the old key's boot nonce, 0x42 * 8 after rekey, 0x43 * 8 connection
    k_s = auth.session_key(new_key, 3, b"\x42" * 8)
    ask = p.control_payload(p.Op.RESEND, 2, p.resend_args(p.Stream.DOPPLER, 0, 75))
    sealed = auth.seal(auth.seal_key(k_s), b"\x43" * 8, p.Stream.CONTROL, 1, ask)
    resend = p.Frame(p.Flag(0), 0, p.Stream.CONTROL, 0, 1, 0, sealed)
    writes = [_control(p.control_payload(p.Op.SESSION, 1, challenge), 1),
              auth.sign_frame(k_s, resend, b"\x43" * 8)]  # fmt: skip
    stdin = "".join(w.hex() + "\n" for w in writes)
    out = json.loads(run_micropython(MPY, LIB, "device", KEY.hex(), new_key.hex(), stdin=stdin))
    frames = [bytes.fromhex(h) for h in out["frames"]]
    stats = LinkStats()
    a = auth.FrameAuth(new_key, stats)
    a.new_connection()
    a.challenge = challenge
    a.resend_asked(p.Stream.DOPPLER, 0, 75)
    admitted = []
    for raw in frames:
        admitted += a.admit(p.decode_frame(raw), raw)
    assert [(f.stream, f.seq, f.resent) for f in admitted] == [
        (p.Stream.REPLY, 1, False), (p.Stream.REPLY, 2, False),
        (p.Stream.DOPPLER, 0, True), (p.Stream.DOPPLER, 74, True),
    ]  # fmt: skip
    assert admitted[2].payload == bytes(range(40)) and admitted[2].flags & p.Flag.ADPCM
    assert (stats.auth_failed, stats.replayed, stats.unsigned) == (0, 0, 0)


@pytest.mark.system
def test_resent_frames_replayed_outside_a_resend_request_are_refused(device_run):
    """An attacker who captured a genuine RESENT frame (its tag is valid: the tag does not
    cover the RESENT bit) replays it. It is taken only in answer to this connection's own
    RESEND for that range; at any other time, or on a later connection, it is a replay."""
    challenge, frames, _ = device_run
    a, stats = _auth(challenge)
    admitted = []
    for raw in frames[:-1]:  # the live frames and the replies, not the resent one
        admitted += a.admit(p.decode_frame(raw), raw)
    assert len(admitted) == len(frames) - 1 and a.established
    captured = frames[-1]  # the device's answer to a RESEND on some connection
    assert p.decode_frame(captured).resent and p.decode_frame(captured).seq == 0
    assert a.admit(p.decode_frame(captured), captured) == []  # nothing asked for it
    assert stats.replayed == 1
    a.resend_asked(p.Stream.PPG, 0, 100)  # another stream's range does not let it in
    a.resend_asked(p.Stream.DOPPLER, 1, 74)  # nor a range of its stream without its seq
    assert a.admit(p.decode_frame(captured), captured) == [] and stats.replayed == 2
    a.resend_asked(p.Stream.DOPPLER, 0, 74)  # this connection asks: the answer passes
    assert [f.seq for f in a.admit(p.decode_frame(captured), captured)] == [0]
    conn = a.conn_nonce
    a.new_connection()  # a new connection (its handshake done) has asked for nothing yet
    a.conn_nonce = conn
    assert a.admit(p.decode_frame(captured), captured) == [] and stats.replayed == 3
    assert stats.auth_failed == 0


@pytest.mark.system
def test_gateway_rejects_and_counts_bad_frames(device_run):
    challenge, frames, _ = device_run
    a, stats = _auth(challenge)
    for raw in frames[:4]:
        a.admit(p.decode_frame(raw), raw)
    doppler = frames[2]

    def admit(raw: bytes) -> list:
        return a.admit(p.decode_frame(raw), raw)

    assert admit(doppler) == [] and stats.replayed == 1  # the same frame again
    t = bytearray(frames[3])
    t[20] ^= 0x01  # one payload bit
    assert admit(_reseal(t)) == [] and stats.auth_failed == 1
    t = bytearray(frames[3])
    t[4:8] = struct.pack("<I", 9999)  # move it in time
    assert admit(_reseal(t)) == [] and stats.auth_failed == 2
    t = bytearray(frames[3])
    t[2:4] = struct.pack("<H", 4)  # claim another boot
    assert admit(_reseal(t)) == [] and stats.auth_failed == 3
    f = p.decode_frame(frames[3])
    stripped = p.encode_frame(p.Frame(f.flags & ~p.Flag.AUTH, f.device_type, f.stream, f.boot,
                                      f.seq + 1000, f.t_ms, f.payload))  # fmt: skip
    assert admit(stripped) == [] and stats.unsigned == 1
    forged = auth.sign_frame(bytes(32), p.Frame(p.Flag(0), 1, p.Stream.DOPPLER, 3, 5000, 0, b"x"))
    assert admit(forged) == [] and stats.auth_failed == 4
    # a genuine new frame still passes
    k_s = auth.session_key(KEY, 3, b"\x41" * 8)
    good = auth.sign_frame(k_s, p.Frame(p.Flag.ADPCM, 1, p.Stream.DOPPLER, 3, 148, 46, b"ok"))
    assert [x.seq for x in admit(good)] == [148]


@pytest.mark.system
def test_a_reply_to_an_old_challenge_or_with_the_wrong_key_does_not_open_a_session(device_run):
    challenge, frames, _ = device_run
    a, stats = _auth(b"\x00" * 8)  # this connection's challenge is not the one answered
    for raw in frames[:4]:
        assert a.admit(p.decode_frame(raw), raw) == []
    assert not a.established and stats.replayed == 1
    b = auth.FrameAuth(bytes(32), LinkStats())  # a gateway that enrolled another key
    b.new_connection()
    b.challenge = challenge
    assert b.admit(p.decode_frame(frames[3]), frames[3]) == []
    assert not b.established and b.stats.auth_failed == 1


@pytest.mark.unit
def test_held_frames_are_bounded_before_the_handshake():
    a, stats = _auth(b"\x01" * 8)
    k_s = auth.session_key(KEY, 1, b"\x02" * 8)
    for i in range(auth.MAX_HELD + 10):
        raw = auth.sign_frame(k_s, p.Frame(p.Flag(0), 1, p.Stream.STATUS, 1, i, 0, b"abcd"))
        assert a.admit(p.decode_frame(raw), raw) == []
    assert stats.auth_failed == 10


@pytest.mark.unit
def test_replay_window_forgets_only_beyond_its_size():
    a, stats = _auth(b"\x01" * 8)
    k_s = auth.session_key(KEY, 1, b"\x02" * 8)
    a.boot, a.key, a.conn_nonce = 1, k_s, b"\x03" * 8
    a.seal_key, a.boot_nonce = auth.seal_key(k_s), b"\x02" * 8
    frames = [
        auth.sign_frame(k_s, p.Frame(p.Flag(0), 1, p.Stream.STATUS, 1, i, 0, b"abcd"))
        for i in range(auth.REPLAY_WINDOW + 2)
    ]
    for raw in frames:
        assert len(a.admit(p.decode_frame(raw), raw)) == 1
    for raw in (frames[0], frames[1], frames[-1]):  # oldest (forgotten) and newest: all caught
        assert a.admit(p.decode_frame(raw), raw) == []
    assert stats.replayed == 3
