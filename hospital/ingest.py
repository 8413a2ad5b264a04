"""`perimon-ingest`: the reference hospital subscriber (its command line: hospital/cli.py).

Subscribes with an MQTT 5 shared subscription (`$share/{group}/...`), so several workers run
side by side and the broker hands each message to one of them; validates every message against
the MQTT contract's JSON Schemas (docs/schemas, installed as the package `perimon_schemas`);
stores readings (FHIR Observations, TcB readings, CTG findings, recording sessions) and alerts in
a database with the message's identifier as a unique key, so a QoS 1 redelivery or a message
seen by two workers after a reconnect is stored once; and acknowledges each newly raised alert
back to its gateway on the command topic (MQTT 5 request/response, docs/mqtt.md).

Every message's sequence number (docs/mqtt.md, "Sequence numbers") is kept in the same database,
so `gaps()` finds the numbers missing between those received, per gateway, device, kind and
boot, whichever worker received them and in whatever order.

Databases: SQLite by default (a file path or `sqlite:///path`), PostgreSQL with a
`postgresql://` URL when the psycopg driver is installed (not installed or tested here).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from perimon_schemas import schema_path

log = logging.getLogger(__name__)

STORED_KINDS = {"observation": "observation", "tcb": "tcb", "ctg": "ctg", "alert": "alert",
                "session": "session"}  # fmt: skip
NO_BOOT = -1  # the `boot` of a series the gateway numbers across boots (alert, ctg, session)

_TABLES = (
    """CREATE TABLE IF NOT EXISTS readings (
        msg_id TEXT PRIMARY KEY, kind TEXT NOT NULL, gateway_id TEXT NOT NULL,
        device_id TEXT NOT NULL, code TEXT, t TEXT, payload TEXT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL, worker TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS alerts (
        msg_id TEXT PRIMARY KEY, gateway_id TEXT NOT NULL, device_id TEXT NOT NULL,
        alert TEXT NOT NULL, state TEXT NOT NULL, severity TEXT NOT NULL, detail TEXT,
        t TEXT, raised_at TEXT, payload TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,
        worker TEXT NOT NULL, ack_status TEXT)""",
    """CREATE TABLE IF NOT EXISTS sequences (
        gateway_id TEXT NOT NULL, device_id TEXT NOT NULL, kind TEXT NOT NULL,
        boot BIGINT NOT NULL, seq BIGINT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (gateway_id, device_id, kind, boot, seq))""",
)

# The numbers missing between those received: a row whose seq lies past the end of every row
# before it in its series (seq + count, the next number expected).
_GAPS = """SELECT gateway_id, device_id, kind, boot, expected, seq - 1 FROM (
    SELECT gateway_id, device_id, kind, boot, seq,
           MAX(seq + count) OVER (PARTITION BY gateway_id, device_id, kind, boot ORDER BY seq
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS expected
    FROM sequences) AS s
WHERE seq > expected ORDER BY gateway_id, device_id, kind, boot, expected"""


@dataclass(frozen=True)
class Gap:
    """Numbers `first`..`last` of a series were never received: messages lost on the way."""

    gateway_id: str
    device_id: str
    kind: str  # a topic kind, or `{code}-obs` for FHIR Observations (docs/mqtt.md)
    boot: int  # NO_BOOT for the kinds the gateway numbers across boots
    first: int
    last: int

    @property
    def missing(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        boot = "" if self.boot == NO_BOOT else f" boot {self.boot}"
        nums = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{self.gateway_id}/{self.device_id} {self.kind}{boot}: seq {nums} missing"


def sequence_of(kind: str, payload: dict) -> tuple[str, int, int, int] | None:
    """(series kind, boot, seq, count) of a validated message (docs/mqtt.md, "Sequence
    numbers"), or None for an Observation whose identifier is not one the gateway builds."""
    if kind in ("alert", "ctg", "session"):
        return kind, NO_BOOT, payload["seq"], 1
    if kind != "observation":  # tcb, fhr, mhr: numbered by the device, per boot
        return kind, payload["boot"], payload["seq"], payload.get("count", 1)
    # `{device}:{boot}:fhr-obs:{first point}` (SampledData, one number a point) or
    # `{device}:{boot}:tcb:{seq}:{code}` (one per TcB reading and code)
    parts = payload["identifier"][0]["value"].split(":")
    try:
        if len(parts) == 4 and parts[2].endswith("-obs"):
            data = payload.get("valueSampledData", {}).get("data", "")
            return parts[2], int(parts[1]), int(parts[3]), max(1, len(data.split()))
        if len(parts) == 5 and parts[2] == "tcb":
            return f"{parts[4]}-obs", int(parts[1]), int(parts[3]), 1
    except ValueError:
        pass
    return None


class Store:
    """Readings and alerts, each stored once by its identifier."""

    def __init__(self, url: str) -> None:
        self.lock = threading.Lock()
        if url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg  # type: ignore[import-not-found]
            except ImportError:
                raise RuntimeError(
                    "PostgreSQL needs the psycopg driver (pip install psycopg)"
                ) from None
            self.conn = psycopg.connect(url, autocommit=True)
            self.param = "%s"
        else:
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA busy_timeout=10000")
            self.param = "?"
        with self.lock:
            for sql in _TABLES:
                self.conn.execute(sql)

    def _insert(self, table: str, row: dict, numbered: tuple | None) -> bool:
        """Store the row once and note its sequence number, in one transaction (one sync)."""
        cols = ", ".join(row)
        marks = ", ".join([self.param] * len(row))
        sql = f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT (msg_id) DO NOTHING"
        with self.lock:
            self.conn.execute("BEGIN")
            try:
                cur = self.conn.execute(sql, tuple(row.values()))
                if numbered is not None:
                    self.conn.execute(self._sequence_sql, (row["gateway_id"], *numbered))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            return cur.rowcount == 1

    @property
    def _sequence_sql(self) -> str:
        marks = ", ".join([self.param] * 6)
        return ("INSERT INTO sequences (gateway_id, device_id, kind, boot, seq, count)"
                f" VALUES ({marks}) ON CONFLICT DO NOTHING")  # fmt: skip

    def add_reading(self, kind: str, msg_id: str, gateway_id: str, device_id: str,
                    code: str | None, t: str | None, payload: dict, worker: str,
                    numbered: tuple | None = None) -> bool:  # fmt: skip
        """`numbered`: (device, series kind, boot, seq, count) to note as received."""
        return self._insert("readings", {
            "msg_id": msg_id, "kind": kind, "gateway_id": gateway_id, "device_id": device_id,
            "code": code, "t": t, "payload": json.dumps(payload, separators=(",", ":")),
            "received_at": time.time(), "worker": worker,
        }, numbered)  # fmt: skip

    def add_alert(self, gateway_id: str, payload: dict, worker: str,
                  numbered: tuple | None = None) -> bool:  # fmt: skip
        return self._insert("alerts", {
            "msg_id": payload["msg_id"], "gateway_id": gateway_id,
            "device_id": payload["device_id"], "alert": payload["alert"],
            "state": payload["state"], "severity": payload["severity"],
            "detail": payload["detail"], "t": payload["t"], "raised_at": payload["raised_at"],
            "payload": json.dumps(payload, separators=(",", ":")), "received_at": time.time(),
            "worker": worker, "ack_status": None,
        }, numbered)  # fmt: skip

    def add_sequence(self, gateway_id: str, device_id: str, kind: str, boot: int, seq: int,
                     count: int) -> None:  # fmt: skip
        """Note a number as received (a redelivery or a republication adds nothing)."""
        with self.lock:
            self.conn.execute(self._sequence_sql,
                              (gateway_id, device_id, kind, boot, seq, count))  # fmt: skip

    def gaps(self) -> list[Gap]:
        """Every run of numbers missing between two received ones, in every series."""
        with self.lock:
            rows = self.conn.execute(_GAPS).fetchall()
        return [Gap(*row) for row in rows]

    def set_ack(self, alert_id: str, status: str) -> None:
        with self.lock:
            self.conn.execute(
                f"UPDATE alerts SET ack_status = {self.param} WHERE msg_id = {self.param}",
                (status, alert_id + ":raised"),
            )

    def count(self, table: str) -> int:
        with self.lock:
            return self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def load_validators(schemas_dir: Path | None = None) -> dict:
    """A validator for each stored kind, from `schemas_dir` (None: the installed schemas)."""
    import jsonschema

    out = {}
    for kind, name in STORED_KINDS.items():
        path = schema_path(name) if schemas_dir is None else schemas_dir / f"{name}.schema.json"
        schema = json.loads(path.read_text(encoding="utf-8"))
        out[kind] = jsonschema.Draft202012Validator(schema)
    return out


class Ingest:
    def __init__(self, host: str, port: int, store: Store, *, prefix: str = "perimon/v1",
                 group: str = "perimon-ingest", worker: str | None = None,
                 schemas_dir: Path | None = None, ack_alerts: bool = True,
                 username: str = "", password: str = "", tls_ca: str = "",
                 session_expiry_s: int = 0) -> None:  # fmt: skip
        """`session_expiry_s` > 0: the broker keeps this worker's session (its share of the
        subscription and what is queued for it) that long while it is away; needs a stable
        `worker` id. 0: a clean session, so what is published while the worker is away is not
        kept for it (and shows as a gap)."""
        self.host, self.port, self.store = host, port, store
        self.session_expiry_s = session_expiry_s
        self.prefix, self.group = prefix, group
        self.worker = worker or f"ingest-{uuid.uuid4().hex[:8]}"
        self.validators = load_validators(schemas_dir)
        self.ack_alerts = ack_alerts
        self.reply_topic = f"perimon-ingest/replies/{self.worker}"
        self.counts = {"received": 0, "stored": 0, "duplicates": 0, "invalid": 0,
                       "acks_sent": 0, "acks_confirmed": 0}  # fmt: skip
        self.ready = threading.Event()
        self._pending_subs = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.worker,
                                  protocol=mqtt.MQTTv5)  # fmt: skip
        if username:
            self.client.username_pw_set(username, password or None)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 30)

    def topics(self) -> list[str]:
        shared = [f"$share/{self.group}/{self.prefix}/+/device/+/{kind}" for kind in STORED_KINDS]
        return [*shared, self.reply_topic]

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        client.subscribe([(t, 1) for t in self.topics()])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("subscription refused: %s", bad)
            return
        self.ready.set()

    def _on_message(self, client, userdata, message) -> None:
        try:
            self.handle(message.topic, message.payload, message.properties)
        except Exception:  # one bad message must not stop the worker
            log.exception("cannot handle a message on %s", message.topic)

    def handle(self, topic: str, body: bytes, properties=None) -> None:
        if topic == self.reply_topic:
            self._on_reply(body, properties)
            return
        self.counts["received"] += 1
        parts = topic.split("/")
        kind, device_id, gateway_id = parts[-1], parts[-2], parts[-4]
        try:
            payload = json.loads(body)
        except ValueError:
            self.counts["invalid"] += 1
            log.warning("not JSON on %s", topic)
            return
        errors = list(self.validators[kind].iter_errors(payload))
        if errors:
            self.counts["invalid"] += 1
            log.warning("invalid %s on %s: %s", kind, topic, errors[0].message)
            return
        seq = sequence_of(kind, payload)
        numbered = (device_id, *seq) if seq is not None else None
        if kind == "alert":
            new = self.store.add_alert(gateway_id, payload, self.worker, numbered)
            if new and payload["state"] == "raised" and self.ack_alerts:
                self._ack(gateway_id, device_id, payload)
        elif kind == "observation":
            new = self.store.add_reading(
                kind, payload["identifier"][0]["value"], gateway_id, device_id,
                payload["code"]["coding"][0]["code"],
                payload.get("effectiveDateTime") or payload["effectivePeriod"]["start"],
                payload, self.worker, numbered,
            )  # fmt: skip
        else:
            new = self.store.add_reading(kind, payload["msg_id"], gateway_id, device_id, None,
                                         payload.get("t"), payload, self.worker, numbered)  # fmt: skip
        self.counts["stored" if new else "duplicates"] += 1

    def _ack(self, gateway_id: str, device_id: str, alert: dict) -> None:
        alert_id = alert["msg_id"].rsplit(":", 1)[0]
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = alert_id.encode()
        props.ContentType = "application/json"
        body = {"command": "ack_alert", "alert_id": alert_id, "by": f"hospital:{self.worker}"}
        topic = f"{self.prefix}/{gateway_id}/device/{device_id}/cmd"
        self.client.publish(topic, json.dumps(body), 1, False, props)
        self.counts["acks_sent"] += 1

    def _on_reply(self, body: bytes, properties) -> None:
        corr = getattr(properties, "CorrelationData", None) if properties else None
        try:
            reply = json.loads(body)
        except ValueError:
            return
        if corr and reply.get("command") == "ack_alert":
            self.store.set_ack(bytes(corr).decode(), reply.get("status", "?"))
            if reply.get("status") == "ok":
                self.counts["acks_confirmed"] += 1

    def start(self) -> None:
        props = None
        if self.session_expiry_s > 0:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s
        self.client.connect_async(self.host, self.port, clean_start=props is None,
                                  properties=props)  # fmt: skip
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
