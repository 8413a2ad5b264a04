"""Frame authentication and the seal on the gateway: the session handshake, tag checks, replay
windows, and opening sealed payloads (sealing commands).

docs/protocol.md ("Authentication", "Confidentiality") is the specification;
firmware/lib/linkauth.py seals and signs. Per
connection the gateway sends a random challenge (op SESSION); the device answers with a reply
signed by its boot's session key, carrying the challenge, its boot nonce and a fresh connection
nonce. From then on every frame of that boot must carry a valid tag; frames that arrive before
the handshake completes are held (bounded) and checked when it does.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import struct
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway import protocol as p

if TYPE_CHECKING:
    from gateway.device.session import LinkStats

log = logging.getLogger(__name__)

SESSION_LABEL = b"perimon-v1 session"  # the same bytes as firmware/lib/linkauth.py
SEAL_LABEL = b"perimon-v1 seal"  # the same bytes as firmware/lib/seal.py
MAX_HELD = 1024  # frames awaiting the handshake; beyond this the oldest are dropped
REPLAY_WINDOW = 8192  # sequence numbers remembered per stream and boot
MAX_RESEND_ASKS = 256  # RESEND ranges of one connection whose answers are awaited


def session_key(device_key: bytes, boot: int, boot_nonce: bytes) -> bytes:
    """K_s = HMAC-SHA256(device key, label || u16 boot || boot nonce)."""
    label = SESSION_LABEL + struct.pack("<H", boot & 0xFFFF) + boot_nonce
    return hmac.new(device_key, label, hashlib.sha256).digest()


def seal_key(k_s: bytes) -> bytes:
    """K_e = HMAC-SHA256(K_s, "perimon-v1 seal"): the AES-256 key of the seal."""
    return hmac.new(k_s, SEAL_LABEL, hashlib.sha256).digest()


def seal(key_e: bytes, nonce: bytes, stream: int, seq: int, data: bytes) -> bytes:
    """AES-256-CTR over `data` from the counter block nonce || u8 stream || u32 seq || u24 0
    (big-endian, NIST SP 800-38A); sealing and opening are the same operation."""
    counter = nonce + struct.pack(">BIBH", stream, seq & 0xFFFFFFFF, 0, 0)
    return Cipher(algorithms.AES(key_e), modes.CTR(counter)).encryptor().update(data)


def frame_tag(key: bytes, data: bytes, prefix: bytes = b"") -> bytes:
    """The tag of a framed message (with its tag and CRC): HMAC over prefix || header and
    payload, with the RESENT bit cleared, truncated to TAG_LEN bytes."""
    body = bytearray(data[: len(data) - p.TAG_LEN - p.CRC_LEN])
    body[0] &= ~int(p.Flag.RESENT) & 0xFF
    return hmac.new(key, prefix + bytes(body), hashlib.sha256).digest()[: p.TAG_LEN]


def sign_frame(key: bytes, frame: p.Frame, prefix: bytes = b"") -> bytes:
    """Encode `frame` with its AUTH tag (used for control frames and in tests)."""
    placeholder = p.encode_frame(
        p.Frame(frame.flags | p.Flag.AUTH, frame.device_type, frame.stream, frame.boot,
                frame.seq, frame.t_ms, frame.payload, bytes(p.TAG_LEN))
    )  # fmt: skip
    tag = frame_tag(key, placeholder, prefix)
    return p.encode_frame(
        p.Frame(frame.flags | p.Flag.AUTH, frame.device_type, frame.stream, frame.boot,
                frame.seq, frame.t_ms, frame.payload, tag)
    )  # fmt: skip


class FrameAuth:
    """One enrolled device's verifier; `stats` is the session's LinkStats (counters)."""

    def __init__(self, device_key: bytes, stats: LinkStats) -> None:
        if len(device_key) != p.KEY_LEN:
            raise ValueError(f"device key must be {p.KEY_LEN} bytes")
        self.device_key = device_key
        self.stats = stats
        self.challenge: bytes | None = None
        self.boot: int | None = None
        self.key: bytes | None = None
        self.seal_key: bytes | None = None
        self.boot_nonce: bytes | None = None
        self.conn_nonce: bytes | None = None
        self.control_seq = 0
        self.peer: bytes | None = None  # this gateway's address as the device should see it
        # (stream, from, to) of this connection's RESEND requests: a RESENT frame answers one
        self._asked: deque[tuple[int, int, int]] = deque(maxlen=MAX_RESEND_ASKS)
        self._held: deque[tuple[p.Frame, bytes]] = deque()
        self._seen: dict[int, tuple[set[int], deque[int], list[int]]] = {}
        self._seen_boot: int | None = None

    @property
    def established(self) -> bool:
        return self.conn_nonce is not None

    def new_connection(self, peer: bytes | None = None) -> bytes:
        """Forget the previous connection's handshake and resend requests; returns the
        challenge to send. `peer` is this gateway's radio address as the device sees it (BLE),
        which the device's session reply must name; None when the link has no address to check
        (a cable, the simulated socket radio)."""
        self.challenge = secrets.token_bytes(p.NONCE_LEN)
        self.conn_nonce = None
        self.control_seq = 0
        self.peer = peer
        self._asked.clear()
        self._held.clear()
        return self.challenge

    def resend_asked(self, stream: int, from_seq: int, to_seq: int) -> None:
        """This connection asked for [from_seq, to_seq) of `stream` again: RESENT frames of that
        range are expected (any other RESENT frame is a replay, docs/protocol.md)."""
        self._asked.append((stream, from_seq, to_seq))

    def control_frame(self, payload: bytes) -> bytes:
        """A command sealed and signed for this connection, with a fresh control sequence
        number (the counter of its seal, under this connection's nonce)."""
        assert self.key is not None and self.seal_key is not None and self.conn_nonce is not None
        self.control_seq += 1
        sealed = seal(self.seal_key, self.conn_nonce, p.Stream.CONTROL, self.control_seq, payload)
        frame = p.Frame(p.Flag(0), p.DeviceType.GATEWAY, p.Stream.CONTROL, 0,
                        self.control_seq, 0, sealed)  # fmt: skip
        return sign_frame(self.key, frame, self.conn_nonce)

    def admit(self, frame: p.Frame, data: bytes) -> list[p.Frame]:
        """The frames that may now be processed (this one, and any held ones it releases)."""
        st = self.stats
        if frame.tag is None:
            st.unsigned += 1
            return []
        if frame.stream == p.Stream.REPLY and self._is_session_reply(frame):
            return self._handshake(frame, data)
        if not self.established:
            if len(self._held) >= MAX_HELD:
                self._held.popleft()
                st.auth_failed += 1
            self._held.append((frame, data))
            return []
        return [self._open(frame)] if self._check(frame, data) else []

    def _open(self, frame: p.Frame) -> p.Frame:
        """A verified frame with its payload in clear (a REPLY's is not sealed)."""
        if frame.stream == p.Stream.REPLY:
            return frame
        assert self.seal_key is not None and self.boot_nonce is not None
        clear = seal(self.seal_key, self.boot_nonce, frame.stream, frame.seq, frame.payload)
        return replace(frame, payload=clear)

    def _is_session_reply(self, frame: p.Frame) -> bool:
        return len(frame.payload) >= 1 and frame.payload[0] == p.Op.SESSION

    def _handshake(self, frame: p.Frame, data: bytes) -> list[p.Frame]:
        st = self.stats
        n = p.NONCE_LEN
        pl = frame.payload
        if len(pl) != 3 + 3 * n + p.PEER_LEN or pl[2] != p.Status.OK:
            st.auth_failed += 1
            if len(pl) == 3 + 3 * n:
                log.warning("session reply without a peer: firmware from before sealed frames, "
                            "update it")  # fmt: skip
            return []
        challenge, boot_nonce = pl[3 : 3 + n], pl[3 + n : 3 + 2 * n]
        conn_nonce, peer = pl[3 + 2 * n : 3 + 3 * n], pl[3 + 3 * n :]
        key = session_key(self.device_key, frame.boot, boot_nonce)
        if not hmac.compare_digest(frame_tag(key, data), frame.tag or b""):
            st.auth_failed += 1
            log.warning("session reply with a bad tag: wrong key, or not the enrolled device")
            return []
        if self.challenge is None or not hmac.compare_digest(challenge, self.challenge):
            st.replayed += 1  # a valid reply, but to an earlier challenge
            return []
        if self.peer is not None and peer != self.peer:
            st.auth_failed += 1  # the device answered another central: a relay
            log.warning("session reply names central %s, not this gateway: relayed", peer.hex())
            return []
        self.challenge = None
        self.boot, self.key, self.conn_nonce = frame.boot, key, conn_nonce
        self.seal_key, self.boot_nonce = seal_key(key), boot_nonce
        out = [frame]
        held, self._held = self._held, deque()
        for f, d in held:
            if self._check(f, d):
                out.append(self._open(f))
        return out

    def _check(self, frame: p.Frame, data: bytes) -> bool:
        st = self.stats
        assert self.key is not None
        if frame.boot != self.boot or not hmac.compare_digest(
            frame_tag(self.key, data), frame.tag or b""
        ):
            st.auth_failed += 1
            return False
        if frame.stream == p.Stream.REPLY:
            return True  # replies are matched to pending requests, not to a sequence
        return self._fresh(frame)

    def _fresh(self, frame: p.Frame) -> bool:
        """First sight of (stream, seq) in this boot? A resent frame is taken only in answer
        to a RESEND of this connection, where it may repeat one harmlessly: the reorderer drops
        it as a duplicate. A captured resent frame replayed at any other time counts as
        replayed, like any other."""
        if self._seen_boot != frame.boot:
            self._seen.clear()
            self._seen_boot = frame.boot
        if frame.resent and not any(
            s == frame.stream and lo <= frame.seq < hi for s, lo, hi in self._asked
        ):
            self.stats.replayed += 1
            return False
        seen, order, floor = self._seen.setdefault(frame.stream, (set(), deque(), [-1]))
        if frame.seq in seen or frame.seq <= floor[0]:  # seen, or older than the window
            if frame.resent:
                return True
            self.stats.replayed += 1
            return False
        seen.add(frame.seq)
        order.append(frame.seq)
        if len(order) > REPLAY_WINDOW:
            old = order.popleft()
            seen.discard(old)
            floor[0] = max(floor[0], old)
        return True
