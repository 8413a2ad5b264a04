"""What a message of the MQTT contract (docs/mqtt.md) becomes in the ingest database: a pure
function of its topic and bytes, no I/O.

`decode` checks a message against its JSON Schema (docs/schemas, installed as the package
`perimon_schemas`) and returns the row to store, keyed by the message's identifier, with its
sequence number (docs/mqtt.md, "Sequence numbers") beside it; or `Invalid`, saying why.

Validation uses jsonschema-rs (Rust, Draft 2020-12; installed by `perimon[hospital]`) when it
is installed, else the pure-Python jsonschema that perimon depends on: the same schemas and the
same draft, about 80 times slower (docs/scaling.md). Neither checks `format` (an annotation in
Draft 2020-12): the schemas spell every time out as a `pattern`.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

from perimon_schemas import load_schema, schema_path

log = logging.getLogger(__name__)

# The kinds stored, each validated by the schema of the same name.
STORED_KINDS: Final = ("observation", "tcb", "ctg", "alert", "session", "movement")
# What a receipt's rejection may hold (docs/schemas/receipt.schema.json): the longest
# identifier it names, and the longest reason.
_REJECTION: Final = load_schema("receipt")["properties"]["rejected"]["items"]["properties"]
MAX_NAMED_ID_CHARS: Final[int] = _REJECTION["msg_id"]["maxLength"]
MAX_REASON_CHARS: Final[int] = _REJECTION["reason"]["maxLength"]
NO_BOOT: Final = -1  # the `boot` of a series the gateway numbers across boots (alert, ctg, session)

JsonObject = dict[str, Any]
Check = Callable[[Any], str | None]  # a parsed message -> None if valid, else the first error


class Sequence(NamedTuple):
    """One received number of a series (docs/mqtt.md, "Sequence numbers")."""

    gateway_id: str
    device_id: str
    kind: str  # a topic kind, or `{code}-obs` for FHIR Observations
    boot: int  # NO_BOOT for the kinds the gateway numbers across boots
    seq: int
    span: int  # how many numbers it covers (`count` of a trace message; 1 for the others)


class Reading(NamedTuple):
    """A row of `readings`: an Observation, a TcB reading, CTG findings, a session or a
    movement mark."""

    msg_id: str
    kind: str
    gateway_id: str
    device_id: str
    code: str | None
    t: str | None
    payload: str  # the message as received


class Alert(NamedTuple):
    """A row of `alerts` (`ack_status` is filled in when the gateway confirms an ack)."""

    msg_id: str
    gateway_id: str
    device_id: str
    alert: str
    state: str
    severity: str
    detail: str
    t: str
    raised_at: str
    payload: str  # the message as received


@dataclass(frozen=True, slots=True)
class Decoded:
    row: Reading | Alert
    sequence: Sequence | None  # None: an Observation whose identifier is not one perimon builds

    @property
    def msg_id(self) -> str:
        return self.row.msg_id


@dataclass(frozen=True, slots=True)
class Invalid:
    """A message the ingest will never store. `msg_id` and `gateway_id` are set when the message
    names itself and its gateway (a JSON object with an identifier, on a gateway's topic): its
    gateway is then told, in a receipt, with `code` (docs/mqtt.md, "Receipts")."""

    reason: str
    code: str = "topic"  # "topic", "json" or "schema": the first word of a receipt's reason
    msg_id: str | None = None
    gateway_id: str | None = None
    detail: str = ""  # what is wrong, without the topic (a receipt goes to the gateway anyway)

    def receipt_reason(self) -> str:
        """`{code}: {detail}` on one printable line, cut to what a receipt holds."""
        text = "".join(c if c.isprintable() else " " for c in f"{self.code}: {self.detail}")
        return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def load_checks(schemas_dir: Path | None = None) -> dict[str, Check]:
    """A check for each stored kind, from `schemas_dir` (None: the installed schemas)."""
    out: dict[str, Check] = {}
    for kind in STORED_KINDS:
        path = schema_path(kind) if schemas_dir is None else schemas_dir / f"{kind}.schema.json"
        out[kind] = _check(json.loads(path.read_text(encoding="utf-8")))
    return out


def _check(schema: JsonObject) -> Check:
    try:
        rs = importlib.import_module("jsonschema_rs")
    except ImportError:
        rs = None
    if rs is not None:
        fast = rs.Draft202012Validator(schema)

        def check_rs(payload: Any) -> str | None:
            if fast.is_valid(payload):
                return None
            return str(next(iter(fast.iter_errors(payload))).message)

        return check_rs
    slow = importlib.import_module("jsonschema").Draft202012Validator(schema)

    def check_py(payload: Any) -> str | None:
        error = next(iter(slow.iter_errors(payload)), None)
        return None if error is None else str(error.message)

    return check_py


def fast_validation() -> bool:
    """Whether jsonschema-rs is installed (`perimon[hospital]`)."""
    try:
        importlib.import_module("jsonschema_rs")
    except ImportError:
        return False
    return True


def topic_parts(topic: str) -> tuple[str, str, str] | None:
    """(gateway, device, kind) of `{prefix}/{gateway}/device/{device}/{kind}`, for a stored kind."""
    parts = topic.rsplit("/", 4)
    if len(parts) != 5 or parts[2] != "device" or parts[4] not in STORED_KINDS:
        return None
    return parts[1], parts[3], parts[4]


def decode(topic: str, body: bytes, checks: Mapping[str, Check]) -> Decoded | Invalid:
    """The row a message on `topic` is stored as, or why it is not."""
    where = topic_parts(topic)
    if where is None:
        return Invalid(f"not a stored topic: {topic}")
    gateway_id, device_id, kind = where
    try:
        text = body.decode("utf-8")
        payload = json.loads(text)
    except ValueError:  # UnicodeDecodeError is one
        return Invalid(f"not UTF-8 JSON on {topic}", "json", None, gateway_id, "not UTF-8 JSON")
    error = checks[kind](payload)
    if error is not None:
        return Invalid(f"invalid {kind} on {topic}: {error}", "schema", named_id(payload),
                       gateway_id, f"{kind}: {error}")  # fmt: skip
    seq = sequence_of(kind, payload)
    numbered = None if seq is None else Sequence(gateway_id, device_id, *seq)
    row: Reading | Alert
    if kind == "alert":
        row = Alert(payload["msg_id"], gateway_id, payload["device_id"], payload["alert"],
                    payload["state"], payload["severity"], payload["detail"], payload["t"],
                    payload["raised_at"], text)  # fmt: skip
    elif kind == "observation":
        when = payload.get("effectiveDateTime") or payload["effectivePeriod"]["start"]
        row = Reading(payload["identifier"][0]["value"], kind, gateway_id, device_id,
                      payload["code"]["coding"][0]["code"], when, text)  # fmt: skip
    else:
        row = Reading(payload["msg_id"], kind, gateway_id, device_id, None, payload.get("t"), text)
    return Decoded(row, numbered)


def named_id(payload: Any) -> str | None:
    """The identifier a message that failed its schema names itself by, as the gateway's outbox
    keeps it (gateway/publish/mqtt.py, `message_id`): `msg_id`, else a FHIR resource's first
    identifier value; None when there is none, or it is longer than a receipt may name."""
    if not isinstance(payload, dict):
        return None
    value: object = None
    if "msg_id" in payload:
        value = payload["msg_id"]
    else:
        ident = payload.get("identifier")
        if payload.get("resourceType") and isinstance(ident, list) and ident:
            value = ident[0].get("value") if isinstance(ident[0], dict) else None
    if value is None:
        return None
    text = str(value)
    return text if 0 < len(text) <= MAX_NAMED_ID_CHARS else None


def sequence_of(kind: str, payload: Mapping[str, Any]) -> tuple[str, int, int, int] | None:
    """(series kind, boot, seq, count) of a validated message (docs/mqtt.md, "Sequence
    numbers"), or None for an Observation whose identifier is not one the gateway builds."""
    if kind in ("alert", "ctg", "session"):
        return kind, NO_BOOT, int(payload["seq"]), 1
    if kind != "observation":  # tcb, movement, fhr, mhr: numbered by the device, per boot
        return kind, int(payload["boot"]), int(payload["seq"]), int(payload.get("count", 1))
    # `{device}:{boot}:fhr-obs:{first point}` (SampledData, one number a point) or
    # `{device}:{boot}:tcb:{seq}:{code}` (one per TcB reading and code)
    parts = str(payload["identifier"][0]["value"]).split(":")
    try:
        if len(parts) == 4 and parts[2].endswith("-obs"):
            data = payload.get("valueSampledData", {}).get("data", "")
            return parts[2], int(parts[1]), int(parts[3]), max(1, len(data.split()))
        if len(parts) == 5 and parts[2] == "tcb":
            return f"{parts[4]}-obs", int(parts[1]), int(parts[3]), 1
    except ValueError:
        pass
    return None


def alert_id(msg_id: str) -> str:
    """The id an `ack_alert` command names: the raised alert's `msg_id` without `:raised`."""
    return msg_id.rsplit(":", 1)[0]
