"""The code on a monitor's label: a link that a phone's camera opens on the home gateway.

    https://perimon.local:8443/pair#c=<code>&fp=<the start of the gateway's certificate fingerprint>

The code (base64url, no padding) names the monitor and carries its pairing secret:

    u8 version (2) | u8 device type (1 fetal heart, 2 jaundice) | u8 id length | id (ASCII)
    | the device's 16-byte pairing secret | 4-byte check: SHA-256("perimon-v1 label" || all before)[:4]

The pairing secret is written into the monitor by `perimon provision` beside its key and is
used for nothing but authenticating a pairing by label: a fresh Diffie-Hellman exchange whose
agreed key becomes the device key (gateway/device/pairing.py; docs/protocol.md, "Pairing"). The key
that signs the monitor's frames is never on the label.

The code sits after `#`, so the browser never sends it in a request line: it stays out of the
gateway's logs and any proxy's; the pairing page's script reads it and posts it only when the
user confirms. The check catches a misread or edited code; a made-up secret is caught by the
monitor, which does not answer it (gateway/web/scan.py). Labels of version 1 carried the
monitor's key itself; they are refused (docs/home.md, "By the code on the label").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from gateway.device.enrolment import DEVICE_ID_RE
from gateway.protocol import PAIR_SECRET_LEN, DeviceType

VERSION = 2
OLD_VERSION = 1  # carried the device key (32 bytes) where the pairing secret is now
SECRET_LEN = PAIR_SECRET_LEN
_OLD_KEY_LEN = 32
CHECK_LEN = 4
LABEL_CHECK = b"perimon-v1 label"
DEFAULT_PAIR_URL = "https://perimon.local:8443/pair"  # as scripts/install-pi.sh sets it up
FINGERPRINT_BYTES = (
    8  # of the nurse view's certificate's SHA-256, on the label (gateway/web/tls.py)
)
TYPES = {"fetal_heart": DeviceType.FETAL_HEART, "jaundice": DeviceType.JAUNDICE}
_NOT_OURS = "This is not the code of a perimon monitor."
OLD_LABEL = (
    "This label is from an older version of perimon and cannot be used any more: "
    "pair the monitor with its button (Pair a new monitor)."
)


class LabelCodeError(ValueError):
    """The scanned code cannot be used (a sentence for the person holding the phone)."""


@dataclass(frozen=True)
class LabelCode:
    device_id: str
    device_type: str  # "fetal_heart" | "jaundice"
    secret: bytes  # the monitor's pairing secret (not its key)


def _check(body: bytes) -> bytes:
    return hashlib.sha256(LABEL_CHECK + body).digest()[:CHECK_LEN]


def encode(device_id: str, device_type: str, secret: bytes) -> str:
    if not DEVICE_ID_RE.match(device_id) or device_type not in TYPES or len(secret) != SECRET_LEN:
        raise ValueError(
            f"a label needs a valid device id, a device type and a {SECRET_LEN}-byte secret"
        )
    raw = device_id.encode("ascii")
    body = bytes((VERSION, TYPES[device_type], len(raw))) + raw + secret
    return base64.urlsafe_b64encode(body + _check(body)).rstrip(b"=").decode("ascii")


def pair_link(code: str, pair_url: str = DEFAULT_PAIR_URL, fingerprint: str | None = None) -> str:
    """The label's link; with the gateway's certificate fingerprint, its start as `fp`."""
    link = f"{pair_url}#c={code}"
    if fingerprint:
        link += "&fp=" + short_fingerprint(fingerprint).replace(":", "")
    return link


def short_fingerprint(fingerprint: str) -> str:
    """The first FINGERPRINT_BYTES of a fingerprint (AB:CD:...), as a person compares it."""
    return ":".join(fingerprint.split(":")[:FINGERPRINT_BYTES])


def decode(scanned: str) -> LabelCode:
    """The monitor a scanned code names: from the whole link or the code alone."""
    text = scanned.strip()
    if "c=" in text or "://" in text:
        parts = urlsplit(text)
        found = parse_qs(parts.fragment).get("c") or parse_qs(parts.query).get("c")
        if not found:
            raise LabelCodeError(_NOT_OURS)
        text = found[0]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise LabelCodeError(_NOT_OURS) from None
    if len(raw) < 3 + 1 + SECRET_LEN + CHECK_LEN or raw[0] not in (VERSION, OLD_VERSION):
        raise LabelCodeError(_NOT_OURS)
    body, check = raw[:-CHECK_LEN], raw[-CHECK_LEN:]
    n = body[2]
    if raw[0] == OLD_VERSION:
        if len(body) == 3 + n + _OLD_KEY_LEN and _check(body) == check:
            raise LabelCodeError(OLD_LABEL)
        raise LabelCodeError(_NOT_OURS)
    if len(body) != 3 + n + SECRET_LEN or _check(body) != check:
        raise LabelCodeError(
            "This code does not check: part of it was changed or misread. Scan the label again."
        )
    types = {int(v): k for k, v in TYPES.items()}  # by the byte on the label
    device_id = body[3 : 3 + n].decode("ascii", "replace")
    if body[1] not in types or not DEVICE_ID_RE.match(device_id):
        raise LabelCodeError(_NOT_OURS)
    return LabelCode(device_id, types[body[1]], bytes(body[3 + n :]))
