"""Write docs/protocol-vectors.json, the golden byte vectors of wire protocol v1.

    python scripts/make_protocol_vectors.py [--out docs/protocol-vectors.json]

Run this only when the specification (docs/protocol.md) deliberately changes, and bump
VECTORS_VERSION when you do. The file is the reference both codecs are tested against
(tests/test_protocol_vectors.py); the tests read it and never regenerate it, so a change in
either codec that alters a single byte fails them instead of silently moving the reference.

Everything is built here from the specification alone (struct layouts, a bitwise CRC, the IMA
ADPCM coder, the standard library's HMAC, the seal's counter blocks through the AES block cipher
of the `cryptography` package, SLIP by RFC 1055), not with either codec, so the file
is an independent statement of the protocol; before writing, the gateway's decoders are checked
to agree with it.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "protocol-vectors.json"
# 2: the SESSION reply names the central (peer); 3: payloads of signed frames are sealed;
# 4: the movement mark event (6)
VECTORS_VERSION = 4
PROTOCOL_VERSION = 1

FLAGS = {"AUTH": 0x01, "ADPCM": 0x02, "RESENT": 0x04, "MORE": 0x08}
DEVICE_TYPES = {"GATEWAY": 0, "FETAL_HEART": 1, "JAUNDICE": 2}
STREAMS = {"DOPPLER": 0, "PPG": 1, "STATUS": 2, "TCB": 3, "INFO": 4, "EVENT": 5,
           "CONTROL": 30, "REPLY": 31}  # fmt: skip
OPS = {"START": 1, "STOP": 2, "SET_RATE": 3, "TIME_SYNC": 4, "RESEND": 5, "GET_INFO": 6,
       "MEASURE": 7, "SESSION": 8, "FEEDBACK": 9, "PAIR": 10}  # fmt: skip
STATUS = {"OK": 0, "BAD_REQUEST": 1, "UNSUPPORTED": 2, "UNAVAILABLE": 3}
EVENTS = {"BOOT": 1, "CONTACT_ON": 2, "CONTACT_OFF": 3, "BATTERY_LOW": 4, "GAP": 5,
          "MOVEMENT": 6}  # fmt: skip
FEEDBACK_LEVELS = {"SEARCHING": 0, "WEAK": 1, "GOOD": 2}
FEEDBACK_FLAGS = {"COMPLETE": 0x01, "MUTE": 0x02, "MATERNAL": 0x04}
PAIR_STEPS = {"COMMIT": 1, "GET": 2, "REVEAL": 3, "CONFIRM": 4, "LABEL_COMMIT": 5}
SERIAL_KINDS = {"HELLO": 1, "LINK_UP": 2, "FRAME": 3, "WRITE": 4, "WHO": 5}
TCB_BITS = {"contact": 0x01, "ambient_high": 0x02, "saturated": 0x04, "flashes_disagree": 0x08}
SEQ_END = 0xFFFFFFFF
MAX_FRAME_LEN = 509
SERIAL_LINK_MTU = 512

# The test key and nonces: published here, so never provisioned on a real device.
TEST_KEY = bytes(range(32))
TEST_BOOT = 7
TEST_BOOT_NONCE = bytes.fromhex("a0a1a2a3a4a5a6a7")
TEST_CHALLENGE = bytes.fromhex("5c5c5c5c01020304")
TEST_CONN_NONCE = bytes.fromhex("b0b1b2b3b4b5b6b7")
TEST_PEER = bytes.fromhex("001a7dda7113")  # the central's address as the device's radio gives it
SESSION_LABEL = b"perimon-v1 session"
SEAL_LABEL = b"perimon-v1 seal"


# ---- the codec, from the specification ----


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, bit by bit: poly 0x1021, init 0xFFFF, no reflection, no final xor."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def header(flags, device_type, stream, boot, seq, t_ms) -> bytes:
    bits = sum(FLAGS[f] for f in flags)
    dev_stream = (DEVICE_TYPES[device_type] << 5) | STREAMS[stream]
    return struct.pack("<BBHII", (PROTOCOL_VERSION << 4) | bits, dev_stream, boot, seq, t_ms)


def frame_bytes(h: dict, payload: bytes, tag: bytes | None = None) -> bytes:
    body = header(**h) + payload + (tag or b"")
    return body + struct.pack("<H", crc16(body))


_STEPS = (
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60,
    66, 73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371,
    408, 449, 494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552, 1707,
    1878, 2066, 2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484,
    7132, 7845, 8630, 9493, 10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385,
    24623, 27086, 29794, 32767,
)  # fmt: skip
_INDEX_ADJ = (-1, -1, -1, -1, 2, 4, 6, 8)


def _ima_step(pred: int, index: int, code: int) -> tuple[int, int]:
    """The decoder's update for one 4-bit code; the encoder runs the same to stay in step."""
    step = _STEPS[index]
    delta = step >> 3
    if code & 4:
        delta += step
    if code & 2:
        delta += step >> 1
    if code & 1:
        delta += step >> 2
    pred = max(-32768, min(32767, pred - delta if code & 8 else pred + delta))
    return pred, max(0, min(88, index + _INDEX_ADJ[code & 7]))


def adpcm_encode(samples: list[int], pred: int, index: int) -> tuple[bytes, int, int]:
    """IMA ADPCM block: header (state before), codes low nibble first; and the state after."""
    out = bytearray(struct.pack("<hB", pred, index))
    codes = []
    for s in samples:
        step = _STEPS[index]
        diff = s - pred
        code = 8 if diff < 0 else 0
        diff = abs(diff)
        for bit in (4, 2, 1):
            if diff >= step:
                code |= bit
                diff -= step
            step >>= 1
        codes.append(code)
        pred, index = _ima_step(pred, index, code)
    for lo, hi in zip(codes[0::2], codes[1::2], strict=True):
        out.append(lo | (hi << 4))
    return bytes(out), pred, index


def adpcm_decode(block: bytes) -> list[int]:
    pred, index = struct.unpack_from("<hB", block)
    out = []
    for byte in block[3:]:
        for code in (byte & 0x0F, byte >> 4):
            pred, index = _ima_step(pred, index, code)
            out.append(pred)
    return out


def slip(packet: bytes) -> bytes:
    body = packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


def mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


SESSION_KEY = mac(TEST_KEY, SESSION_LABEL + struct.pack("<H", TEST_BOOT) + TEST_BOOT_NONCE)
SEAL_KEY = mac(SESSION_KEY, SEAL_LABEL)


def counter_blocks(nonce: bytes, stream: str, seq: int, n: int) -> bytes:
    """The seal's counter blocks for n bytes: nonce, u8 stream, u32 seq, u24 block index,
    big-endian."""
    return b"".join(nonce + struct.pack(">BI", STREAMS[stream], seq) + i.to_bytes(3, "big")
                    for i in range((n + 15) // 16))  # fmt: skip


def sealed(nonce: bytes, stream: str, seq: int, data: bytes) -> bytes:
    """data XOR AES-256(K_e, counter blocks): the blocks through the bare block cipher (ECB)."""
    blocks = counter_blocks(nonce, stream, seq, len(data))
    keystream = Cipher(algorithms.AES(SEAL_KEY), modes.ECB()).encryptor().update(blocks)
    return bytes(a ^ b for a, b in zip(data, keystream, strict=False))


# ---- payloads ----


def status_payload(c: dict) -> bytes:
    bits = (1 if c["on_skin"] else 0) | (2 if c["charging"] else 0) | (4 if c["battery_low"] else 0)
    return struct.pack("<HBB", c["battery_mv"], c["battery_pct"], bits)


def tcb_payload(c: dict) -> bytes:
    bits = sum(v for k, v in TCB_BITS.items() if c[k])
    n_led, n_flash = len(c["counts"]), len(c["counts"][0][0])
    out = struct.pack("<Bh4HBB", bits, c["temperature_centi_c"], *c["dark_before"],
                      *c["dark_after"], n_led, n_flash)  # fmt: skip
    out += struct.pack(f"<{n_led}H", *c["led_drive"])
    for led in c["counts"]:
        for det in led:
            out += struct.pack(f"<{n_flash}H", *det)
    return out


CONTROL_ARGS = {
    "START": lambda f: struct.pack("<I", f["stream_mask"]),
    "SET_RATE": lambda f: struct.pack("<BH", STREAMS[f["stream"]], f["rate_hz"]),
    "TIME_SYNC": lambda f: struct.pack("<Q", f["gateway_unix_ms"]),
    "RESEND": lambda f: struct.pack("<BII", STREAMS[f["stream"]], f["from_seq"], f["to_seq"]),
    "SESSION": lambda f: bytes.fromhex(f["challenge"]),
    "FEEDBACK": lambda f: bytes(
        (FEEDBACK_LEVELS[f["level"]], sum(FEEDBACK_FLAGS[x] for x in f["flags"]))
    ),
    "PAIR": lambda f: bytes((PAIR_STEPS[f["step"]],)) + bytes.fromhex(f["data"]),
}
REPLY_DATA = {
    "TIME_SYNC": lambda f: struct.pack("<QI", f["gateway_unix_ms"], f["device_t_ms"]),
    "RESEND": lambda f: struct.pack(
        "<BII", STREAMS[f["stream"]], f["first_seq_still_held"], f["to_seq"]
    ),
    "SESSION": lambda f: bytes.fromhex(
        f["challenge"] + f["boot_nonce"] + f["conn_nonce"] + f["peer"]
    ),
}


def content_payload(c: dict, adpcm_blocks: dict) -> bytes:
    kind = c["kind"]
    if kind == "pcm16":
        return struct.pack(f"<{len(c['samples'])}h", *c["samples"])
    if kind == "adpcm":
        return bytes.fromhex(adpcm_blocks[c["block"]]["hex"])
    if kind == "status":
        return status_payload(c)
    if kind == "tcb":
        return tcb_payload(c)
    if kind == "info":
        return json.dumps(c["info"], separators=(",", ":")).encode()
    if kind == "event":
        return bytes((EVENTS[c["event"]],))
    if kind == "movement":
        return struct.pack("<BH", EVENTS["MOVEMENT"], c["number"])
    if kind == "control":
        args = CONTROL_ARGS[c["op"]](c["fields"]) if "fields" in c else b""
        return bytes((OPS[c["op"]], c["request_id"])) + args
    if kind == "reply":
        data = REPLY_DATA[c["op"]](c["fields"]) if "fields" in c else b""
        return bytes((OPS[c["op"]], c["request_id"], STATUS[c["status"]])) + data
    raise ValueError(kind)


def hdr(flags, device_type, stream, boot, seq, t_ms) -> dict:
    return {"flags": list(flags), "device_type": device_type, "stream": stream, "boot": boot,
            "seq": seq, "t_ms": t_ms}  # fmt: skip


def frame_entry(name, note, h, payload, content, tag=None) -> dict:
    data = frame_bytes(h, payload, tag)
    if tag is not None and "AUTH" not in h["flags"]:
        raise ValueError(f"{name}: a tag needs the AUTH flag")
    entry = {"name": name, "note": note, "hex": data.hex(), "header": h, "payload": payload.hex()}
    entry["tag"] = tag.hex() if tag is not None else None
    entry["crc"] = f"0x{crc16(data[:-2]):04x}"
    entry["content"] = content
    return entry


# ---- the vectors ----


def tone(n: int, start: int = 0, amp: int = 8000, hz: int = 300, rate: int = 4000) -> list[int]:
    return [round(amp * math.sin(2 * math.pi * hz * (start + i) / rate)) for i in range(n)]


def adpcm_vectors() -> list[dict]:
    cases = [
        ("silence-from-rest", "Silence from the initial state: every code 0, the step index "
         "stays at its floor of 0.", [0] * 8, 0, 0),
        ("tone-from-rest", "A 300 Hz tone at 4 kHz from the initial state (0, 0): the step "
         "index climbs as the coder adapts.", tone(64), 0, 0),
        ("tone-continued", "The next 64 samples of the same tone, starting from the state the "
         "previous block ended in, as the device carries it from frame to frame.",
         tone(64, 64), None, None),
        ("full-scale-square", "A full-scale square wave: the predictor clamps at 32767 and "
         "-32768 and the step index at 88.",
         [32767] * 6 + [-32768] * 6 + [32767] * 4 + [0] * 4, 0, 60),
        ("mid-state", "Small noise from a mid-stream state (-1200, 40): the header restates "
         "that state, so the block decodes on its own.",
         [-1180, -1250, -1300, -1210, -1190, -1100, -1150, -1225, -1240, -1199], -1200, 40),
    ]  # fmt: skip
    out = []
    pred = index = 0
    for name, note, samples, p0, i0 in cases:
        if p0 is not None:
            pred, index = p0, i0
        block, p1, i1 = adpcm_encode(samples, pred, index)
        decoded = adpcm_decode(block)
        assert decoded[-1] == p1, name  # the encoder's state is the decoder's last output
        out.append({"name": name, "note": note, "state_before": [pred, index],
                    "samples": samples, "hex": block.hex(), "state_after": [p1, i1],
                    "decoded": decoded})  # fmt: skip
        pred, index = p1, i1
    return out


FETAL_INFO = {"id": "fhm-0001", "type": "fetal_heart", "firmware": "1.0.0", "boot": 2,
              "rates_hz": {"doppler": 4000, "ppg": 50}, "doppler_encoding": "adpcm",
              "resend_buffer_bytes": 22528}  # fmt: skip
JAUNDICE_INFO = {"id": "jm-0001", "type": "jaundice", "firmware": "1.0.0", "boot": 3}
TCB_6X5 = {
    "kind": "tcb", "contact": True, "ambient_high": False, "saturated": False,
    "flashes_disagree": False, "temperature_centi_c": 3125, "dark_before": [12, 13],
    "dark_after": [14, 15], "led_drive": [100, 110, 120, 130, 140, 150],
    "counts": [[[1000 + 100 * led + 10 * det + f for f in range(5)] for det in range(2)]
               for led in range(6)],
}  # fmt: skip
TCB_FLAGGED = {
    "kind": "tcb", "contact": False, "ambient_high": True, "saturated": True,
    "flashes_disagree": True, "temperature_centi_c": -525, "dark_before": [0, 65535],
    "dark_after": [1, 65534], "led_drive": [1], "counts": [[[65535], [0]]],
}  # fmt: skip


def frame_vectors(adpcm: dict) -> list[dict]:
    fh, jm, gw = "FETAL_HEART", "JAUNDICE", "GATEWAY"
    specs = [
        # fetal-heart monitor: samples
        ("fetal-doppler-pcm16", "PCM16 Doppler: seq is the index of the first sample since "
         "boot, t_ms the time of that sample; full-scale values at both ends.",
         hdr([], fh, "DOPPLER", 2, 4000, 1000),
         {"kind": "pcm16", "samples": [0, 1, -1, 12345, -12345, 32767, -32768, 256]}),
        ("fetal-doppler-adpcm", "ADPCM Doppler: the payload is the ADPCM block 'tone-from-rest'.",
         hdr(["ADPCM"], fh, "DOPPLER", 2, 0, 0), {"kind": "adpcm", "block": "tone-from-rest"}),
        ("fetal-doppler-adpcm-resent", "The same frame sent again in answer to RESEND: only "
         "the RESENT flag and the CRC differ.",
         hdr(["ADPCM", "RESENT"], fh, "DOPPLER", 2, 0, 0),
         {"kind": "adpcm", "block": "tone-from-rest"}),
        ("fetal-ppg-at-mtu-23", "PPG at BLE's minimum ATT MTU of 23: 20 bytes, 3 samples.",
         hdr([], fh, "PPG", 2, 50, 1000), {"kind": "pcm16", "samples": [1, -2, 3]}),
        # fetal-heart monitor: records
        ("fetal-status", "Status: 3900 mV, 71 %, on skin.",
         hdr([], fh, "STATUS", 2, 3, 15000),
         {"kind": "status", "battery_mv": 3900, "battery_pct": 71, "on_skin": True,
          "charging": False, "battery_low": False}),
        ("fetal-status-charging-low", "Status: charging, battery low, off the skin.",
         hdr([], fh, "STATUS", 2, 4, 20000),
         {"kind": "status", "battery_mv": 3300, "battery_pct": 4, "on_skin": False,
          "charging": True, "battery_low": True}),
        ("fetal-info", "Device info in one frame (a larger MTU).",
         hdr([], fh, "INFO", 2, 0, 5), {"kind": "info", "info": FETAL_INFO}),
        ("fetal-event-boot", "Event: the device started.",
         hdr([], fh, "EVENT", 2, 0, 0), {"kind": "event", "event": "BOOT"}),
        ("fetal-event-contact-on", "Event: the probe touched the skin.",
         hdr([], fh, "EVENT", 2, 1, 2500), {"kind": "event", "event": "CONTACT_ON"}),
        ("fetal-event-contact-off", "Event: the probe came off.",
         hdr([], fh, "EVENT", 2, 2, 9000), {"kind": "event", "event": "CONTACT_OFF"}),
        ("fetal-event-battery-low", "Event: battery low.",
         hdr([], fh, "EVENT", 2, 3, 9500), {"kind": "event", "event": "BATTERY_LOW"}),
        ("fetal-event-gap", "Event: samples were lost on the device before they were buffered.",
         hdr([], fh, "EVENT", 2, 4, 9600), {"kind": "event", "event": "GAP"}),
        ("fetal-event-movement", "Event: the mother marked a fetal movement, her third of the "
         "boot; t_ms is when she began to press.",
         hdr([], fh, "EVENT", 2, 5, 12345), {"kind": "movement", "number": 3}),
        ("fetal-event-movement-resent", "The same mark resent after an outage: its t_ms is "
         "still when she pressed.",
         hdr(["RESENT"], fh, "EVENT", 2, 5, 12345), {"kind": "movement", "number": 3}),
        ("fetal-event-movement-last", "The 65535th mark of a boot, the largest number.",
         hdr([], fh, "EVENT", 2, 70000, 86400000), {"kind": "movement", "number": 65535}),
        ("fetal-event-header-limits", "Every header field at its largest: boot 65535, seq and "
         "t_ms 2^32-1.", hdr([], fh, "EVENT", 65535, 0xFFFFFFFF, 0xFFFFFFFF),
         {"kind": "event", "event": "BOOT"}),
        # jaundice meter
        ("jaundice-tcb", "A TcB record, six LEDs by five flashes (145 bytes), in one frame.",
         hdr([], jm, "TCB", 3, 9, 5000), TCB_6X5),
        ("jaundice-tcb-flagged", "A TcB record of one LED and one flash, every quality bit "
         "set, below freezing, counts at both ends of their range.",
         hdr([], jm, "TCB", 3, 10, 6000), TCB_FLAGGED),
        ("jaundice-status", "Status of the jaundice meter.",
         hdr([], jm, "STATUS", 3, 0, 100),
         {"kind": "status", "battery_mv": 4100, "battery_pct": 100, "on_skin": False,
          "charging": True, "battery_low": False}),
        ("jaundice-info", "Device info of the jaundice meter.",
         hdr([], jm, "INFO", 3, 0, 50), {"kind": "info", "info": JAUNDICE_INFO}),
        ("jaundice-event-boot", "Event: the meter started.",
         hdr([], jm, "EVENT", 3, 0, 0), {"kind": "event", "event": "BOOT"}),
        # control: gateway -> device (seq is the gateway's request counter)
        ("control-start", "START every stream.", hdr([], gw, "CONTROL", 0, 1, 0),
         {"kind": "control", "op": "START", "request_id": 1,
          "fields": {"stream_mask": 0xFFFFFFFF}}),
        ("control-stop", "STOP.", hdr([], gw, "CONTROL", 0, 2, 0),
         {"kind": "control", "op": "STOP", "request_id": 2}),
        ("control-set-rate", "SET_RATE of PPG to 100 Hz.", hdr([], gw, "CONTROL", 0, 3, 0),
         {"kind": "control", "op": "SET_RATE", "request_id": 3,
          "fields": {"stream": "PPG", "rate_hz": 100}}),
        ("control-time-sync", "TIME_SYNC with the gateway's wall time.",
         hdr([], gw, "CONTROL", 0, 4, 0),
         {"kind": "control", "op": "TIME_SYNC", "request_id": 4,
          "fields": {"gateway_unix_ms": 1700000000123}}),
        ("control-resend-range", "RESEND Doppler samples [10, 4010).",
         hdr([], gw, "CONTROL", 0, 5, 0),
         {"kind": "control", "op": "RESEND", "request_id": 5,
          "fields": {"stream": "DOPPLER", "from_seq": 10, "to_seq": 4010}}),
        ("control-resend-to-end", "RESEND every TcB record still held from seq 7 on.",
         hdr([], gw, "CONTROL", 0, 6, 0),
         {"kind": "control", "op": "RESEND", "request_id": 6,
          "fields": {"stream": "TCB", "from_seq": 7, "to_seq": SEQ_END}}),
        ("control-get-info", "GET_INFO.", hdr([], gw, "CONTROL", 0, 7, 0),
         {"kind": "control", "op": "GET_INFO", "request_id": 7}),
        ("control-measure", "MEASURE (jaundice meter).", hdr([], gw, "CONTROL", 0, 8, 0),
         {"kind": "control", "op": "MEASURE", "request_id": 8}),
        ("control-session", "SESSION with the test challenge: the one command a provisioned "
         "device takes unsigned.", hdr([], gw, "CONTROL", 0, 9, 0),
         {"kind": "control", "op": "SESSION", "request_id": 9,
          "fields": {"challenge": TEST_CHALLENGE.hex()}}),
        ("control-feedback-searching", "FEEDBACK: searching, no flags.",
         hdr([], gw, "CONTROL", 0, 10, 0),
         {"kind": "control", "op": "FEEDBACK", "request_id": 10,
          "fields": {"level": "SEARCHING", "flags": []}}),
        ("control-feedback-maternal", "FEEDBACK: weak, only the mother's pulse heard.",
         hdr([], gw, "CONTROL", 0, 11, 0),
         {"kind": "control", "op": "FEEDBACK", "request_id": 11,
          "fields": {"level": "WEAK", "flags": ["MATERNAL"]}}),
        ("control-feedback-complete-mute", "FEEDBACK: good, session complete, sound off.",
         hdr([], gw, "CONTROL", 0, 12, 0),
         {"kind": "control", "op": "FEEDBACK", "request_id": 12,
          "fields": {"level": "GOOD", "flags": ["COMPLETE", "MUTE"]}}),
        ("control-pair-get", "PAIR step GET, second half of B.",
         hdr([], gw, "CONTROL", 0, 13, 0),
         {"kind": "control", "op": "PAIR", "request_id": 13,
          "fields": {"step": "GET", "data": "01"}}),
        # replies: device -> gateway (seq is the request id)
        ("reply-start-ok", "START answered OK.", hdr([], fh, "REPLY", 2, 1, 30),
         {"kind": "reply", "op": "START", "request_id": 1, "status": "OK"}),
        ("reply-set-rate-bad-request", "SET_RATE refused: the hardware cannot.",
         hdr([], fh, "REPLY", 2, 3, 31),
         {"kind": "reply", "op": "SET_RATE", "request_id": 3, "status": "BAD_REQUEST"}),
        ("reply-time-sync", "TIME_SYNC: the gateway's time echoed, the device's at receipt.",
         hdr([], fh, "REPLY", 2, 4, 32),
         {"kind": "reply", "op": "TIME_SYNC", "request_id": 4, "status": "OK",
          "fields": {"gateway_unix_ms": 1700000000123, "device_t_ms": 32}}),
        ("reply-resend-partial", "RESEND: only seq 1000 on is still held; [10, 1000) is lost.",
         hdr([], fh, "REPLY", 2, 5, 33),
         {"kind": "reply", "op": "RESEND", "request_id": 5, "status": "OK",
          "fields": {"stream": "DOPPLER", "first_seq_still_held": 1000, "to_seq": 4010}}),
        ("reply-resend-unavailable", "RESEND: nothing held from seq 7 on; nothing follows.",
         hdr([], jm, "REPLY", 3, 6, 34),
         {"kind": "reply", "op": "RESEND", "request_id": 6, "status": "UNAVAILABLE",
          "fields": {"stream": "TCB", "first_seq_still_held": SEQ_END, "to_seq": SEQ_END}}),
        ("reply-measure-ok", "MEASURE answered OK; the TcB record follows.",
         hdr([], jm, "REPLY", 3, 8, 35),
         {"kind": "reply", "op": "MEASURE", "request_id": 8, "status": "OK"}),
        ("reply-feedback-unsupported", "FEEDBACK sent to a jaundice meter: unsupported.",
         hdr([], jm, "REPLY", 3, 12, 36),
         {"kind": "reply", "op": "FEEDBACK", "request_id": 12, "status": "UNSUPPORTED"}),
    ]  # fmt: skip
    return [frame_entry(n, note, h, content_payload(c, adpcm), c) for n, note, h, c in specs]


def record_vectors() -> list[dict]:
    """Records split at an MTU into consecutive frames, MORE on every frame but the last."""
    cases = [
        ("jaundice-tcb-at-mtu-64", "The 145-byte TcB record at ATT MTU 64: 47 bytes of payload "
         "per frame.", "JAUNDICE", "TCB", 3, 11, 7000, 64, TCB_6X5),
        ("fetal-info-at-mtu-64", "The fetal monitor's device info at ATT MTU 64.",
         "FETAL_HEART", "INFO", 2, 1, 40, 64, {"kind": "info", "info": FETAL_INFO}),
    ]  # fmt: skip
    out = []
    for name, note, dt, stream, boot, seq, t_ms, mtu, content in cases:
        record = content_payload(content, {})
        room = mtu - 3 - 12 - 2
        chunks = [record[i : i + room] for i in range(0, len(record), room)]
        frames = []
        for k, chunk in enumerate(chunks):
            flags = ["MORE"] if k < len(chunks) - 1 else []
            h = hdr(flags, dt, stream, boot, seq + k, t_ms)
            part = f"part {k + 1} of {len(chunks)}"
            frames.append(frame_entry(f"{name}-{k + 1}", part, h, chunk, {"kind": "fragment"}))
        out.append({"name": name, "note": note, "att_mtu": mtu, "record": record.hex(),
                    "content": content, "frames": frames})  # fmt: skip
    return out


def signed_vectors() -> list[dict]:
    """Device frames signed with the session key, commands with the connection nonce too."""
    fh, gw = "FETAL_HEART", "GATEWAY"
    specs = [
        ("signed-status", "A status signed by the device: tag = HMAC(K_s, header || payload).",
         hdr(["AUTH"], fh, "STATUS", TEST_BOOT, 0, 1000),
         {"kind": "status", "battery_mv": 3900, "battery_pct": 71, "on_skin": True,
          "charging": False, "battery_low": False}, b"", True),
        ("signed-doppler-adpcm", "Signed ADPCM Doppler.",
         hdr(["AUTH", "ADPCM"], fh, "DOPPLER", TEST_BOOT, 4000, 1000),
         {"kind": "adpcm", "block": "mid-state"}, b"", True),
        ("signed-doppler-adpcm-resent", "The same frame resent: the tag is computed with RESENT "
         "clear, so it is the original tag; only the flag and the CRC differ. A receiver takes "
         "it only in answer to a RESEND of this connection covering its seq.",
         hdr(["AUTH", "ADPCM", "RESENT"], fh, "DOPPLER", TEST_BOOT, 4000, 1000),
         {"kind": "adpcm", "block": "mid-state"}, b"", True),
        ("signed-ppg", "Signed PCM16 PPG: sealed under its own counter (stream 1).",
         hdr(["AUTH"], fh, "PPG", TEST_BOOT, 50, 1000),
         {"kind": "pcm16", "samples": [1200, -340, 5, 32767, -32768, 0, 77, -1]}, b"", True),
        ("signed-session-reply", "The device's answer to control-session: challenge, boot "
         "nonce, connection nonce and the address of the central that asked (peer), signed "
         "with K_s; it proves the device holds K and names the link it answered on.",
         hdr(["AUTH"], fh, "REPLY", TEST_BOOT, 9, 1200),
         {"kind": "reply", "op": "SESSION", "request_id": 9, "status": "OK",
          "fields": {"challenge": TEST_CHALLENGE.hex(), "boot_nonce": TEST_BOOT_NONCE.hex(),
                     "conn_nonce": TEST_CONN_NONCE.hex(), "peer": TEST_PEER.hex()}},
         b"", True),
        ("signed-command-feedback", "The first command after the handshake: control seq 1, "
         "tag = HMAC(K_s, conn_nonce || header || payload).",
         hdr(["AUTH"], gw, "CONTROL", 0, 1, 0),
         {"kind": "control", "op": "FEEDBACK", "request_id": 1,
          "fields": {"level": "GOOD", "flags": []}}, TEST_CONN_NONCE, True),
        ("signed-command-resend", "The second command: control seq 2.",
         hdr(["AUTH"], gw, "CONTROL", 0, 2, 0),
         {"kind": "control", "op": "RESEND", "request_id": 2,
          "fields": {"stream": "STATUS", "from_seq": 1, "to_seq": SEQ_END}},
         TEST_CONN_NONCE, True),
    ]  # fmt: skip
    blocks = {b["name"]: b for b in adpcm_vectors()}
    out = []
    for name, note, h, content, prefix, _ in specs:
        plain = content_payload(content, blocks)
        payload = plain  # a REPLY's payload is not sealed
        if h["stream"] != "REPLY":
            nonce = TEST_CONN_NONCE if h["stream"] == "CONTROL" else TEST_BOOT_NONCE
            payload = sealed(nonce, h["stream"], h["seq"], plain)
        clear = dict(h, flags=[f for f in h["flags"] if f != "RESENT"])
        message = prefix + header(**clear) + payload
        full = mac(SESSION_KEY, message)
        e = frame_entry(name, note, h, payload, content, full[:8])
        if h["stream"] != "REPLY":
            e["plaintext"] = plain.hex()
            e["seal_nonce"] = "conn_nonce" if h["stream"] == "CONTROL" else "boot_nonce"
            e["counter_blocks"] = counter_blocks(
                TEST_CONN_NONCE if h["stream"] == "CONTROL" else TEST_BOOT_NONCE,
                h["stream"], h["seq"], len(plain)).hex()  # fmt: skip
        e["mac_key"] = "session_key"
        e["mac_input"] = message.hex()
        e["mac"] = full.hex()
        e["verifies"] = True
        out.append(e)
    # the second command with one payload bit flipped and the CRC made good again
    good = out[-1]
    data = bytearray(bytes.fromhex(good["hex"]))
    # payload: op, request id, stream, then from_seq: a ciphertext bit flips the same bit of
    # the plaintext (counter mode is malleable), from_seq 1 -> 0; only the tag catches it
    data[15] ^= 0x01
    data[-2:] = struct.pack("<H", crc16(bytes(data[:-2])))
    forged = dict(good, name="signed-command-forged", verifies=False, hex=data.hex(),
                  payload=data[12:-10].hex(), crc=f"0x{crc16(bytes(data[:-2])):04x}",
                  note="signed-command-resend with one ciphertext bit flipped (from_seq 1 -> 0 "
                  "once opened) and the CRC recomputed: a valid frame whose tag does not "
                  "verify, so the device ignores it.")  # fmt: skip
    forged["content"] = dict(good["content"], fields=dict(good["content"]["fields"], from_seq=0))
    forged["plaintext"] = bytes(a ^ b for a, b in zip(bytes.fromhex(good["plaintext"]),
                                                      bytes(3) + b"\x01", strict=False)).hex() \
        + good["plaintext"][8:]  # fmt: skip
    forged.pop("mac_input")
    forged.pop("mac")
    out.append(forged)
    return out


def slip_vectors() -> list[dict]:
    frame = frame_bytes(hdr([], "FETAL_HEART", "DOPPLER", 2, 8, 2),
                        struct.pack("<4h", -9280, -8997, 0x00C0, 0x00DB))  # fmt: skip
    assert b"\xc0" in frame and b"\xdb" in frame
    write = frame_bytes(
        hdr([], "GATEWAY", "CONTROL", 0, 1, 0),
        content_payload({"kind": "control", "op": "STOP", "request_id": 1}, {}),
    )
    hello = json.dumps({"id": "fhm-0001", "type": 1, "name": "bench", "run": "0a1b2c3d"},
                       separators=(",", ":")).encode()  # fmt: skip
    packets = [
        ("slip-hello", "device -> gateway: HELLO, the JSON of a BLE advertisement plus run.",
         "HELLO", hello),
        ("slip-link-up", "gateway -> device: LINK_UP with SERIAL_LINK_MTU (512).",
         "LINK_UP", struct.pack("<H", SERIAL_LINK_MTU)),
        ("slip-frame-escaped", "device -> gateway: a frame holding END (0xC0) and ESC (0xDB) "
         "bytes, each escaped.", "FRAME", frame),
        ("slip-write", "gateway -> device: a control write (STOP).", "WRITE", write),
        ("slip-who", "gateway -> device: WHO, the gateway just opened the port.", "WHO", b""),
    ]  # fmt: skip
    out = [{"name": n, "note": note, "kind": k, "packet": (bytes((SERIAL_KINDS[k],)) + b).hex(),
            "wire": slip(bytes((SERIAL_KINDS[k],)) + b).hex()}
           for n, note, k, b in packets]  # fmt: skip
    streams = [
        ("slip-console-before-packet", "Console text before the first END is delimited like a "
         "packet; its first byte is no packet kind, so the link drops it.",
         b"boot ok\r\n" + slip(bytes((SERIAL_KINDS["WHO"],))),
         [b"boot ok\r\n", bytes((SERIAL_KINDS["WHO"],))], 0),
        ("slip-bad-escape", "ESC followed by neither ESC_END nor ESC_ESC: that packet is "
         "dropped and counted, the next one is taken.",
         b"\xc0\x04\xdb\x00\x02\xc0" + slip(bytes((SERIAL_KINDS["WHO"],))),
         [bytes((SERIAL_KINDS["WHO"],))], 1),
        ("slip-empty-packets", "Back-to-back END bytes delimit nothing and are skipped.",
         b"\xc0\xc0\xc0\x05\xc0\xc0", [b"\x05"], 0),
    ]  # fmt: skip
    out += [{"name": n, "note": note, "wire": w.hex(), "packets": [x.hex() for x in pk],
             "dropped": d} for n, note, w, pk, d in streams]  # fmt: skip
    return out


def _fix_crc(data: bytes | bytearray) -> bytes:
    data = bytearray(data)
    data[-2:] = struct.pack("<H", crc16(bytes(data[:-2])))
    return bytes(data)


def invalid_vectors() -> list[dict]:
    """Frames every receiver rejects ("frame"), and valid frames whose payload the gateway's
    decoder refuses ("payload", with the decoder that does)."""
    status = frame_bytes(hdr([], "FETAL_HEART", "STATUS", 2, 3, 15000),
                         status_payload({"battery_mv": 3900, "battery_pct": 71, "on_skin": True,
                                         "charging": False, "battery_low": False}))  # fmt: skip
    v2 = bytearray(status)
    v2[0] = (2 << 4) | (v2[0] & 0x0F)
    v0 = bytearray(status)
    v0[0] &= 0x0F
    bad_crc = bytearray(status)
    bad_crc[5] ^= 0x40
    swapped = bytearray(status)
    swapped[-2], swapped[-1] = swapped[-1], swapped[-2]
    long_frame = frame_bytes(hdr(["ADPCM"], "FETAL_HEART", "DOPPLER", 2, 0, 0),
                             b"\x00\x00\x00" + bytes(MAX_FRAME_LEN - 14 - 3 + 1))  # fmt: skip
    no_room = frame_bytes(hdr(["AUTH"], "FETAL_HEART", "EVENT", 2, 0, 0), b"\x01" * 7)

    def f(h, payload):
        return frame_bytes(h, payload)

    fh, jm = "FETAL_HEART", "JAUNDICE"
    frame_level = [
        ("empty", "No bytes at all.", b"", "frame too short (0 bytes, need at least 14)"),
        ("too-short", "13 bytes: one less than header and CRC.", status[:13],
         "frame too short (13 bytes, need at least 14)"),
        ("too-long", "510 bytes with a good CRC: one more than the largest ATT value allows.",
         long_frame, "frame too long (510 bytes, at most 509)"),
        ("crc-mismatch", "fetal-status with one header bit flipped.", bytes(bad_crc),
         "CRC mismatch"),
        ("crc-byte-order", "fetal-status with its CRC stored big-endian.", bytes(swapped),
         "CRC mismatch"),
        ("version-2", "fetal-status as protocol version 2, CRC recomputed.", _fix_crc(v2),
         "unsupported protocol version 2"),
        ("version-0", "fetal-status as protocol version 0, CRC recomputed.", _fix_crc(v0),
         "unsupported protocol version 0"),
        ("auth-without-room", "AUTH set in a frame of 7 payload bytes: no room for the 8-byte "
         "tag.", no_room, "AUTH flag set but no room for the tag"),
    ]  # fmt: skip
    payload_level = [
        ("pcm16-odd-length", "samples", f(hdr([], fh, "PPG", 2, 0, 0), b"\x01\x00\x02"),
         "PCM16 payload has an odd number of bytes"),
        ("adpcm-short-header", "samples", f(hdr(["ADPCM"], fh, "DOPPLER", 2, 0, 0), b"\x00\x00"),
         "ADPCM payload shorter than its header"),
        ("adpcm-step-index", "samples",
         f(hdr(["ADPCM"], fh, "DOPPLER", 2, 0, 0), b"\x00\x00\x59\x12"),
         "ADPCM step index 89 out of range"),
        ("adpcm-on-ppg", "samples", f(hdr(["ADPCM"], fh, "PPG", 2, 0, 0), b"\x00\x00\x00\x12"),
         "ADPCM is defined for the Doppler stream only"),
        ("status-length", "status", f(hdr([], fh, "STATUS", 2, 0, 0), b"\x3c\x0f\x47"),
         "status payload is 3 bytes, expected 4"),
        ("status-percent", "status", f(hdr([], fh, "STATUS", 2, 0, 0), b"\x3c\x0f\x65\x00"),
         "battery percentage 101 out of range"),
        ("tcb-short", "tcb", f(hdr([], jm, "TCB", 3, 0, 0), bytes(12)),
         "TcB record shorter than its header"),
        ("tcb-no-leds", "tcb", f(hdr([], jm, "TCB", 3, 0, 0), bytes(11) + b"\x00\x05"),
         "TcB record has 0 LEDs x 5 flashes"),
        ("tcb-length", "tcb", f(hdr([], jm, "TCB", 3, 0, 0), bytes(11) + b"\x01\x02" + bytes(9)),
         "TcB record is 22 bytes, expected 23"),
        ("movement-short", "movement", f(hdr([], fh, "EVENT", 2, 0, 0), b"\x06\x01"),
         "movement event is 2 bytes, expected 3"),
        ("movement-zero", "movement", f(hdr([], fh, "EVENT", 2, 0, 0), b"\x06\x00\x00"),
         "movement mark number 0 (they count from 1)"),
        ("reply-short", "reply", f(hdr([], fh, "REPLY", 2, 0, 0), b"\x01\x00"),
         "reply shorter than 3 bytes"),
        ("time-sync-reply-length", "time_sync_reply",
         f(hdr([], fh, "REPLY", 2, 4, 0), b"\x04\x04\x00" + bytes(11)),
         "time-sync reply must carry 12 bytes"),
        ("resend-reply-length", "resend_reply",
         f(hdr([], fh, "REPLY", 2, 5, 0), b"\x05\x05\x00" + bytes(8)),
         "resend reply must carry 9 bytes"),
    ]  # fmt: skip
    out = [{"name": n, "note": note, "layer": "frame", "hex": d.hex(), "error": err}
           for n, note, d, err in frame_level]  # fmt: skip
    out += [{"name": n, "layer": "payload", "decoder": dec, "hex": d.hex(), "error": err}
            for n, dec, d, err in payload_level]  # fmt: skip
    return out


def build() -> dict:
    adpcm = adpcm_vectors()
    blocks = {b["name"]: b for b in adpcm}
    return {
        "format": "perimon wire protocol golden vectors",
        "spec": "docs/protocol.md",
        "protocol_version": PROTOCOL_VERSION,
        "vectors_version": VECTORS_VERSION,
        "generated_by": "scripts/make_protocol_vectors.py (only when the spec changes)",
        "conventions": {
            "hex": "bytes as lowercase hex, first byte first",
            "header": "flags, device_type and stream by their names in docs/protocol.md; "
            "flags lists the bits set; boot, seq and t_ms as numbers",
            "payload": "the bytes between the header and the tag (or the CRC)",
            "tag": "the 8 tag bytes, null when flag AUTH is clear",
            "crc": "the CRC-16/CCITT-FALSE over every byte before it; the frame stores it "
            "little-endian",
            "content": "the payload decoded: kind pcm16 (samples), adpcm (the ADPCM block "
            "named), status, tcb, info (the JSON object), event, movement (the mark's number), "
            "control (op, request_id, "
            "fields of the arguments), reply (op, request_id, status, fields of the data), "
            "fragment (part of a record)",
            "adpcm": "state is [predictor, step_index]; hex is the whole payload: the state "
            "before, then the codes low nibble first; decoded is what a receiver gets",
            "signed": "tag = first 8 bytes of mac = HMAC-SHA256(session_key, mac_input); "
            "payload is the sealed plaintext (but a REPLY's): plaintext XOR AES-256(seal_key, "
            "counter_blocks), the nonce of the blocks named by seal_nonce",
            "invalid": "layer frame: every receiver rejects it (the gateway with the error "
            "text); layer payload: a valid frame whose payload the named decoder rejects",
        },
        "crc_check": {"ascii": "123456789", "crc": f"0x{crc16(b'123456789'):04x}"},
        "test_key": {
            "note": "published test values: never provision this key on a device",
            "device_key": TEST_KEY.hex(),
            "boot": TEST_BOOT,
            "boot_nonce": TEST_BOOT_NONCE.hex(),
            "session_label": SESSION_LABEL.decode(),
            "session_key_input": (
                SESSION_LABEL + struct.pack("<H", TEST_BOOT) + TEST_BOOT_NONCE
            ).hex(),
            "session_key": SESSION_KEY.hex(),
            "seal_label": SEAL_LABEL.decode(),
            "seal_key": SEAL_KEY.hex(),
            "challenge": TEST_CHALLENGE.hex(),
            "conn_nonce": TEST_CONN_NONCE.hex(),
            "peer": TEST_PEER.hex(),
        },
        "frames": frame_vectors(blocks),
        "records": record_vectors(),
        "adpcm": adpcm,
        "signed": signed_vectors(),
        "slip": slip_vectors(),
        "invalid": invalid_vectors(),
    }


def dumps(obj, indent: int = 0) -> str:
    """JSON with one key per line, but whatever fits 100 columns (a header, a block of samples)
    on one line, so it reads as a row rather than a column."""
    pad = "  " * (indent + 1)
    flat = json.dumps(obj)
    if len(flat) <= 104 or not isinstance(obj, dict | list):
        return flat
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}" if items else "{}"
    if isinstance(obj, list) and any(isinstance(x, dict | list) for x in obj):
        if all(isinstance(x, list) and not any(isinstance(y, list) for y in x) for x in obj):
            return json.dumps(obj)
        items = [pad + dumps(x, indent + 1) for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(obj)


def check_with_gateway(vectors: dict) -> None:
    """The gateway must already agree, or the specification here is wrong."""
    sys.path.insert(0, str(REPO))
    from gateway import protocol as p

    assert p.crc16(b"123456789") == int(vectors["crc_check"]["crc"], 16)
    for block in vectors["adpcm"]:
        got = p.adpcm_decode(bytes.fromhex(block["hex"])).tolist()
        assert got == block["decoded"], block["name"]
    for v in vectors["frames"] + vectors["signed"]:
        f = p.decode_frame(bytes.fromhex(v["hex"]))
        assert f.payload.hex() == v["payload"], v["name"]
    from gateway.device import auth

    for v in vectors["signed"]:
        if "plaintext" in v and v["verifies"]:
            nonce = TEST_CONN_NONCE if v["seal_nonce"] == "conn_nonce" else TEST_BOOT_NONCE
            stream, seq = STREAMS[v["header"]["stream"]], v["header"]["seq"]
            got = auth.seal(SEAL_KEY, nonce, stream, seq, bytes.fromhex(v["plaintext"]))
            assert got.hex() == v["payload"], v["name"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    vectors = build()
    check_with_gateway(vectors)
    args.out.write_text(dumps(vectors) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
