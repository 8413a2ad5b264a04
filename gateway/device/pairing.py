"""Pairing a new monitor at home: by its button and a code to compare, or by its label.

Both agree on a new device key by Diffie-Hellman in the RFC 3526 2048-bit group, the gateway
committing to its public value first, and confirm the key both ways before either side stores
it (docs/protocol.md, "Pairing"). They differ only in what authenticates the exchange:

* button: a device whose button was pressed advertises "pairing" for two minutes; the gateway
  keeps such a link open instead of refusing it (at most MAX_PENDING at once, each closed after
  the window) and lists the device as "wants to pair". Both
  sides show the same 4-digit code, derived from both public values; if the codes match, the
  user presses the device's button and confirms on the page.
* label: the label printed at provisioning carries a pairing secret (gateway/web/pair_code.py).
  After the user's tap on /pair the gateway takes the device's next link (expect_label), its
  commitment is an HMAC under that secret, and the device's answer is an HMAC over both public
  values: no code, no press, and neither side accepts a value the other did not send.

Nothing is typed. The threat model is in docs/security.md, "Pairing at home".
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec

from gateway import protocol as p
from gateway.device.control import await_reply, unsigned_control_frame
from gateway.device.enrolment import DEVICE_ID_RE, Enrolment
from gateway.device.session import DeviceSession
from gateway.transports.base import MAX_PAIRING_LINKS, REFUSED_HOLD_S, DeviceLink, Transport

log = logging.getLogger(__name__)
_P = ParamSpec("_P")

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
GRACE_S = 30.0  # a link held for pairing is closed this long after the window (if not paired)
MAX_PENDING = MAX_PAIRING_LINKS  # links held for pairing at once (a neighbour could invent many)
CONFIRM_WAIT_S = 60.0  # how long confirming waits for the press on the device
# How long a label pairing waits for the device to connect: longer than a transport's pause
# before reconnecting a device it closed, should the transport not honour Transport.expect.
LABEL_LINK_WAIT_S = REFUSED_HOLD_S + 15.0
# A PAIR step with no answer is asked again, up to this many times, each after its share of
# the step's time (at least ATTEMPT_MIN_S: a radio round trip under load).
REQUEST_ATTEMPTS = 3
ATTEMPT_MIN_S = 5.0
BUSY_RETRY_S = 0.3  # after a busy answer (no room on the device's heap for a moment)

LABEL_COMMIT = b"perimon-v1 pair commit"
LABEL_LABEL_COMMIT = b"perimon-v1 pair label commit"
LABEL_LABEL_DEVICE = b"perimon-v1 pair label device"
LABEL_KEY = b"perimon-v1 pair key"
LABEL_CODE = b"perimon-v1 pair code"
LABEL_CONFIRM = b"perimon-v1 pair confirm"
LABEL_DONE = b"perimon-v1 pair done"

_TYPES: dict[int, str] = {
    p.DeviceType.FETAL_HEART: "fetal_heart",
    p.DeviceType.JAUNDICE: "jaundice",
}


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


def label_commit(secret: bytes, device_id: str, a_bytes: bytes) -> bytes:
    """The gateway's commitment to A in a label pairing: it also proves the label's secret."""
    return hmac.digest(secret, LABEL_LABEL_COMMIT + device_id.encode() + a_bytes, "sha256")


def label_device(secret: bytes, device_id: str, a_bytes: bytes, b_bytes: bytes) -> bytes:
    """The device's answer in a label pairing: B is its own, for this A."""
    msg = LABEL_LABEL_DEVICE + device_id.encode() + a_bytes + b_bytes
    return hmac.digest(secret, msg, "sha256")[:16]


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
    replies: dict[int, asyncio.Future[p.Reply]] = field(default_factory=dict)
    rid: int = 0
    secret: bytes | None = None  # the label's pairing secret: a label pairing
    linked: asyncio.Event = field(default_factory=asyncio.Event)  # (label) the device is here

    def to_dict(self) -> dict[str, Any]:
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
    def __init__(self, enrolment: Enrolment, transport: Transport,
                 sessions: dict[str, DeviceSession]) -> None:  # fmt: skip
        self.enrolment = enrolment  # a paired device is enrolled here
        self.transport = transport  # told to expect, then allow, a device being paired
        self.sessions = sessions  # an enrolled device re-paired by its label gives up its link
        self.pending: dict[str, Pending] = {}  # by the button
        self.labels: dict[str, Pending] = {}  # by the label: waiting for or holding a link

    # ---- links ----

    def wants(self, link: DeviceLink) -> bool:
        """A label pairing waits for this device: the gateway hands its link over."""
        e = self.labels.get(link.device_id)
        return e is not None and e.link is None and e.device_type == link.device_type

    async def on_link(self, link: DeviceLink) -> None:
        """A device in its pairing window, or one a label pairing waits for, connected: keep
        it, list it (button), process nothing."""
        if self.wants(link):
            e = self.labels[link.device_id]
            self._hold(e, link)
            link.pairing = True  # held for pairing: never dropped as a silent link
            e.linked.set()
            log.info("%s: connected for pairing by its label", link.device_id)
            return
        self._expire()
        ok_id = bool(DEVICE_ID_RE.match(link.device_id))
        held = sum(1 for x in self.pending.values() if x.link is not None)
        if (
            not ok_id
            or link.device_type not in _TYPES
            or (link.device_id not in self.pending and held >= MAX_PENDING)
        ):
            log.warning("pairing request refused (%s)", "bad id" if not ok_id else "too many")
            await link.close()
            return
        old = self.pending.get(link.device_id)
        if old is not None and old.link is not None and old.link is not link:
            await old.link.close()
        e = Pending(link.device_id, link.device_type, None)
        self.pending[link.device_id] = e
        self._hold(e, link)
        # Nobody may be looking at the pairing page: the link is closed after the window
        # whether or not anything lists the devices (which also expires them).
        asyncio.get_running_loop().call_later(WINDOW_S + GRACE_S + 0.1, self._expire)
        log.info("%s: wants to pair", link.device_id)

    def _hold(self, e: Pending, link: DeviceLink) -> None:
        e.link = link
        link.on_frame = lambda data: self._on_frame(e, data)
        link.on_close = lambda reason: self._on_close(e, reason)

    def _on_frame(self, e: Pending, data: bytes) -> None:
        try:
            f = p.decode_frame(data)
        except p.FrameError:
            return
        # Only replies matter here; they are signed with a key the gateway does not have yet,
        # so the exchange's own checks (commitment, code or label, proof) are what protects it.
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
        e.linked.clear()
        for fut in e.replies.values():
            if not fut.done():
                fut.cancel()
        if e.secret is not None:
            return  # pair_by_label ends its own entry
        if e.state not in ("paired", "failed") and self.pending.get(e.device_id) is e:
            del self.pending[e.device_id]

    def _expire(self) -> None:
        now = time.time()
        for dev_id, e in list(self.pending.items()):
            if now - e.since > WINDOW_S + GRACE_S:
                del self.pending[dev_id]
                if e.link is not None:
                    asyncio.get_running_loop().create_task(e.link.close())

    def list(self) -> list[dict[str, Any]]:
        self._expire()
        return [e.to_dict() for e in self.pending.values()]

    # ---- the exchange ----

    async def _request(self, e: Pending, args: bytes, timeout_s: float = 5.0) -> p.Reply:
        """One PAIR step, asked up to REQUEST_ATTEMPTS times within about `timeout_s` (at
        least ATTEMPT_MIN_S each) while no answer comes: the same bytes under the same id,
        which the device answers as it did the first time (firmware/lib/pairing.py). A write
        can be dropped (the radio's ring full), and one lost step lost the pairing. A busy
        answer (the device's heap had no room for the big numbers for a moment: seen under
        the Unix port) is asked again after BUSY_RETRY_S, within the same time."""
        if e.link is None:
            raise PairingError("the device went away")
        e.rid = (e.rid + 1) & 0xFF
        frame = unsigned_control_frame(p.Op.PAIR, e.rid, args)  # the gateway has no key yet
        each_s = max(ATTEMPT_MIN_S, timeout_s / REQUEST_ATTEMPTS)
        deadline = time.monotonic() + each_s * REQUEST_ATTEMPTS
        while e.link is not None and (left := deadline - time.monotonic()) > 0:
            reply = await await_reply(e.link, frame, e.rid, e.replies, min(each_s, left))
            if reply is not None and reply.status != p.Status.BUSY:
                return reply
            if reply is not None:
                if deadline - time.monotonic() <= BUSY_RETRY_S:
                    return reply  # still busy: _ok says so
                log.info("%s: pairing step asked again (the device was busy)", e.device_id)
                await asyncio.sleep(BUSY_RETRY_S)
            elif deadline - time.monotonic() > 0:
                log.info("%s: pairing step asked again (no answer in %.0f s)", e.device_id, each_s)
        raise PairingError("the device did not answer")

    def _get(self, device_id: str) -> Pending:
        self._expire()
        e = self.pending.get(device_id)
        if e is None:
            raise PairingError("no such device waiting to pair")
        if e.busy:
            raise PairingError("pairing is already under way")
        return e

    @staticmethod
    async def _run(e: Pending, step: Callable[Concatenate[Pending, _P], Awaitable[None]],
                   *args: _P.args, **kwargs: _P.kwargs) -> dict[str, Any]:  # fmt: skip
        """One step of a pairing; a failure is kept in the entry (for the page) and raised."""
        e.busy, e.error = True, ""
        try:
            await step(e, *args, **kwargs)
            return e.to_dict()
        except PairingError as exc:
            e.state, e.error = "failed", str(exc)
            raise
        finally:
            e.busy = False

    async def start(self, device_id: str) -> dict[str, Any]:
        """Agree on a key with the device; returns its entry with the code to compare."""
        e = self._get(device_id)
        if e.state not in ("wants_to_pair", "code", "failed") or e.link is None:
            raise PairingError(f"cannot start: {e.state}")
        return await self._run(e, self._exchange)

    async def confirm(self, device_id: str, wait_s: float = CONFIRM_WAIT_S) -> dict[str, Any]:
        """The user saw the same code on both: once the device's button is pressed too, the
        device stores the key and proves it; then the gateway enrols it."""
        e = self._get(device_id)
        if e.state != "code" or e.key is None:
            raise PairingError("no code to confirm")
        return await self._run(e, self._confirm, wait_s)

    async def pair_by_label(self, device_id: str, device_type: str, secret: bytes,
                            wait_s: float = LABEL_LINK_WAIT_S) -> dict[str, Any]:  # fmt: skip
        """Pair the device whose label carries `secret`: wait for its next link (up to
        wait_s), agree on a key authenticated by the secret, confirm, enrol."""
        if device_id in self.labels:
            raise PairingError("pairing is already under way")
        dev_type = next(t for t, name in _TYPES.items() if name == device_type)
        e = Pending(device_id, dev_type, None, state="waiting", secret=secret)
        self.labels[device_id] = e
        try:
            self.transport.expect(device_id)  # its next link comes at once, not after a hold-off
            session = self.sessions.get(device_id)
            auth = session.auth if session is not None else None
            if session is not None and session.link is not None and not (auth and auth.established):
                # enrolled under a key it does not prove (yet): its link is taken for the
                # attempt; it reconnects as before if the attempt fails
                await session.link.close()
            try:
                async with asyncio.timeout(wait_s):  # not wait_for: on 3.11 it can eat a cancel
                    await e.linked.wait()
            except TimeoutError:
                raise PairingError("the monitor did not connect") from None
            await self._run(e, self._exchange)
            return await self._run(e, self._confirm, 0.0)
        finally:
            del self.labels[device_id]
            if e.link is not None:
                await e.link.close()

    async def _exchange(self, e: Pending) -> None:
        """Diffie-Hellman with the gateway's commitment: SHA-256 of A (button), or an HMAC of
        A under the label's secret, answered by the device's HMAC of A and B (label)."""
        e.state, e.code, e.key = "exchanging", None, None
        y = secrets.randbits(EXP_BITS) | (1 << (EXP_BITS - 1))
        a_bytes = pow(2, y, PRIME).to_bytes(GROUP_BYTES, "big")
        if e.secret is None:
            commit = bytes((p.PairStep.COMMIT,)) + hashlib.sha256(LABEL_COMMIT + a_bytes).digest()
        else:
            commit = bytes((p.PairStep.LABEL_COMMIT,)) + label_commit(e.secret, e.device_id,
                                                                      a_bytes)  # fmt: skip
        r = await self._request(e, commit, timeout_s=30.0)
        if e.secret is not None and r.status == p.Status.UNAVAILABLE:
            raise PairingError("the monitor takes another label pairing only after a pause "
                               "(one failed lately): try again in a minute")  # fmt: skip
        if e.secret is None and r.status == p.Status.BAD_REQUEST:
            # one exchange per press (firmware/lib/pairing.py): a second one closes the window
            raise PairingError("the monitor takes one attempt per press of its button: "
                               "press it again, then start")  # fmt: skip
        self._ok(r)
        b_bytes = b""
        for half in (0, 1):
            r = self._ok(await self._request(e, bytes((p.PairStep.GET, half))))
            if len(r.data) != HALF:
                raise PairingError("bad public value from the device")
            b_bytes += r.data
        b = int.from_bytes(b_bytes, "big")
        if not 2 <= b <= PRIME - 2:
            raise PairingError("bad public value from the device")
        for half in (0, 1):
            part = a_bytes[half * HALF : (half + 1) * HALF]
            r = await self._request(e, bytes((p.PairStep.REVEAL, half)) + part, 30.0)
            if e.secret is not None and half == 1 and r.status == p.Status.BAD_REQUEST:
                raise PairingError("the monitor does not hold this label's secret")
            self._ok(r)
        if e.secret is not None:
            want = label_device(e.secret, e.device_id, a_bytes, b_bytes)
            if not hmac.compare_digest(r.data[:16], want):
                raise PairingError("the monitor's answer does not verify with this label")
        s_bytes = pow(b, y, PRIME).to_bytes(GROUP_BYTES, "big")
        e.key = derive_key(s_bytes, a_bytes, b_bytes, e.device_id)
        if e.secret is None:
            e.code = code_of(a_bytes, b_bytes)
            e.state = "code"
            log.info("%s: pairing code ready", e.device_id)
        else:
            e.state = "confirming"

    @staticmethod
    def _ok(r: p.Reply) -> p.Reply:
        if r.status == p.Status.BUSY:  # still short of memory after asking again for a while
            raise PairingError("the monitor had no room for the exchange: try again")
        if r.status != p.Status.OK:
            raise PairingError(f"the device refused ({p.Status(r.status).name.lower()})")
        return r

    async def _confirm(self, e: Pending, wait_s: float) -> None:
        """Key confirmation both ways; the device stores the key once the user pressed its
        button (button: status 3 until then), the gateway enrols the device."""
        key = e.key
        if key is None:
            raise PairingError("no key agreed")
        e.state = "confirming"
        mac = hmac.digest(key, LABEL_CONFIRM + e.device_id.encode(), "sha256")[:16]
        deadline = time.monotonic() + wait_s
        while True:
            r = await self._request(e, bytes((p.PairStep.CONFIRM,)) + mac)
            if r.status == p.Status.OK:
                break
            if r.status != p.Status.UNAVAILABLE or time.monotonic() > deadline:
                why = "the monitor did not accept the key"
                if e.secret is None:
                    why = "the device did not accept (press its button when the codes match)"
                raise PairingError(why)
            await asyncio.sleep(0.5)
        want = hmac.digest(key, LABEL_DONE + e.device_id.encode(), "sha256")[:16]
        if not hmac.compare_digest(r.data[:16], want):
            raise PairingError("the device's proof does not verify")
        self.enrolment.enrol(e.device_id, _TYPES[e.device_type], key)
        self.transport.allow(e.device_id)  # a radio allowlist (BLE)
        e.state, e.key = "paired", None
        log.info("%s: paired by its %s and enrolled", e.device_id,
                 "button" if e.secret is None else "label")  # fmt: skip
        if e.link is not None:
            await e.link.close()  # it comes back without the flag, as an enrolled device

    async def cancel(self, device_id: str) -> None:
        e = self.pending.pop(device_id, None)
        if e is not None and e.link is not None:
            await e.link.close()
