"""perimon wire protocol v1, gateway side.

The specification is docs/protocol.md and the device side is firmware/lib/protocol.py; the two
are tested against the same byte vectors. Everything here is pure: bytes in, records out.
"""

from __future__ import annotations

import binascii
import json
import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

import numpy as np
from numpy.typing import NDArray

VERSION = 1
HEADER_LEN = 12
CRC_LEN = 2
TAG_LEN = 8
NONCE_LEN = 8  # boot nonce, connection nonce and gateway challenge
PEER_LEN = 6  # the central's address in the SESSION reply (zeros: the link has none)
KEY_LEN = 32  # per-device key provisioned over USB
PAIR_SECRET_LEN = 16  # the pairing secret on the label, provisioned over USB
ADPCM_HEADER_LEN = 3
ATT_OVERHEAD = 3
MAX_FRAME_LEN = 512 - ATT_OVERHEAD  # the largest ATT attribute value; larger input is not a frame
_HEADER = struct.Struct("<BBHII")


class Flag(IntFlag):
    AUTH = 0x01
    ADPCM = 0x02
    RESENT = 0x04
    MORE = 0x08


class DeviceType(IntEnum):
    GATEWAY = 0
    FETAL_HEART = 1
    JAUNDICE = 2


class Stream(IntEnum):
    DOPPLER = 0
    PPG = 1
    STATUS = 2
    TCB = 3
    INFO = 4
    EVENT = 5
    CONTROL = 30
    REPLY = 31


class Op(IntEnum):
    START = 1
    STOP = 2
    SET_RATE = 3
    TIME_SYNC = 4
    RESEND = 5
    GET_INFO = 6
    MEASURE = 7
    SESSION = 8  # start an authenticated session (docs/protocol.md, Authentication)
    FEEDBACK = 9  # signal quality and session state for the device's LED and tones
    PAIR = 10  # key agreement: button window or the label's secret (docs/security.md)


class PairStep(IntEnum):
    """PAIR's first argument byte (docs/protocol.md, "Pairing")."""

    COMMIT = 1  # the gateway's commitment to A (button)
    GET = 2  # a half of B
    REVEAL = 3  # a half of A
    CONFIRM = 4  # key confirmation both ways
    LABEL_COMMIT = 5  # the commitment, authenticated by the label's pairing secret


class FeedbackLevel(IntEnum):
    """FEEDBACK's signal-quality level: what the monitor's LED and tones show the mother."""

    SEARCHING = 0
    WEAK = 1
    GOOD = 2


FEEDBACK_COMPLETE = 0x01  # FEEDBACK flags: the prescribed recording is complete
FEEDBACK_MUTE = 0x02  # Doppler sound off
FEEDBACK_MATERNAL = 0x04  # the probe hears only the mother's pulse: move it


class Status(IntEnum):
    OK = 0
    BAD_REQUEST = 1
    UNSUPPORTED = 2
    UNAVAILABLE = 3
    BUSY = 4  # no room for the step now (the device's heap): ask the same again shortly


class Event(IntEnum):
    BOOT = 1
    CONTACT_ON = 2
    CONTACT_OFF = 3
    BATTERY_LOW = 4
    GAP = 5
    MOVEMENT = 6  # the mother marked a fetal movement (a short press); u16 mark number follows


# USB serial link (docs/protocol.md, "USB serial"): SLIP (RFC 1055) delimits packets
# [u8 kind][body] on the byte stream, so a packet survives whatever else shares the line.
SLIP_END = 0xC0
SLIP_ESC = 0xDB
SLIP_ESC_END = 0xDC  # ESC ESC_END stands for an END byte inside a packet
SLIP_ESC_ESC = 0xDD  # ESC ESC_ESC stands for an ESC byte inside a packet
# A cable has no ATT MTU. LINK_UP announces this one, so a frame on the cable is at most
# MAX_FRAME_LEN, as over BLE at its largest MTU, and the device sizes frames as it would there.
SERIAL_LINK_MTU = 512


class SerialKind(IntEnum):
    HELLO = 1  # device -> gateway: JSON id, type, name (what BLE advertises)
    LINK_UP = 2  # gateway -> device: u16 SERIAL_LINK_MTU; the link is up
    FRAME = 3  # device -> gateway: one frame (a notification)
    WRITE = 4  # gateway -> device: one frame (a control write)
    WHO = 5  # gateway -> device: say HELLO (the port was just opened); the link is down


# Streams whose sequence number counts samples (seq = index of the first sample since boot);
# every other stream counts frames.
SAMPLE_STREAMS = frozenset({Stream.DOPPLER, Stream.PPG})
# Streams of sparse readings, asked for on every connection (docs/protocol.md, Resend)
# (the fetal monitor's events: its movement marks are readings, and one pressed while the link
# was down must come even when no event was seen from this boot yet)
READING_STREAMS: dict[int, tuple[Stream, ...]] = {
    DeviceType.JAUNDICE: (Stream.TCB,),
    DeviceType.FETAL_HEART: (Stream.EVENT,),
}  # by type
SEQ_END = 0xFFFFFFFF  # RESEND to_seq meaning "everything still held from from_seq on"
# A device starts a new boot before a 32-bit counter of its frames (a seq, t_ms) wraps: looking
# for a moment when all is delivered from RENEW_MARGIN below 2**32, at once from
# RENEW_HARD_MARGIN below it (docs/protocol.md, "Streams and sequence numbers").
RENEW_MARGIN = 1 << 24
RENEW_HARD_MARGIN = 1 << 20

# Sample rates fixed by the hardware (docs/protocol.md). A receiver checks the rate implied by
# seq and t_ms over at least RATE_CHECK_S; a device whose ADC clock runs off by more than
# RATE_TOLERANCE would put every heart rate off by the same fraction (3% is 4 bpm at 140).
# An implied rate off by more than RATE_JUMP is a device clock that was set, not a bad ADC.
NOMINAL_RATE_HZ: dict[int, int] = {Stream.DOPPLER: 4000, Stream.PPG: 50}  # by stream
RATE_TOLERANCE = 0.03
RATE_JUMP = 0.25
RATE_CHECK_S = 60.0


class FrameError(ValueError):
    """Bytes that are not a valid v1 frame; the message says why."""


@dataclass(frozen=True)
class Frame:
    flags: Flag
    device_type: int
    stream: int
    boot: int
    seq: int
    t_ms: int
    payload: bytes
    tag: bytes | None = None

    @property
    def more(self) -> bool:
        return bool(self.flags & Flag.MORE)

    @property
    def resent(self) -> bool:
        return bool(self.flags & Flag.RESENT)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, as the firmware computes it."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(frame: Frame) -> bytes:
    flags = int(frame.flags) | (Flag.AUTH if frame.tag is not None else 0)
    header = _HEADER.pack(
        (VERSION << 4) | (flags & 0x0F),
        ((frame.device_type & 0x07) << 5) | (frame.stream & 0x1F),
        frame.boot & 0xFFFF,
        frame.seq & 0xFFFFFFFF,
        frame.t_ms & 0xFFFFFFFF,
    )
    body = header + frame.payload + (frame.tag or b"")
    return body + struct.pack("<H", crc16(body))


def decode_frame(data: bytes) -> Frame:
    """Parse and check one frame; raises FrameError naming the first problem found."""
    n = len(data)
    if n < HEADER_LEN + CRC_LEN:
        raise FrameError(f"frame too short ({n} bytes, need at least {HEADER_LEN + CRC_LEN})")
    if n > MAX_FRAME_LEN:
        raise FrameError(f"frame too long ({n} bytes, at most {MAX_FRAME_LEN})")
    data = bytes(data)
    (crc,) = struct.unpack_from("<H", data, n - CRC_LEN)
    if crc16(data[: n - CRC_LEN]) != crc:
        raise FrameError("CRC mismatch")
    vf, ds, boot, seq, t_ms = _HEADER.unpack_from(data, 0)
    if vf >> 4 != VERSION:
        raise FrameError(f"unsupported protocol version {vf >> 4}")
    flags = Flag(vf & 0x0F)
    end = n - CRC_LEN
    tag = None
    if flags & Flag.AUTH:
        if end - TAG_LEN < HEADER_LEN:
            raise FrameError("AUTH flag set but no room for the tag")
        tag = data[end - TAG_LEN : end]
        end -= TAG_LEN
    return Frame(flags, ds >> 5, ds & 0x1F, boot, seq, t_ms, data[HEADER_LEN:end], tag)


def max_payload(att_mtu: int, auth: bool) -> int:
    """Payload bytes one notification can carry at this ATT MTU (23 gives the 20-byte case)."""
    return att_mtu - ATT_OVERHEAD - HEADER_LEN - CRC_LEN - (TAG_LEN if auth else 0)


# ---- sample payloads ----

# IMA/DVI ADPCM recommendation (Interactive Multimedia Association, 1992): step and index tables.
_STEPS = np.array(
    [
        7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60,
        66, 73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371,
        408, 449, 494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552, 1707,
        1878, 2066, 2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484,
        7132, 7845, 8630, 9493, 10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385,
        24623, 27086, 29794, 32767,
    ]
)  # fmt: skip
_INDEX_ADJ = (-1, -1, -1, -1, 2, 4, 6, 8, -1, -1, -1, -1, 2, 4, 6, 8)
_STEP_LIST = _STEPS.tolist()


def adpcm_decode(payload: bytes) -> NDArray[np.int16]:
    """One self-contained ADPCM block (predictor, index, codes low nibble first) -> int16."""
    if len(payload) < ADPCM_HEADER_LEN:
        raise FrameError("ADPCM payload shorter than its header")
    pred, index = struct.unpack_from("<hB", payload, 0)
    if index > 88:
        raise FrameError(f"ADPCM step index {index} out of range")
    codes = payload[ADPCM_HEADER_LEN:]
    out = np.empty(2 * len(codes), dtype=np.int16)
    steps = _STEP_LIST
    adj = _INDEX_ADJ
    i = 0
    for byte in codes:
        for code in (byte & 0x0F, byte >> 4):
            step = steps[index]
            delta = step >> 3
            if code & 4:
                delta += step
            if code & 2:
                delta += step >> 1
            if code & 1:
                delta += step >> 2
            pred = pred - delta if code & 8 else pred + delta
            pred = 32767 if pred > 32767 else (-32768 if pred < -32768 else pred)
            index += adj[code]
            index = 0 if index < 0 else (88 if index > 88 else index)
            out[i] = pred
            i += 1
    return out


def pcm16_decode(payload: bytes) -> NDArray[np.int16]:
    if len(payload) % 2:
        raise FrameError("PCM16 payload has an odd number of bytes")
    return np.frombuffer(payload, dtype="<i2").astype(np.int16)


def samples_of(frame: Frame) -> NDArray[np.int16]:
    """The samples a Doppler or PPG frame carries."""
    if frame.stream not in SAMPLE_STREAMS:
        raise FrameError(f"stream {frame.stream} carries no samples")
    if frame.flags & Flag.ADPCM:
        if frame.stream != Stream.DOPPLER:
            raise FrameError("ADPCM is defined for the Doppler stream only")
        return adpcm_decode(frame.payload)
    return pcm16_decode(frame.payload)


# ---- records carried in other streams ----


@dataclass(frozen=True)
class DeviceStatus:
    battery_mv: int
    battery_pct: int
    on_skin: bool
    charging: bool
    battery_low: bool


_STATUS = struct.Struct("<HBB")


def decode_status(payload: bytes) -> DeviceStatus:
    if len(payload) != _STATUS.size:
        raise FrameError(f"status payload is {len(payload)} bytes, expected {_STATUS.size}")
    mv, pct, bits = _STATUS.unpack(payload)
    if pct > 100:
        raise FrameError(f"battery percentage {pct} out of range")
    return DeviceStatus(mv, pct, bool(bits & 1), bool(bits & 2), bool(bits & 4))


@dataclass(frozen=True)
class TcbCounts:
    """One jaundice measurement exactly as the device's ADC read it."""

    contact: bool
    ambient_high: bool
    saturated: bool
    flashes_disagree: bool
    temperature_c: float
    dark_before: tuple[int, int]
    dark_after: tuple[int, int]
    led_drive: tuple[int, ...]
    flashes: NDArray[np.uint16]  # [led][detector][flash]


_TCB_HEAD = struct.Struct("<Bh4HBB")


def decode_tcb(payload: bytes) -> TcbCounts:
    if len(payload) < _TCB_HEAD.size:
        raise FrameError("TcB record shorter than its header")
    bits, temp_centi, db0, db1, da0, da1, n_led, n_flash = _TCB_HEAD.unpack_from(payload, 0)
    if not (1 <= n_led <= 16 and 1 <= n_flash <= 16):
        raise FrameError(f"TcB record has {n_led} LEDs x {n_flash} flashes")
    expect = _TCB_HEAD.size + 2 * n_led + 2 * n_led * 2 * n_flash
    if len(payload) != expect:
        raise FrameError(f"TcB record is {len(payload)} bytes, expected {expect}")
    drive = struct.unpack_from(f"<{n_led}H", payload, _TCB_HEAD.size)
    counts = np.frombuffer(payload, dtype="<u2", offset=_TCB_HEAD.size + 2 * n_led)
    return TcbCounts(
        contact=bool(bits & 1),
        ambient_high=bool(bits & 2),
        saturated=bool(bits & 4),
        flashes_disagree=bool(bits & 8),
        temperature_c=temp_centi / 100.0,
        dark_before=(db0, db1),
        dark_after=(da0, da1),
        led_drive=tuple(drive),
        flashes=counts.reshape(n_led, 2, n_flash).astype(np.uint16),
    )


_MOVEMENT = struct.Struct("<BH")


def decode_movement(payload: bytes) -> int:
    """The number (from 1 at each boot) of a MOVEMENT event: `u8 event, u16 number`."""
    if len(payload) != _MOVEMENT.size or payload[0] != Event.MOVEMENT:
        raise FrameError(f"movement event is {len(payload)} bytes, expected {_MOVEMENT.size}")
    number: int = _MOVEMENT.unpack(payload)[1]
    if number == 0:
        raise FrameError("movement mark number 0 (they count from 1)")
    return number


def is_whole_record(stream: int, payload: bytes) -> bool:
    """Whether a frame without MORE, seen just after a loss, is a record on its own rather than
    the tail of one whose head was lost (the header cannot say): only a whole record decodes.
    A TcB record's length is fixed by its own header, status by its struct, device info is
    one JSON object, an event one byte (a movement mark three)."""
    try:
        if stream == Stream.TCB:
            decode_tcb(payload)
        elif stream == Stream.STATUS:
            decode_status(payload)
        elif stream == Stream.EVENT:
            if payload[:1] == bytes((Event.MOVEMENT,)):
                decode_movement(payload)
            else:
                return len(payload) == 1
        elif stream == Stream.INFO:
            return isinstance(json.loads(payload), dict)
        else:
            return False
    except (FrameError, ValueError, RecursionError):
        return False
    return True


# ---- control channel (gateway -> device) ----


def control_payload(op: Op, request_id: int, args: bytes = b"") -> bytes:
    return bytes((int(op), request_id & 0xFF)) + args


def start_args(stream_mask: int) -> bytes:
    return struct.pack("<I", stream_mask)


def set_rate_args(stream: Stream, rate_hz: int) -> bytes:
    return struct.pack("<BH", int(stream), rate_hz)


def feedback_args(level: int, flags: int) -> bytes:
    return struct.pack("<BB", level, flags)


def time_sync_args(gateway_unix_ms: int) -> bytes:
    return struct.pack("<Q", gateway_unix_ms)


def resend_args(stream: int, from_seq: int, to_seq: int) -> bytes:
    """Ask for [from_seq, to_seq) of one stream again."""
    return struct.pack("<BII", int(stream), from_seq & 0xFFFFFFFF, to_seq & 0xFFFFFFFF)


def decode_resend_args(args: bytes) -> tuple[int, int, int]:
    """(stream, from_seq, to_seq) of a RESEND request."""
    if len(args) != 9:
        raise FrameError("resend request must carry 9 bytes")
    return struct.unpack("<BII", args)


@dataclass(frozen=True)
class Reply:
    op: int
    request_id: int
    status: int
    data: bytes


def decode_reply(payload: bytes) -> Reply:
    if len(payload) < 3:
        raise FrameError("reply shorter than 3 bytes")
    return Reply(payload[0], payload[1], payload[2], payload[3:])


def decode_time_sync_reply(data: bytes) -> tuple[int, int]:
    """(gateway_unix_ms echoed, device t_ms when the request arrived)."""
    if len(data) != 12:
        raise FrameError("time-sync reply must carry 12 bytes")
    return struct.unpack("<QI", data)


def decode_resend_reply(data: bytes) -> tuple[int, int, int]:
    """(stream, first seq the device still had, end seq): data before the first is lost."""
    if len(data) != 9:
        raise FrameError("resend reply must carry 9 bytes")
    return struct.unpack("<BII", data)
