"""The code on a monitor's label: a link that a phone's camera opens on the home gateway.

    http://perimon.local:8080/pair#c=<code>

The code (base64url, no padding) carries everything the gateway needs to enrol the monitor:

    u8 version (1) | u8 device type (1 fetal heart, 2 jaundice) | u8 id length | id (ASCII)
    | the device's 32-byte key | 4-byte check: SHA-256("perimon-v1 label" || all before)[:4]

It sits after `#`, so the browser never sends it in a request line: it stays out of the
gateway's logs and any proxy's; the pairing page's script reads it and posts it only when the
user confirms. The check catches a misread or edited code; a code made up with another key is
caught when the monitor cannot prove that key (gateway/web/scan.py). docs/home.md, "By the code
on the label", says what the label protects and what it does not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

VERSION = 1
KEY_LEN = 32
CHECK_LEN = 4
LABEL_CHECK = b"perimon-v1 label"
DEFAULT_PAIR_URL = "http://perimon.local:8080/pair"
TYPES = {"fetal_heart": 1, "jaundice": 2}  # gateway.protocol.DeviceType
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # as gateway/enrolment.py


class LabelCodeError(ValueError):
    """The scanned code cannot be used (a sentence for the person holding the phone)."""


@dataclass(frozen=True)
class LabelCode:
    device_id: str
    device_type: str  # "fetal_heart" | "jaundice"
    key: bytes


def _check(body: bytes) -> bytes:
    return hashlib.sha256(LABEL_CHECK + body).digest()[:CHECK_LEN]


def encode(device_id: str, device_type: str, key: bytes) -> str:
    if not _ID_RE.match(device_id) or device_type not in TYPES or len(key) != KEY_LEN:
        raise ValueError("a label needs a valid device id, a device type and a 32-byte key")
    raw = device_id.encode("ascii")
    body = bytes((VERSION, TYPES[device_type], len(raw))) + raw + key
    return base64.urlsafe_b64encode(body + _check(body)).rstrip(b"=").decode("ascii")


def pair_link(code: str, pair_url: str = DEFAULT_PAIR_URL) -> str:
    return f"{pair_url}#c={code}"


def decode(scanned: str) -> LabelCode:
    """The monitor a scanned code names: from the whole link or the code alone."""
    text = scanned.strip()
    if "c=" in text or "://" in text:
        parts = urlsplit(text)
        found = parse_qs(parts.fragment).get("c") or parse_qs(parts.query).get("c")
        if not found:
            raise LabelCodeError("This is not the code of a perimon monitor.")
        text = found[0]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise LabelCodeError("This is not the code of a perimon monitor.") from None
    if len(raw) < 3 + 1 + KEY_LEN + CHECK_LEN or raw[0] != VERSION:
        raise LabelCodeError("This is not the code of a perimon monitor.")
    body, check = raw[:-CHECK_LEN], raw[-CHECK_LEN:]
    n = body[2]
    if len(body) != 3 + n + KEY_LEN or _check(body) != check:
        raise LabelCodeError(
            "This code does not check: part of it was changed or misread. Scan the label again."
        )
    types = {v: k for k, v in TYPES.items()}
    device_id = body[3 : 3 + n].decode("ascii", "replace")
    if body[1] not in types or not _ID_RE.match(device_id):
        raise LabelCodeError("This is not the code of a perimon monitor.")
    return LabelCode(device_id, types[body[1]], bytes(body[3 + n :]))
