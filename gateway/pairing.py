"""Pairing a new monitor at home: press its button, check the code, confirm on the page.

A device whose button was pressed advertises "pairing" for two minutes (docs/protocol.md,
"Pairing"). The gateway keeps such a link open instead of refusing it, and lists the device as
"wants to pair" on its page. When the user starts pairing, the gateway and the device agree on
a new device key by Diffie-Hellman in the RFC 3526 2048-bit group, the gateway having committed
to its public value first; both then show the same 4-digit code, derived from both public
values. If the codes match, the user presses the device's button and confirms on the page: the
device stores the new key, proves it holds it, and the gateway enrols the device with that key.
Nothing is typed. The threat model is in docs/security.md, "Pairing".
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field

from gateway import protocol as p
from gateway.enrolment import _ID_RE
from gateway.session import await_reply, unsigned_control_frame
from gateway.transports.base import DeviceLink

log = logging.getLogger(__name__)

# RFC 3526, section 3: the 2048-bit MODP group, generator 2.
PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
GROUP_BYTES = 256
HALF = 128
EXP_BITS = 256
CODE_DIGITS = 4
WINDOW_S = 120.0  # the device's pairing window
MAX_PENDING = 8  # devices listed at once (a neighbour could invent many)
CONFIRM_WAIT_S = 60.0  # how long confirming waits for the press on the device

# PAIR steps, as in firmware/lib/pairing.py
PS_COMMIT = 1
PS_GET = 2
PS_REVEAL = 3
PS_CONFIRM = 4

LABEL_COMMIT = b"perimon-v1 pair commit"
LABEL_KEY = b"perimon-v1 pair key"
LABEL_CODE = b"perimon-v1 pair code"
LABEL_CONFIRM = b"perimon-v1 pair confirm"
LABEL_DONE = b"perimon-v1 pair done"

_TYPES = {p.DeviceType.FETAL_HEART: "fetal_heart", p.DeviceType.JAUNDICE: "jaundice"}


class PairingError(Exception):
    """Pairing could not go on (one-line message for the page)."""


def code_of(a_bytes: bytes, b_bytes: bytes) -> str:
    v = int.from_bytes(hashlib.sha256(LABEL_CODE + a_bytes + b_bytes).digest()[:8], "big")
    out = ""
    for _ in range(CODE_DIGITS):
        out += str(v % 9 + 1)
        v //= 9
    return out


def derive_key(s_bytes: bytes, a_bytes: bytes, b_bytes: bytes, device_id: str) -> bytes:
    return hmac.digest(s_bytes, LABEL_KEY + a_bytes + b_bytes + device_id.encode(), "sha256")


@dataclass
class Pending:
    device_id: str
    device_type: int
    link: DeviceLink | None
    since: float = field(default_factory=time.time)
    state: str = "wants_to_pair"  # -> exchanging -> code -> confirming -> paired | failed
    code: str | None = None
    error: str = ""
    key: bytes | None = None
    busy: bool = False
    replies: dict[int, asyncio.Future] = field(default_factory=dict)
    rid: int = 0

    def to_dict(self) -> dict:
        return {
            "device_id": self.device_id,
            "device_type": _TYPES.get(self.device_type, "unknown"),
            "state": self.state,
            "code": self.code,
            "error": self.error,
            "since": self.since,
            "expires_in_s": max(0.0, round(self.since + WINDOW_S - time.time(), 1)),
        }


class PairingManager:
    def __init__(self, gw) -> None:
        self.gw = gw
        self.pending: dict[str, Pending] = {}

    # ---- links ----

    async def on_link(self, link: DeviceLink) -> None:
        """A device in its pairing window connected: keep it, list it, process nothing."""
        self._expire()
        ok_id = bool(_ID_RE.match(link.device_id))
        if (
            not ok_id
            or link.device_type not in _TYPES
            or (link.device_id not in self.pending and len(self.pending) >= MAX_PENDING)
        ):
            log.warning("pairing request refused (%s)", "bad id" if not ok_id else "too many")
            await link.close()
            return
        old = self.pending.get(link.device_id)
        if old is not None and old.link is not None and old.link is not link:
            await old.link.close()
        e = Pending(link.device_id, link.device_type, link)
        self.pending[link.device_id] = e
        link.on_frame = lambda data: self._on_frame(e, data)
        link.on_close = lambda reason: self._on_close(e, reason)
        log.info("%s: wants to pair", link.device_id)

    def _on_frame(self, e: Pending, data: bytes) -> None:
        try:
            f = p.decode_frame(data)
        except p.FrameError:
            return
        # Only replies matter here; they are signed with a key the gateway does not have yet,
        # so the exchange's own checks (commitment, code, proof) are what protects it.
        if f.stream != p.Stream.REPLY or f.device_type != e.device_type:
            return
        try:
            r = p.decode_reply(f.payload)
        except p.FrameError:
            return
        fut = e.replies.get(r.request_id)
        if r.op == p.Op.PAIR and fut is not None and not fut.done():
            fut.set_result(r)

    def _on_close(self, e: Pending, reason: str) -> None:
        e.link = None
        for fut in e.replies.values():
            if not fut.done():
                fut.cancel()
        if e.state not in ("paired", "failed") and self.pending.get(e.device_id) is e:
            del self.pending[e.device_id]

    def _expire(self) -> None:
        now = time.time()
        for dev_id, e in list(self.pending.items()):
            if now - e.since > WINDOW_S + 30:
                del self.pending[dev_id]
                if e.link is not None:
                    asyncio.get_running_loop().create_task(e.link.close())

    def list(self) -> list[dict]:
        self._expire()
        return [e.to_dict() for e in self.pending.values()]

    # ---- the exchange ----

    async def _request(self, e: Pending, args: bytes, timeout_s: float = 5.0) -> p.Reply:
        if e.link is None:
            raise PairingError("the device went away")
        e.rid = (e.rid + 1) & 0xFF
        frame = unsigned_control_frame(p.Op.PAIR, e.rid, args)  # the gateway has no key yet
        reply = await await_reply(e.link, frame, e.rid, e.replies, timeout_s)
        if reply is None:
            raise PairingError("the device did not answer")
        return reply

    def _get(self, device_id: str) -> Pending:
        self._expire()
        e = self.pending.get(device_id)
        if e is None:
            raise PairingError("no such device waiting to pair")
        if e.busy:
            raise PairingError("pairing is already under way")
        return e

    async def start(self, device_id: str) -> dict:
        """Agree on a key with the device; returns its entry with the code to compare."""
        e = self._get(device_id)
        if e.state not in ("wants_to_pair", "code", "failed") or e.link is None:
            raise PairingError(f"cannot start: {e.state}")
        e.busy, e.state, e.error = True, "exchanging", ""
        try:
            y = secrets.randbits(EXP_BITS) | (1 << (EXP_BITS - 1))
            a_bytes = pow(2, y, PRIME).to_bytes(GROUP_BYTES, "big")
            commit = hashlib.sha256(LABEL_COMMIT + a_bytes).digest()
            self._ok(await self._request(e, bytes((PS_COMMIT,)) + commit, timeout_s=30.0))
            b_bytes = b""
            for half in (0, 1):
                r = self._ok(await self._request(e, bytes((PS_GET, half))))
                if len(r.data) != HALF:
                    raise PairingError("bad public value from the device")
                b_bytes += r.data
            b = int.from_bytes(b_bytes, "big")
            if not 2 <= b <= PRIME - 2:
                raise PairingError("bad public value from the device")
            for half in (0, 1):
                part = a_bytes[half * HALF : (half + 1) * HALF]
                self._ok(await self._request(e, bytes((PS_REVEAL, half)) + part, 30.0))
            s_bytes = pow(b, y, PRIME).to_bytes(GROUP_BYTES, "big")
            e.key = derive_key(s_bytes, a_bytes, b_bytes, e.device_id)
            e.code = code_of(a_bytes, b_bytes)
            e.state = "code"
            log.info("%s: pairing code ready", device_id)
            return e.to_dict()
        except PairingError as exc:
            e.state, e.error = "failed", str(exc)
            raise
        finally:
            e.busy = False

    @staticmethod
    def _ok(r: p.Reply) -> p.Reply:
        if r.status != p.Status.OK:
            raise PairingError(f"the device refused ({p.Status(r.status).name.lower()})")
        return r

    async def confirm(self, device_id: str, wait_s: float = CONFIRM_WAIT_S) -> dict:
        """The user saw the same code on both: once the device's button is pressed too, the
        device stores the key and proves it; then the gateway enrols it."""
        e = self._get(device_id)
        if e.state != "code" or e.key is None:
            raise PairingError("no code to confirm")
        e.busy, e.state = True, "confirming"
        try:
            mac = hmac.digest(e.key, LABEL_CONFIRM + e.device_id.encode(), "sha256")[:16]
            deadline = time.monotonic() + wait_s
            while True:
                r = await self._request(e, bytes((PS_CONFIRM,)) + mac)
                if r.status == p.Status.OK:
                    break
                if r.status != p.Status.UNAVAILABLE or time.monotonic() > deadline:
                    raise PairingError("the device did not accept (press its button when the "
                                       "codes match)")  # fmt: skip
                await asyncio.sleep(0.5)
            want = hmac.digest(e.key, LABEL_DONE + e.device_id.encode(), "sha256")[:16]
            if not hmac.compare_digest(r.data[:16], want):
                raise PairingError("the device's proof does not verify")
            self.gw.enrolment.enrol(e.device_id, _TYPES[e.device_type], e.key)
            allow = getattr(self.gw.transport, "allow", None)  # a radio allowlist (BLE)
            if allow is not None:
                allow(e.device_id)
            e.state, e.key = "paired", None
            log.info("%s: paired and enrolled", device_id)
            if e.link is not None:
                await e.link.close()  # it comes back without the flag, as an enrolled device
            return e.to_dict()
        except PairingError as exc:
            e.state, e.error = "failed", str(exc)
            raise
        finally:
            e.busy = False

    async def cancel(self, device_id: str) -> None:
        e = self.pending.pop(device_id, None)
        if e is not None and e.link is not None:
            await e.link.close()


def pairing_for(gw) -> PairingManager:
    """The gateway's PairingManager, created on first use."""
    m = getattr(gw, "pairing", None)
    if m is None:
        m = gw.pairing = PairingManager(gw)
    return m
