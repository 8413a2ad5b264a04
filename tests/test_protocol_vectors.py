"""The golden vectors of wire protocol v1 (docs/protocol-vectors.json), reproduced byte for byte
by the gateway under CPython and by the firmware under the real MicroPython, and the tables of
docs/protocol.md held to the constants of both sides.

The vectors are read, never regenerated: a codec that changes one byte fails here, and only a
deliberate change of the specification regenerates them (scripts/make_protocol_vectors.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gateway import protocol as p
from gateway.device import auth
from gateway.transports import simradio
from gateway.transports.serial import SlipDecoder, slip_encode
from tests.conftest import run_micropython

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[1]
VECTORS_PATH = REPO / "docs" / "protocol-vectors.json"
SPEC = (REPO / "docs" / "protocol.md").read_text()
MPY = Path(__file__).parent / "mpy" / "protocol_golden.py"
V = json.loads(VECTORS_PATH.read_text())
BLOCKS = {b["name"]: b for b in V["adpcm"]}
KEY = V["test_key"]
K_S = bytes.fromhex(KEY["session_key"])
K_E = bytes.fromhex(KEY["seal_key"])
RECORD_FRAMES = [f for r in V["records"] for f in r["frames"]]
ALL_NAMES = (
    ["crc_check", "version", "session_key"]
    + [v["name"] for v in V["frames"] + V["records"] + V["adpcm"] + V["signed"]]
    + [v["name"] for v in V["slip"] + V["invalid"]]
)


def _ids(vectors):
    return [v["name"] for v in vectors]


def test_the_file_is_v1_and_its_names_are_unique():
    assert V["protocol_version"] == p.VERSION
    assert isinstance(V["vectors_version"], int)
    names = ALL_NAMES + _ids(RECORD_FRAMES)
    assert len(names) == len(set(names))
    assert p.crc16(V["crc_check"]["ascii"].encode()) == int(V["crc_check"]["crc"], 16)


# ---- the gateway (CPython) ----


def _frame(v: dict) -> p.Frame:
    hd = v["header"]
    flags = p.Flag(0)
    for f in hd["flags"]:
        flags |= p.Flag[f]
    tag = bytes.fromhex(v["tag"]) if v["tag"] is not None else None
    return p.Frame(flags, p.DeviceType[hd["device_type"]], p.Stream[hd["stream"]], hd["boot"],
                   hd["seq"], hd["t_ms"], bytes.fromhex(v["payload"]), tag)  # fmt: skip


_CONTROL_ARGS = {
    "START": lambda f: p.start_args(f["stream_mask"]),
    "SET_RATE": lambda f: p.set_rate_args(p.Stream[f["stream"]], f["rate_hz"]),
    "TIME_SYNC": lambda f: p.time_sync_args(f["gateway_unix_ms"]),
    "RESEND": lambda f: p.resend_args(p.Stream[f["stream"]], f["from_seq"], f["to_seq"]),
    "SESSION": lambda f: bytes.fromhex(f["challenge"]),
    "FEEDBACK": lambda f: p.feedback_args(
        p.FeedbackLevel[f["level"]], sum(getattr(p, f"FEEDBACK_{x}") for x in f["flags"])
    ),
    "PAIR": lambda f: bytes((p.PairStep[f["step"]],)) + bytes.fromhex(f["data"]),
}


def _reply_fields(op: str, data: bytes) -> dict:
    if op == "TIME_SYNC":
        echoed, device_t_ms = p.decode_time_sync_reply(data)
        return {"gateway_unix_ms": echoed, "device_t_ms": device_t_ms}
    if op == "RESEND":
        stream, first, to_seq = p.decode_resend_reply(data)
        return {"stream": p.Stream(stream).name, "first_seq_still_held": first, "to_seq": to_seq}
    if op == "SESSION":
        n = p.NONCE_LEN
        assert len(data) == 3 * n + p.PEER_LEN
        return {"challenge": data[:n].hex(), "boot_nonce": data[n : 2 * n].hex(),
                "conn_nonce": data[2 * n : 3 * n].hex(), "peer": data[3 * n :].hex()}  # fmt: skip
    raise AssertionError(f"no reply fields for {op}")


def _check_content(c: dict, frame: p.Frame) -> None:
    """The gateway decodes the payload to the listed fields (and builds commands from them)."""
    kind, payload = c["kind"], frame.payload
    if kind == "pcm16":
        assert p.samples_of(frame).tolist() == c["samples"]
    elif kind == "adpcm":
        block = BLOCKS[c["block"]]
        assert payload.hex() == block["hex"]
        assert p.samples_of(frame).tolist() == block["decoded"]
    elif kind == "status":
        s = p.decode_status(payload)
        assert {k: getattr(s, k) for k in c if k != "kind"} == {k: c[k] for k in c if k != "kind"}
        assert p.is_whole_record(frame.stream, payload)
    elif kind == "tcb":
        _check_tcb(c, payload)
        assert p.is_whole_record(frame.stream, payload)
    elif kind == "info":
        assert json.loads(payload) == c["info"]
        assert p.is_whole_record(frame.stream, payload)
    elif kind == "event":
        assert list(payload) == [p.Event[c["event"]]]
        assert p.is_whole_record(frame.stream, payload)
    elif kind == "movement":
        assert p.decode_movement(payload) == c["number"]
        assert p.is_whole_record(frame.stream, payload)
    elif kind == "control":
        args = _CONTROL_ARGS[c["op"]](c["fields"]) if "fields" in c else b""
        assert p.control_payload(p.Op[c["op"]], c["request_id"], args) == payload
    elif kind == "reply":
        r = p.decode_reply(payload)
        assert (r.op, r.request_id, r.status) == (
            p.Op[c["op"]], c["request_id"], p.Status[c["status"]],
        )  # fmt: skip
        assert (_reply_fields(c["op"], r.data) if r.data else None) == c.get("fields")
    else:
        assert kind == "fragment", kind


def _check_tcb(c: dict, payload: bytes) -> None:
    t = p.decode_tcb(payload)
    for k in ("contact", "ambient_high", "saturated", "flashes_disagree"):
        assert getattr(t, k) is c[k], k
    assert t.temperature_c == c["temperature_centi_c"] / 100
    assert list(t.dark_before) == c["dark_before"] and list(t.dark_after) == c["dark_after"]
    assert list(t.led_drive) == c["led_drive"]
    np.testing.assert_array_equal(t.flashes, np.array(c["counts"], dtype=np.uint16))


def _check_frame(v: dict) -> None:
    data = bytes.fromhex(v["hex"])
    expected = _frame(v)
    assert p.decode_frame(data) == expected
    assert p.encode_frame(expected) == data
    assert p.crc16(data[:-2]) == int(v["crc"], 16) == struct.unpack("<H", data[-2:])[0]
    if "plaintext" in v:  # a sealed payload: its content is that of the plaintext
        expected = dataclasses.replace(expected, payload=bytes.fromhex(v["plaintext"]))
    _check_content(v["content"], expected)


@pytest.mark.parametrize("v", V["frames"] + RECORD_FRAMES, ids=_ids(V["frames"] + RECORD_FRAMES))
def test_gateway_decodes_and_encodes_each_frame(v):
    _check_frame(v)


@pytest.mark.parametrize("r", V["records"], ids=_ids(V["records"]))
def test_gateway_reassembles_each_record(r):
    frames = [p.decode_frame(bytes.fromhex(f["hex"])) for f in r["frames"]]
    assert [f.more for f in frames] == [True] * (len(frames) - 1) + [False]
    assert [f.seq for f in frames] == list(range(frames[0].seq, frames[0].seq + len(frames)))
    assert max(len(bytes.fromhex(f["hex"])) for f in r["frames"]) == r["att_mtu"] - 3
    record = b"".join(f.payload for f in frames)
    assert record.hex() == r["record"]
    _check_content(r["content"], dataclasses.replace(frames[-1], payload=record))


@pytest.mark.parametrize("b", V["adpcm"], ids=_ids(V["adpcm"]))
def test_gateway_decodes_each_adpcm_block(b):
    block = bytes.fromhex(b["hex"])
    assert list(struct.unpack_from("<hB", block)) == b["state_before"]
    assert len(b["samples"]) == len(b["decoded"]) == 2 * (len(block) - p.ADPCM_HEADER_LEN)
    assert p.adpcm_decode(block).tolist() == b["decoded"]
    # the encoder tracks the decoder: the state it ends in is the last sample decoded
    assert b["decoded"][-1] == b["state_after"][0]


def test_gateway_derives_the_session_key():
    label = KEY["session_label"].encode()
    assert label == auth.SESSION_LABEL
    key_input = label + struct.pack("<H", KEY["boot"]) + bytes.fromhex(KEY["boot_nonce"])
    assert key_input.hex() == KEY["session_key_input"]
    got = auth.session_key(bytes.fromhex(KEY["device_key"]), KEY["boot"],
                           bytes.fromhex(KEY["boot_nonce"]))  # fmt: skip
    assert got == K_S


def test_gateway_derives_the_seal_key():
    assert KEY["seal_label"].encode() == auth.SEAL_LABEL
    assert auth.seal_key(K_S) == K_E


@pytest.mark.parametrize("v", V["signed"], ids=_ids(V["signed"]))
def test_gateway_signs_and_verifies_each_signed_frame(v):
    _check_frame(v)
    data = bytes.fromhex(v["hex"])
    prefix = bytes.fromhex(KEY["conn_nonce"]) if v["header"]["stream"] == "CONTROL" else b""
    if "mac" in v:
        assert hmac.new(K_S, bytes.fromhex(v["mac_input"]), hashlib.sha256).hexdigest() == v["mac"]
        assert v["mac_input"].startswith(prefix.hex())
        assert v["tag"] == v["mac"][: 2 * p.TAG_LEN]
    assert (auth.frame_tag(K_S, data, prefix).hex() == v["tag"]) is v["verifies"]
    if v["verifies"]:
        assert auth.sign_frame(K_S, _frame(v), prefix) == data
    if "plaintext" in v:  # the seal: counter mode from the vector's counter blocks
        nonce = bytes.fromhex(KEY[v["seal_nonce"]])
        blocks = bytes.fromhex(v["counter_blocks"])
        assert blocks[:16] == nonce + struct.pack(">BIBH", p.Stream[v["header"]["stream"]],
                                                  v["header"]["seq"], 0, 0)  # fmt: skip
        assert len(blocks) == 16 * -(-len(v["plaintext"]) // 32)
        opened = auth.seal(K_E, nonce, p.Stream[v["header"]["stream"]], v["header"]["seq"],
                           bytes.fromhex(v["payload"]))  # fmt: skip
        assert opened.hex() == v["plaintext"]
    else:
        assert v["header"]["stream"] == "REPLY"  # only replies go unsealed


def test_gateway_handshake_and_commands_reproduce_the_signed_vectors():
    """The session as FrameAuth runs it: the device's signed reply to the test challenge
    starts it, signed device frames pass, and the commands it signs are the vectors' bytes."""
    stats = SimpleNamespace(unsigned=0, auth_failed=0, replayed=0)
    fa = auth.FrameAuth(bytes.fromhex(KEY["device_key"]), stats)
    fa.new_connection(bytes.fromhex(KEY["peer"]))  # the gateway's own address
    fa.challenge = bytes.fromhex(KEY["challenge"])  # the test's, in place of a random one
    by_name = {v["name"]: v for v in V["signed"]}
    reply = bytes.fromhex(by_name["signed-session-reply"]["hex"])
    assert fa.admit(p.decode_frame(reply), reply)
    assert fa.established and fa.conn_nonce.hex() == KEY["conn_nonce"]
    resent = bytes.fromhex(by_name["signed-doppler-adpcm-resent"]["hex"])
    for name in ("signed-status", "signed-doppler-adpcm", "signed-ppg"):
        data = bytes.fromhex(by_name[name]["hex"])
        (opened,) = fa.admit(p.decode_frame(data), data)
        assert opened.payload.hex() == by_name[name]["plaintext"], name
    assert not fa.admit(p.decode_frame(resent), resent)  # nobody asked for it: a replay
    fa.resend_asked(p.Stream.DOPPLER, 4000, 4001)
    assert fa.admit(p.decode_frame(resent), resent)
    stats.replayed -= 1
    for name in ("signed-command-feedback", "signed-command-resend"):
        payload = bytes.fromhex(by_name[name]["plaintext"])
        assert fa.control_frame(payload).hex() == by_name[name]["hex"], name
    assert vars(stats) == {"unsigned": 0, "auth_failed": 0, "replayed": 0}


@pytest.mark.parametrize("s", V["slip"], ids=_ids(V["slip"]))
def test_gateway_slip(s):
    wire = bytes.fromhex(s["wire"])
    dec = SlipDecoder()
    if "packet" in s:
        packet = bytes.fromhex(s["packet"])
        assert packet[0] == p.SerialKind[s["kind"]]
        assert slip_encode(packet) == wire
        assert dec.feed(wire) == [packet] and dec.errors == 0
    else:
        assert [x.hex() for x in dec.feed(wire)] == s["packets"] and dec.errors == s["dropped"]


def _decode_with(decoder: str, frame: p.Frame) -> None:
    if decoder == "samples":
        p.samples_of(frame)
    elif decoder == "status":
        p.decode_status(frame.payload)
    elif decoder == "tcb":
        p.decode_tcb(frame.payload)
    elif decoder == "movement":
        p.decode_movement(frame.payload)
    elif decoder == "reply":
        p.decode_reply(frame.payload)
    elif decoder == "time_sync_reply":
        p.decode_time_sync_reply(p.decode_reply(frame.payload).data)
    elif decoder == "resend_reply":
        p.decode_resend_reply(p.decode_reply(frame.payload).data)
    else:
        raise AssertionError(f"unknown decoder {decoder}")


@pytest.mark.parametrize("v", V["invalid"], ids=_ids(V["invalid"]))
def test_gateway_rejects_each_invalid_vector_with_its_reason(v):
    data = bytes.fromhex(v["hex"])
    with pytest.raises(p.FrameError) as err:
        if v["layer"] == "frame":
            p.decode_frame(data)
        else:
            _decode_with(v["decoder"], p.decode_frame(data))
    assert str(err.value) == v["error"]


# ---- the firmware (MicroPython) ----


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """One run of the firmware over every vector: its verdicts and its constants."""
    from simulators.fleet import FIRMWARE_DIR

    scratch = tmp_path_factory.mktemp("mpy") / "line.bin"
    out = run_micropython(MPY, str(FIRMWARE_DIR / "lib"), str(VECTORS_PATH), str(scratch),
                          heap="2M")  # fmt: skip
    return json.loads(out)


def test_firmware_checked_every_vector(firmware):
    assert sorted(firmware["results"]) == sorted(ALL_NAMES)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_firmware_reproduces(firmware, name):
    assert firmware["results"][name] == "ok"


# ---- docs/protocol.md against the constants of both sides ----


def _section(title: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    m = re.search(rf"^(#+) {re.escape(title)}\n", SPEC, re.M)
    assert m, f"no section {title!r} in docs/protocol.md"
    end = re.compile(rf"^#{{1,{len(m[1])}}} ", re.M).search(SPEC, m.end())
    return SPEC[m.end() : end.start() if end else len(SPEC)]


def _table(title: str) -> list[dict[str, str]]:
    """The first table of a section as rows of {column: cell}, backticks dropped."""
    text = _section(title)
    start = text.index("\n|") + 1
    end = text.find("\n\n", start)
    lines = text[start : end if end >= 0 else len(text)].splitlines()
    rows = [[c.replace("`", "").strip() for c in re.split(r"(?<!\\)\|", ln[1:-1])]
            for ln in lines]  # fmt: skip
    head, body = rows[0], rows[2:]
    assert all(len(r) == len(head) for r in body), title
    return [dict(zip(head, r, strict=True)) for r in body]


def _prose(title: str) -> str:
    """A section's text with its line breaks and runs of spaces made single spaces."""
    return " ".join(_section(title).split())


def _numbered(text: str) -> dict[int, str]:
    """'1 boot, 2 contact on, ...' or '0x01 contact ...' -> {number: description}."""
    parts = re.findall(r"(0x[0-9A-Fa-f]+|\d+)\s+([^,;)]+)", text)
    return {int(n, 0): " ".join(d.split()) for n, d in parts}


def _described(consts: dict[str, int], doc: dict[int, str], words: dict[str, str]) -> None:
    """The documented numbers are the constants' values, each described by its word."""
    assert sorted(consts.values()) == sorted(doc)
    for name, value in consts.items():
        assert words[name] in doc[value], (name, doc[value])


def _fw(firmware, prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in firmware["constants"].items() if k.startswith(prefix)}


def _named(rows: list[dict[str, str]], number: str, name: str) -> dict[str, int]:
    return {r[name].split()[-1]: int(r[number].split()[0], 0) for r in rows}


def test_spec_flags_table(firmware):
    doc = {r["name"]: int(r["bit"], 16) for r in _table("Flags")}
    assert doc == {f.name: f.value for f in p.Flag} == _fw(firmware, "F_")


def test_spec_streams_table(firmware):
    rows = _table("Streams and sequence numbers")
    doc = {r["stream"]: int(r["id"]) for r in rows}
    assert doc == {s.name: s.value for s in p.Stream} == _fw(firmware, "S_")
    counts_samples = {p.Stream[r["stream"]] for r in rows if r["seq counts"].startswith("samples")}
    assert counts_samples == p.SAMPLE_STREAMS
    rates = dict(re.findall(r"(Doppler|PPG) (\d+) Hz", _prose("Streams and sequence numbers")))
    assert {p.Stream[k.upper()]: int(v) for k, v in rates.items()} == p.NOMINAL_RATE_HZ


def test_spec_device_types_table(firmware):
    doc = {int(r["value"]): r["device"] for r in _table("Device types")}
    words = {"GATEWAY": "gateway", "FETAL_HEART": "fetal-heart", "JAUNDICE": "jaundice"}
    _described({d.name: d.value for d in p.DeviceType}, doc, words)
    _described(_fw(firmware, "DT_"), doc, words)


def test_spec_event_codes(firmware):
    row = next(r for r in _table("Streams and sequence numbers") if r["stream"] == "EVENT")
    doc = _numbered(row["payload"].split("(", 1)[1])
    words = {"BOOT": "boot", "CONTACT_ON": "contact on", "CONTACT_OFF": "contact off",
             "BATTERY_LOW": "battery low", "GAP": "samples lost",
             "MOVEMENT": "fetal movement marked"}  # fmt: skip
    _described({e.name: e.value for e in p.Event}, doc, words)
    _described(_fw(firmware, "EV_"), doc, words)


def test_spec_status_bits():
    row = next(r for r in _table("Streams and sequence numbers") if r["stream"] == "STATUS")
    bits = dict(re.findall(r"bit(\d) ([a-z ]+)", row["payload"]))
    for bit, words in bits.items():
        field = words.strip().replace(" ", "_")
        s = p.decode_status(struct.pack("<HBB", 3900, 50, 1 << int(bit)))
        assert getattr(s, field) is True, (bit, field)
    assert len(bits) == 3


def test_spec_tcb_bits(firmware):
    text = _prose("TCB record").split("`bits`:", 1)[1].split(".", 1)[0]
    doc = _numbered(text)
    words = {"CONTACT": ("contact", "contact"), "AMBIENT": ("ambient", "ambient_high"),
             "SATURATED": ("saturation", "saturated"),
             "DISAGREE": ("disagree", "flashes_disagree")}  # fmt: skip
    _described(_fw(firmware, "TCB_"), doc, {k: w for k, (w, _) in words.items()})
    for name, bit in _fw(firmware, "TCB_").items():
        field = words[name][1]
        record = struct.pack("<Bh4HBBHHH", bit, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0)
        assert getattr(p.decode_tcb(record), field) is True


def test_spec_control_opcodes_table(firmware):
    doc = {r["name"]: int(r["op"]) for r in _table("Control channel")}
    assert doc == {o.name: o.value for o in p.Op} == _fw(firmware, "OP_")


def test_spec_reply_status_codes(firmware):
    text = re.search(r"\(status (0 .*?)\)", _prose("Control channel"))[1]
    doc = {d.upper().replace(" ", "_"): n for n, d in _numbered(text).items()}
    assert doc == {s.name: s.value for s in p.Status} == _fw(firmware, "ST_")


def test_spec_feedback_levels_and_flags(firmware):
    row = next(r for r in _table("Control channel") if r["name"] == "FEEDBACK")
    levels = _numbered(re.search(r"level (0 .*?);", row["args"])[1])
    doc = {d.upper(): n for n, d in levels.items()}
    assert doc == {lv.name: lv.value for lv in p.FeedbackLevel} == _fw(firmware, "FB_")
    flags = _numbered(re.search(r"flags (0x.*)", row["args"])[1])
    words = {"COMPLETE": "complete", "MUTE": "sound off", "MATERNAL": "mother's pulse"}
    _described({k: getattr(p, f"FEEDBACK_{k}") for k in words}, flags, words)
    _described(_fw(firmware, "FBF_"), flags, words)


def test_spec_pairing_steps_table(firmware):
    doc = _named(_table("Pairing"), "step", "step")
    assert doc == {s.name: s.value for s in p.PairStep} == _fw(firmware, "PS_")


def test_spec_serial_kinds_and_slip_bytes(firmware):
    doc = _named(_table("USB serial"), "kind", "kind")
    assert doc == {k.name: k.value for k in p.SerialKind} == _fw(firmware, "SER_")
    text = _prose("USB serial")
    end, esc = (int(x, 16) for x in re.search(r"END `(0x..)`.*?ESC `(0x..)`", text).groups())
    esc_end = re.search(r"END is sent as `0x.. (0x..)`", text)[1]
    esc_esc = re.search(r"ESC `0x..` as `0x.. (0x..)`", text)[1]
    doc_slip = {"END": end, "ESC": esc, "ESC_END": int(esc_end, 16), "ESC_ESC": int(esc_esc, 16)}
    assert doc_slip == {k: getattr(p, f"SLIP_{k}") for k in doc_slip} == _fw(firmware, "SLIP_")
    mtu = int(re.search(r"`u16 SERIAL_LINK_MTU` \((\d+)\)", text)[1])
    assert mtu == p.SERIAL_LINK_MTU == firmware["constants"]["SERIAL_LINK_MTU"]


def test_spec_simulated_radio_kinds_table(firmware):
    doc = _named(_table("Simulated radio link"), "kind", "kind")
    assert doc == {k: getattr(simradio, f"L_{k}") for k in doc} == _fw(firmware, "radio_sim.L_")


def test_spec_frame_layout(firmware):
    rows = {r["field"]: r for r in _table("Frame")}
    fw = firmware["constants"]
    offset = 0
    for field, fmt in zip(("ver_flags", "dev_stream", "boot", "seq", "t_ms"), "BBHII", strict=True):
        assert (int(rows[field]["offset"]), int(rows[field]["size"])) == (
            offset, struct.calcsize("<" + fmt),
        ), field  # fmt: skip
        offset += struct.calcsize("<" + fmt)
    assert int(rows["payload"]["offset"]) == offset == p.HEADER_LEN == fw["HEADER_LEN"]
    assert int(rows["tag"]["size"]) == p.TAG_LEN == fw["TAG_LEN"]
    assert int(rows["crc"]["size"]) == p.CRC_LEN == fw["CRC_LEN"]
    text = _prose("Frame")
    overhead, signed = map(int, re.search(r"Overhead is (\d+) bytes \((\d+) with", text).groups())
    assert (overhead, signed) == (p.HEADER_LEN + p.CRC_LEN, p.HEADER_LEN + p.CRC_LEN + p.TAG_LEN)
    assert int(re.search(r"`ATT_MTU - (\d+)`", text)[1]) == p.ATT_OVERHEAD == fw["ATT_OVERHEAD"]
    low, high = map(int, re.search(r"accepts any frame from (\d+) to (\d+) bytes", text).groups())
    assert low == overhead and high == p.MAX_FRAME_LEN == fw["MAX_FRAME_LEN"]


def test_spec_authentication_sizes_and_label(firmware):
    rows = {r["symbol"]: r["meaning"] for r in _table("Authentication")}
    fw = firmware["constants"]
    assert re.match(r"the device key: (\d+) random bytes", rows["K"])[1] == str(p.KEY_LEN)
    assert fw["KEY_LEN"] == p.KEY_LEN
    for nonce in ("boot_nonce", "conn_nonce"):
        assert re.match(r"(\d+) random bytes", rows[nonce])[1] == str(p.NONCE_LEN)
    assert fw["NONCE_LEN"] == p.NONCE_LEN
    assert re.match(r"first (\d+) bytes", rows["tag"])[1] == str(p.TAG_LEN)
    label = re.search(r'"([^"]+)"', rows["K_s"])[1].encode()
    length = int(re.search(r"the label is (\d+) ASCII bytes", rows["K_s"])[1])
    # the firmware's label is checked against the vectors' by the MicroPython run
    assert label == auth.SESSION_LABEL == KEY["session_label"].encode() and len(label) == length
    secret = int(re.search(r"a (\d+)-byte random \*\*pairing secret\*\*", _prose("Pairing"))[1])
    assert secret == p.PAIR_SECRET_LEN == fw["PAIR_SECRET_LEN"]


def test_spec_seal_label_and_counter_block():
    rows = {r["symbol"]: r["meaning"] for r in _table("Confidentiality")}
    label = re.search(r'"([^"]+)"', rows["K_e"])[1]
    length = int(re.search(r"the label is (\d+) ASCII bytes", rows["K_e"])[1])
    assert label.encode() == auth.SEAL_LABEL == KEY["seal_label"].encode() and len(label) == length
    block = rows["counter block i"]
    assert "nonce (8 bytes)" in block and "u8 stream" in block and "u32 seq" in block
    assert p.NONCE_LEN + 1 + 4 + 3 == 16  # one AES block
