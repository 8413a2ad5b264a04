# Run under the MicroPython Unix port: firmware/lib against docs/protocol-vectors.json, the
# golden vectors the gateway is held to as well (tests/test_protocol_vectors.py).
#   micropython protocol_golden.py FIRMWARE_LIB VECTORS_JSON SCRATCH_FILE
# Prints one JSON object: "results" maps each vector's name to "ok" or what the firmware did
# differently; "constants" holds the firmware's protocol constants as this interpreter sees them.
import asyncio
import json
import struct
import sys

sys.path.append(sys.argv[1])  # firmware/lib
sys.path.append(sys.argv[1] + "/../sim")  # radio_sim
import link as L
import linkauth
import protocol as p
import radio_serial
import radio_sim
import seal
from framestore import FrameStore
from hmac_sha256 import HMAC

V = json.load(open(sys.argv[2]))
SCRATCH = sys.argv[3]
results = {}
TCB_BITS = {"contact": p.TCB_CONTACT, "ambient_high": p.TCB_AMBIENT,
            "saturated": p.TCB_SATURATED, "flashes_disagree": p.TCB_DISAGREE}  # fmt: skip
BLOCKS = {b["name"]: b for b in V["adpcm"]}


class Mismatch(Exception):
    pass


def eq(got, want, what):
    if got != want:
        raise Mismatch(f"{what}: got {got!r}, want {want!r}")


def run(name, fn, *args):
    try:
        fn(*args)
        results[name] = "ok"
    except Exception as e:  # every failure is reported, by vector
        results[name] = f"{type(e).__name__}: {e}"


def h(s):
    return bytes.fromhex(s)


def header_args(hd):
    flags = 0
    for f in hd["flags"]:
        flags |= getattr(p, "F_" + f)
    dt = getattr(p, "DT_" + hd["device_type"])
    stream = getattr(p, "S_" + hd["stream"])
    return flags, dt, stream, hd["boot"], hd["seq"], hd["t_ms"]


class Radio:  # what Link needs of a radio: always connected at one MTU
    connected = True
    on_write = None

    def __init__(self, mtu):
        self.mtu = mtu


class FixedRandom:  # the nonces the device draws are the test key's
    def __init__(self, *values):
        self.values = list(values)

    def urandom(self, n):
        v = self.values.pop(0)
        assert len(v) == n
        return v


def new_link(mtu, dt, boot):
    return L.Link(Radio(mtu), FrameStore(8192, 64), dt, boot, lambda op, rid, a: None)


# ---- payloads: the firmware encodes what it sends and parses what it receives ----


def adpcm_block(name):
    b = BLOCKS[name]
    state = list(b["state_before"])
    out = p.adpcm_encode(b["samples"], 0, len(b["samples"]), state)
    return bytes(out), state


def control_fields(op, args):
    """The arguments as the firmware reads them (link.py, fetal_heart/main.py)."""
    if op == p.OP_START:
        return {"stream_mask": struct.unpack("<I", args)[0]}
    if op == p.OP_SET_RATE:
        return {"stream": args[0], "rate_hz": args[1] | (args[2] << 8)}
    if op == p.OP_TIME_SYNC:
        return {"gateway_unix_ms": struct.unpack("<Q", args)[0]}
    if op == p.OP_RESEND:
        stream, a, b = struct.unpack("<BII", args)
        return {"stream": stream, "from_seq": a, "to_seq": b}
    if op == p.OP_SESSION:
        return {"challenge": args.hex()}
    if op == p.OP_FEEDBACK:
        return {"level": args[0], "flags": args[1]}
    if op == p.OP_PAIR:
        return {"step": args[0], "data": args[1:].hex()}
    return None


def expected_fields(op, fields):
    """The vector's fields with names made numbers, as control_fields returns them."""
    if fields is None:
        return None
    f = dict(fields)
    if "stream" in f:
        f["stream"] = getattr(p, "S_" + f["stream"])
    if op == p.OP_FEEDBACK:
        f["level"] = getattr(p, "FB_" + f["level"])
        flags = 0
        for x in f["flags"]:
            flags |= getattr(p, "FBF_" + x)
        f["flags"] = flags
    if op == p.OP_PAIR:
        f["step"] = getattr(p, "PS_" + f["step"])
    return f


def reply_data(op, f):
    if op == p.OP_TIME_SYNC:
        return struct.pack("<QI", f["gateway_unix_ms"], f["device_t_ms"])
    if op == p.OP_RESEND:
        return struct.pack("<BII", getattr(p, "S_" + f["stream"]), f["first_seq_still_held"],
                           f["to_seq"])  # fmt: skip
    if op == p.OP_SESSION:
        return h(f["challenge"] + f["boot_nonce"] + f["conn_nonce"] + f["peer"])
    raise Mismatch(f"no reply data for op {op}")


def check_content(c, payload):
    kind = c["kind"]
    if kind == "pcm16":
        eq(bytes(p.pcm16_encode(c["samples"], 0, len(c["samples"]))), payload, "pcm16_encode")
    elif kind == "adpcm":
        eq(adpcm_block(c["block"])[0], payload, "adpcm_encode")
    elif kind == "status":
        got = p.encode_status(c["battery_mv"], c["battery_pct"], c["on_skin"], c["charging"],
                              c["battery_low"])  # fmt: skip
        eq(got, payload, "encode_status")
    elif kind == "tcb":
        bits = 0
        for k, v in TCB_BITS.items():
            if c[k]:
                bits |= v
        got = p.encode_tcb(bits, c["temperature_centi_c"] / 100, c["dark_before"],
                           c["dark_after"], c["led_drive"], c["counts"])  # fmt: skip
        eq(bytes(got), payload, "encode_tcb")
    elif kind == "info":
        eq(json.loads(payload), c["info"], "device info")
    elif kind == "event":
        eq(payload, bytes((getattr(p, "EV_" + c["event"]),)), "event")
    elif kind == "movement":  # as fetal_heart/main.py sends it
        eq(payload, struct.pack("<BH", p.EV_MOVEMENT, c["number"]), "movement")
    elif kind == "control":
        op = getattr(p, "OP_" + c["op"])
        ctl = p.decode_control(payload)
        eq((ctl[0], ctl[1]), (op, c["request_id"]), "decode_control")
        eq(control_fields(op, ctl[2]), expected_fields(op, c.get("fields")), "arguments")
    elif kind == "reply":
        op = getattr(p, "OP_" + c["op"])
        data = reply_data(op, c["fields"]) if "fields" in c else b""
        got = p.encode_reply(op, c["request_id"], getattr(p, "ST_" + c["status"]), data)
        eq(got, payload, "encode_reply")
    elif kind != "fragment":
        raise Mismatch("unknown content kind " + kind)


def check_frame(v):
    data = h(v["hex"])
    flags, dt, stream, boot, seq, t_ms = header_args(v["header"])
    payload = h(v["payload"])
    tag = h(v["tag"]) if v["tag"] is not None else None
    eq(p.encode_frame(flags, dt, stream, boot, seq, t_ms, payload, tag), data, "encode_frame")
    eq(p.decode_frame(data), (flags, dt, stream, boot, seq, t_ms, payload, tag), "decode_frame")
    eq(p.crc16(data[:-2]), int(v["crc"], 16), "crc16")
    check_content(v["content"], h(v["plaintext"]) if "plaintext" in v else payload)


def check_record(r):
    """Link.send_record splits the record at the vector's MTU into exactly these frames."""
    first = r["frames"][0]["header"]
    _, dt, stream, boot, seq, t_ms = header_args(first)
    link = new_link(r["att_mtu"], dt, boot)
    link.seq[stream] = seq
    record = h(r["record"])
    check_content(r["content"], record)
    link.send_record(stream, t_ms, record)
    eq([f.hex() for f in link.txq], [f["hex"] for f in r["frames"]], "send_record")
    for f in r["frames"]:
        check_frame(f)


def check_adpcm(b):
    block, state = adpcm_block(b["name"])
    eq(block.hex(), b["hex"], "adpcm_encode")
    eq(state, b["state_after"], "state after")


# ---- authentication: the device signs through Link, and verifies commands ----

KEY = V["test_key"]
K_S = h(KEY["session_key"])


def check_session_key():
    eq(HMAC(h(KEY["device_key"])).digest(h(KEY["session_key_input"])), K_S, "K_s")
    eq(linkauth.SESSION_LABEL, KEY["session_label"].encode(), "SESSION_LABEL")
    eq(seal.SEAL_LABEL, KEY["seal_label"].encode(), "SEAL_LABEL")
    eq(HMAC(K_S).digest(seal.SEAL_LABEL), h(KEY["seal_key"]), "K_e")


def check_mac(v):
    if "mac" in v:
        eq(HMAC(K_S).digest(h(v["mac_input"])).hex(), v["mac"], "HMAC-SHA256")


def check_signed():
    L.os = FixedRandom(h(KEY["boot_nonce"]), h(KEY["conn_nonce"]))
    dev = [v for v in V["signed"] if v["header"]["device_type"] != "GATEWAY"]
    link = new_link(247, getattr(p, "DT_" + dev[0]["header"]["device_type"]), KEY["boot"])
    link.set_key(h(KEY["device_key"]))
    for v in dev:
        run(v["name"], check_device_signed, link, v)
    commands = [v for v in V["signed"] if v["header"]["device_type"] == "GATEWAY"]
    # a forged command first, so it is refused for its tag and not as a replayed seq
    commands.sort(key=lambda v: v["verifies"])
    for v in commands:
        run(v["name"], check_command, link, v)


def check_device_signed(link, v):
    check_frame(v)
    check_mac(v)
    flags, _, stream, _, seq, t_ms = header_args(v["header"])
    payload = h(v["payload"])
    if v["content"]["kind"] == "reply" and v["content"]["op"] == "SESSION":
        c = v["content"]
        f = c["fields"]
        eq(link.auth.session(c["request_id"], h(f["challenge"]), h(f["peer"]), 1), payload,
           "session reply")  # fmt: skip
    plain = h(v.get("plaintext", v["payload"]))
    if "plaintext" in v:
        buf = bytearray(plain)
        link.auth._seal.apply(link.auth.boot_nonce, stream, seq, buf)
        eq(bytes(buf), payload, "seal")
    link.send(stream, seq, t_ms, plain, flags & ~(p.F_AUTH | p.F_RESENT))
    sent = bytes(link.txq[-1])
    if flags & p.F_RESENT:
        sent = p.set_resent(sent)
    eq(sent.hex(), v["hex"], "sealed and signed by Link")


def check_command(link, v):
    check_frame(v)
    check_mac(v)
    d = p.decode_frame(h(v["hex"]))
    got = link.auth.open_command(h(v["hex"]), d[4], d[7])
    eq(got is not None, v["verifies"], "command accepted")
    if got is not None:
        eq(got, h(v["plaintext"]), "command opened")


# ---- USB serial ----


def slip_decode(wire):
    """Packets and drops as SerialRadio's reader takes them from the line."""
    got = []
    radio = radio_serial.SerialRadio(None, {})
    radio._packet = got.append
    with open(SCRATCH, "wb") as f:
        f.write(wire)
    rx = open(SCRATCH, "rb")
    try:
        asyncio.run(radio._serve(rx))
    except OSError:
        pass  # the end of the file, as of an unplugged cable
    rx.close()
    return [x.hex() for x in got], radio.dropped


def check_slip(s):
    wire = h(s["wire"])
    if "packet" in s:
        pkt = h(s["packet"])
        eq(pkt[0], getattr(p, "SER_" + s["kind"]), "kind")
        eq(radio_serial.slip(pkt[0], pkt[1:]), wire, "slip")
        eq(slip_decode(wire), ([s["packet"]], 0), "packets, dropped")
    else:
        eq(slip_decode(wire), (s["packets"], s["dropped"]), "packets, dropped")


def check_invalid(v):
    got = p.decode_frame(h(v["hex"]))
    if v["layer"] == "frame":
        eq(got, None, "decode_frame")
    elif got is None:
        raise Mismatch("a valid frame was rejected")


run("crc_check", lambda: eq(p.crc16(V["crc_check"]["ascii"].encode()),
                            int(V["crc_check"]["crc"], 16), "crc16"))  # fmt: skip
run("version", lambda: eq(p.VERSION, V["protocol_version"], "VERSION"))
run("session_key", check_session_key)
for v in V["frames"]:
    run(v["name"], check_frame, v)
for r in V["records"]:
    run(r["name"], check_record, r)
for b in V["adpcm"]:
    run(b["name"], check_adpcm, b)
check_signed()
for s in V["slip"]:
    run(s["name"], check_slip, s)
for v in V["invalid"]:
    run(v["name"], check_invalid, v)

constants = {}
for mod, prefix in ((p, ""), (radio_sim, "radio_sim.")):
    for k in dir(mod):
        x = getattr(mod, k)
        if not k.startswith("_") and isinstance(x, int) and not isinstance(x, bool):
            constants[prefix + k] = x
print(json.dumps({"results": results, "constants": constants}))
