# perimon wire protocol v1, device side. The specification is docs/protocol.md; the gateway's
# implementation is gateway/protocol.py. Both are tested on the same byte vectors.
import array
import struct

from micropython import const

VERSION = const(1)

# ver_flags byte: version in the high nibble, flags in the low nibble.
F_AUTH = const(0x01)  # an 8-byte authentication tag precedes the CRC
F_ADPCM = const(0x02)  # sample payload is 4-bit IMA ADPCM (Doppler stream only)
F_RESENT = const(0x04)  # frame is a resend answering a RESEND request
F_MORE = const(0x08)  # a record continues in the next sequence number

# Device types (3 bits).
DT_GATEWAY = const(0)
DT_FETAL_HEART = const(1)
DT_JAUNDICE = const(2)

# Stream ids (5 bits).
S_DOPPLER = const(0)
S_PPG = const(1)
S_STATUS = const(2)
S_TCB = const(3)
S_INFO = const(4)
S_EVENT = const(5)
S_CONTROL = const(30)
S_REPLY = const(31)

# Control opcodes.
OP_START = const(1)
OP_STOP = const(2)
OP_SET_RATE = const(3)
OP_TIME_SYNC = const(4)
OP_RESEND = const(5)
OP_GET_INFO = const(6)
OP_MEASURE = const(7)
OP_SESSION = const(8)  # start an authenticated session (docs/protocol.md, Authentication)
OP_FEEDBACK = const(9)  # signal quality and session state for the device's LED and tones
OP_PAIR = const(10)  # key agreement: button window or the label's secret (docs/security.md)

# PAIR steps: the first byte of its arguments (docs/protocol.md, "Pairing").
PS_COMMIT = const(1)  # the gateway's commitment to A (button)
PS_GET = const(2)  # a half of B
PS_REVEAL = const(3)  # a half of A
PS_CONFIRM = const(4)  # key confirmation both ways
PS_LABEL_COMMIT = const(5)  # the commitment, authenticated by the label's pairing secret

# Reply status codes.
ST_OK = const(0)
ST_BAD_REQUEST = const(1)
ST_UNSUPPORTED = const(2)
ST_UNAVAILABLE = const(3)
ST_BUSY = const(4)

# Event codes.
EV_BOOT = const(1)
EV_CONTACT_ON = const(2)
EV_CONTACT_OFF = const(3)
EV_BATTERY_LOW = const(4)
EV_GAP = const(5)  # samples that were lost on the device before they could be buffered
EV_MOVEMENT = const(6)  # the mother marked a fetal movement; u16 number of the mark follows

# FEEDBACK: u8 level, u8 flags.
FB_SEARCHING = const(0)
FB_WEAK = const(1)
FB_GOOD = const(2)
FBF_COMPLETE = const(0x01)  # the prescribed recording is complete
FBF_MUTE = const(0x02)  # Doppler sound off
FBF_MATERNAL = const(0x04)  # the probe hears only the mother's pulse: move it

HEADER_LEN = const(12)
CRC_LEN = const(2)
TAG_LEN = const(8)
NONCE_LEN = const(8)  # boot nonce, connection nonce and gateway challenge
PEER_LEN = const(6)  # the central's address in the SESSION reply (zeros: the link has none)
KEY_LEN = const(32)  # per-device key provisioned over USB
PAIR_SECRET_LEN = const(16)  # the pairing secret on the label, provisioned over USB
ADPCM_HEADER_LEN = const(3)
ATT_OVERHEAD = const(3)  # an ATT notification carries MTU - 3 bytes
MAX_FRAME_LEN = const(509)  # the largest ATT value (512) less ATT_OVERHEAD: longer is not a frame
# A boot never wraps (docs/protocol.md, "Streams and sequence numbers"): once a 32-bit counter
# of its frames (a sample seq, t_ms) is within RENEW_MARGIN of 2**32 the device starts a new
# boot as soon as everything it framed has been delivered; within RENEW_HARD_MARGIN, at once.
RENEW_MARGIN = const(0x1000000)  # 2**24: 70 min of 4 kHz Doppler, 4.7 h of t_ms
RENEW_HARD_MARGIN = const(0x100000)  # 2**20: 262 s of Doppler, 17 min of t_ms


# USB serial link (docs/protocol.md, "USB serial"): SLIP packets [u8 kind][body].
SLIP_END = const(0xC0)
SLIP_ESC = const(0xDB)
SLIP_ESC_END = const(0xDC)
SLIP_ESC_ESC = const(0xDD)
SERIAL_LINK_MTU = const(512)  # what LINK_UP announces: frames as large as BLE's largest MTU
SER_HELLO = const(1)  # device -> gateway: JSON id, type, name
SER_LINK_UP = const(2)  # gateway -> device: u16 MTU; the link is up
SER_FRAME = const(3)  # device -> gateway: one frame
SER_WRITE = const(4)  # gateway -> device: one frame
SER_WHO = const(5)  # gateway -> device: say HELLO; the link is down until LINK_UP

_HEADER = "<BBHII"

# CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF); CPython's binascii.crc_hqx computes the same.
# The table is a 512-byte array built once at import, while the heap is still unfragmented.


def _crc_table():
    t = array.array("H", bytes(512))
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        t[i] = c & 0xFFFF
    return t


_CRC_TABLE = _crc_table()


def crc16(data, crc=0xFFFF):
    t = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ b) & 0xFF]
    return crc


def encode_frame(flags, device_type, stream, boot, seq, t_ms, payload, tag=None, crc=True):
    """One frame: header, payload, optional tag, CRC (left zero if not crc: the frame is kept
    to be sealed, which computes it). Built in one buffer: a frame is the hot path's one
    allocation."""
    n = HEADER_LEN + len(payload)
    if tag is not None:
        flags |= F_AUTH
        n += TAG_LEN
    out = bytearray(n + CRC_LEN)
    struct.pack_into(
        _HEADER, out, 0,
        (VERSION << 4) | (flags & 0x0F),
        ((device_type & 0x07) << 5) | (stream & 0x1F),
        boot & 0xFFFF,
        seq & 0xFFFFFFFF,
        t_ms & 0xFFFFFFFF,
    )  # fmt: skip
    out[HEADER_LEN : HEADER_LEN + len(payload)] = payload
    if tag is not None:
        out[n - TAG_LEN : n] = tag
    if crc:
        struct.pack_into("<H", out, n, crc16(memoryview(out)[:n]))
    return out


def decode_frame(frame):
    """(flags, device_type, stream, boot, seq, t_ms, payload, tag) or None if not a valid v1 frame."""
    n = len(frame)
    if n < HEADER_LEN + CRC_LEN or n > MAX_FRAME_LEN:
        return None
    if crc16(memoryview(frame)[: n - CRC_LEN]) != struct.unpack_from("<H", frame, n - CRC_LEN)[0]:
        return None
    vf, ds, boot, seq, t_ms = struct.unpack_from(_HEADER, frame, 0)
    if vf >> 4 != VERSION:
        return None
    flags = vf & 0x0F
    end = n - CRC_LEN
    tag = None
    if flags & F_AUTH:
        if end - TAG_LEN < HEADER_LEN:
            return None
        tag = bytes(frame[end - TAG_LEN : end])
        end -= TAG_LEN
    return flags, ds >> 5, ds & 0x1F, boot, seq, t_ms, bytes(frame[HEADER_LEN:end]), tag


def set_resent(frame):
    """Copy of a stored frame marked as a resend, CRC updated (the tag does not cover flags)."""
    f = bytearray(frame)
    f[0] |= F_RESENT
    struct.pack_into("<H", f, len(f) - CRC_LEN, crc16(memoryview(f)[: len(f) - CRC_LEN]))
    return bytes(f)


def max_payload(att_mtu, auth):
    """Bytes of payload one notification can carry at this ATT MTU."""
    return att_mtu - ATT_OVERHEAD - HEADER_LEN - CRC_LEN - (TAG_LEN if auth else 0)


# ---- IMA ADPCM (the step and index tables of the IMA/DVI ADPCM recommendation, 1992) ----

_STEPS = (
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60,
    66, 73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371,
    408, 449, 494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552, 1707, 1878,
    2066, 2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484, 7132, 7845,
    8630, 9493, 10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385, 24623, 27086,
    29794, 32767,
)  # fmt: skip
_INDEX_ADJ = (-1, -1, -1, -1, 2, 4, 6, 8)


def adpcm_encode(samples, start, count, state):
    """Encode samples[start:start+count] (count even) into ADPCM_HEADER_LEN + count/2 bytes.

    `state` is a 2-element list [predictor, index] carried from block to block so the stream
    stays continuous; each block's header restates it, so every frame decodes on its own.
    """
    pred, index = state[0], state[1]
    out = bytearray(ADPCM_HEADER_LEN + count // 2)
    struct.pack_into("<hB", out, 0, pred, index)
    steps = _STEPS
    adj = _INDEX_ADJ
    for i in range(count):
        step = steps[index]
        diff = samples[start + i] - pred
        code = 0
        if diff < 0:
            code = 8
            diff = -diff
        delta = step >> 3
        if diff >= step:
            code |= 4
            diff -= step
            delta += step
        step >>= 1
        if diff >= step:
            code |= 2
            diff -= step
            delta += step
        step >>= 1
        if diff >= step:
            code |= 1
            delta += step
        pred = pred - delta if code & 8 else pred + delta
        if pred > 32767:
            pred = 32767
        elif pred < -32768:
            pred = -32768
        index += adj[code & 7]
        if index < 0:
            index = 0
        elif index > 88:
            index = 88
        if i & 1:
            out[ADPCM_HEADER_LEN + (i >> 1)] |= code << 4
        else:
            out[ADPCM_HEADER_LEN + (i >> 1)] = code
    state[0] = pred
    state[1] = index
    return out


def pcm16_encode(samples, start, count):
    out = bytearray(2 * count)
    for i in range(count):
        struct.pack_into("<h", out, 2 * i, samples[start + i])
    return out


# ---- control channel ----


def decode_control(payload):
    """(opcode, request_id, args bytes) or None."""
    if len(payload) < 2:
        return None
    return payload[0], payload[1], payload[2:]


def encode_reply(opcode, request_id, status, data=b""):
    return bytes((opcode, request_id, status)) + data


def encode_status(battery_mv, battery_pct, on_skin, charging, battery_low):
    bits = (1 if on_skin else 0) | (2 if charging else 0) | (4 if battery_low else 0)
    return struct.pack("<HBB", battery_mv, battery_pct, bits)


def encode_tcb(bits, temperature_c, dark_before, dark_after, drive, flashes):
    """One measurement: flags, temperature, dark frames, LED drive, counts[led][det][flash]."""
    n_led = len(flashes)
    n_flash = len(flashes[0][0])
    out = bytearray(struct.pack(
        "<Bh4HBB", bits, int(temperature_c * 100), dark_before[0], dark_before[1],
        dark_after[0], dark_after[1], n_led, n_flash,
    ))  # fmt: skip
    for d in drive:
        out += struct.pack("<H", d)
    for led in flashes:
        for det in led:
            for c in det:
                out += struct.pack("<H", c)
    return out


TCB_CONTACT = const(1)
TCB_AMBIENT = const(2)
TCB_SATURATED = const(4)
TCB_DISAGREE = const(8)
