"""`perimon-ingest`: the reference hospital subscriber (its command line: hospital/cli.py).

Subscribes with an MQTT 5 shared subscription (`$share/{group}/...`), so several workers run
side by side and the broker hands each message to one of them; validates every message against
the MQTT contract's JSON Schemas (hospital/messages.py); stores readings (FHIR Observations, TcB
readings, CTG findings, recording sessions) and alerts with the message's identifier as the
primary key, so a QoS 1 redelivery or a message seen by two workers after a reconnection is
stored once (hospital/store.py); acknowledges each newly raised alert back to its gateway on
the command topic (MQTT 5 request/response, docs/mqtt.md); and, after each batch commits, sends
each gateway a receipt naming its messages now in the database (`{prefix}/{gateway}/receipt`,
docs/mqtt.md, "Receipts"), so a gateway that waits for receipts keeps, and sends again, what a
broker acknowledged and then lost. The same receipts name the messages refused as not of the
contract (a message that fails its schema), with why, so the gateway stops sending them again
and keeps them aside for a person; a message that does not name itself (not JSON, no
identifier) cannot be named, and is only logged and counted here.

**Acknowledged after commit.** Messages are written in batches, one transaction each, and each
message's PUBACK goes to the broker only after the transaction that stored it committed: a
worker that dies, or loses its database, before that leaves the message with the broker, which
sends it again (to this worker's session when it comes back, docs/mqtt.md). Duplicates that
this causes are dropped by the primary key. The broker sends at most `in_flight` messages
ahead of the acknowledgements (MQTT 5 Receive Maximum), which bounds a batch and the memory a
worker holds; the rest wait in the broker's queue for this worker (docs/scaling.md).

Threads: paho's network thread only records what arrives (`_on_message` puts it on a queue);
one writer thread takes everything queued (up to `batch_max`) as the next batch, writes it,
then acknowledges it in the order received (as MQTT requires), and sends the receipts of what
was stored at most every RECEIPT_INTERVAL_S.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hospital.config import IngestConfig
from hospital.messages import STORED_KINDS, Alert, Decoded, Invalid, alert_id, decode, load_checks
from hospital.store import AckStatus, DatabaseError, Store, TransientError
from perimon_schemas import load_schema

log = logging.getLogger(__name__)

_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # waits between tries of a batch the database refused
# A receipt names at most this many messages (docs/schemas/receipt.schema.json); more are split.
# Rejections likewise, at most RECEIPT_MAX_REJECTED a receipt.
_RECEIPT_SCHEMA = load_schema("receipt")["properties"]
RECEIPT_MAX_IDS: int = _RECEIPT_SCHEMA["stored"]["maxItems"]
RECEIPT_MAX_REJECTED: int = _RECEIPT_SCHEMA["rejected"]["maxItems"]
# What batches stored is gathered per gateway and sent at most this often (or when a gateway has
# RECEIPT_MAX_IDS waiting): a backlog drained in small batches would otherwise cost a receipt per
# gateway and batch. Far inside a gateway's wait before it sends again (60 s by default).
RECEIPT_INTERVAL_S = 1.0
# An alert's acknowledgement is sent at most this many times in all (the first and the retries,
# `ack_retry_s` apart) while its gateway does not answer: a Mosquitto bridge drops the commands
# published while its link is down (docs/scaling.md), a gateway offline for long may never answer.
ACK_TRIES = 5


@dataclass(frozen=True, slots=True)
class Received:
    """A message as it arrived: what the writer needs to store and acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    link: int  # the connection it came on: a PUBACK goes on that connection or not at all
    correlation: bytes | None = None  # MQTT 5 Correlation Data (the gateway's answers)


class Ingest:
    """One worker: `start()`, then `stop()`; `counts` says what it did."""

    def __init__(self, cfg: IngestConfig) -> None:
        self.cfg = cfg
        self.worker = cfg.worker or f"ingest-{uuid.uuid4().hex[:8]}"
        self.store = Store(cfg.db, self.worker)
        self.checks = load_checks(Path(cfg.schemas) if cfg.schemas else None)
        # The gateway answers an `ack_alert` inside its own tree, where the deployed ACL lets it
        # publish and a bridge carries it (docs/mqtt.md, "Commands"): {prefix}/{gateway}/reply/...
        self.reply_topic = f"{cfg.prefix}/+/reply/{self.worker}"
        self.counts = {"received": 0, "stored": 0, "duplicates": 0, "invalid": 0,
                       "acks_sent": 0, "acks_confirmed": 0, "batches": 0, "receipts": 0,
                       "receipt_bytes": 0, "rejections_sent": 0}  # fmt: skip
        self.ready = threading.Event()
        self._queue: queue.Queue[Received] = queue.Queue()
        self._link = 0  # bumped when a connection ends or begins (under _link_lock)
        self._link_lock = threading.Lock()
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._receipts: dict[str, dict[str, None]] = {}  # gateway -> ids stored, not yet sent
        self._rejections: dict[str, dict[str, str]] = {}  # gateway -> {id refused: why}, not sent
        self._receipts_sent_at = 0.0  # time.monotonic() of the last receipts sent
        self._ack_tries: dict[str, int] = {}  # alert msg_id -> acknowledgements sent
        self._acks_checked_at = time.monotonic()
        self.client = _Client(CallbackAPIVersion.VERSION2, client_id=self.worker,
                              protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)  # fmt: skip
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls_ca:
            self.client.tls_set(ca_certs=cfg.tls_ca, certfile=cfg.tls_cert or None,
                                keyfile=cfg.tls_key or None)  # fmt: skip
        self.client.on_pre_connect = self._on_link_change
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 30)
        # a callback's exception is logged, not raised: raised, it ends paho's network thread,
        # and this worker's connection with it
        self.client.suppress_exceptions = True
        self.client.enable_logger(_PAHO_LOG)

    def topics(self) -> list[str]:
        prefix, group = self.cfg.prefix, self.cfg.group
        shared = [f"$share/{group}/{prefix}/+/device/+/{kind}" for kind in STORED_KINDS]
        return [*shared, self.reply_topic]

    def _is_reply(self, topic: str) -> bool:
        parts = topic.rsplit("/", 3)
        return len(parts) == 4 and parts[2] == "reply" and parts[3] == self.worker

    # -- paho's network thread: record, nothing more ------------------------------------------

    def _on_link_change(self, client: mqtt.Client, userdata: Any) -> None:
        with self._link_lock:
            self._link += 1

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:  # fmt: skip
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        client.subscribe([(t, 1) for t in self.topics()])

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.warning("cannot reach the broker at %s:%d; trying again", self.cfg.host, self.cfg.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:  # fmt: skip
        # Before paho reconnects: no PUBACK of this connection may go out on the next one.
        self._on_link_change(client, userdata)
        if not self._stopping.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:  # fmt: skip
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("subscription refused: %s", bad)
            return
        log.info("subscribed to %s", ", ".join(self.topics()))
        self.ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        corr = getattr(message.properties, "CorrelationData", None)
        self._queue.put(Received(message.topic, bytes(message.payload), message.mid, message.qos,
                                 self._link, None if corr is None else bytes(corr)))  # fmt: skip

    # -- the writer thread --------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                self._send_receipts()
                self._retry_acks()
                if self._stopping.is_set():
                    self._send_receipts(now=True)
                    return
                continue
            batch = [first]
            while len(batch) < self.cfg.batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.process(batch)
            except Exception:  # the writer must outlive any one batch; its PUBACKs are not sent
                log.exception("cannot process a batch of %d messages", len(batch))

    def process(self, batch: Sequence[Received]) -> None:
        """Decode, store in one transaction, then acknowledge, in the order received."""
        decoded: list[Decoded] = []
        acks: list[AckStatus] = []
        for r in batch:
            if self._is_reply(r.topic):
                ack = _reply(r)
                if ack is not None:
                    acks.append(ack)
                continue
            self.counts["received"] += 1
            d = decode(r.topic, r.payload, self.checks)
            if isinstance(d, Invalid):
                self.counts["invalid"] += 1
                log.warning("%s", d.reason)
                if self.cfg.receipts and d.msg_id is not None and d.gateway_id is not None:
                    self._rejections.setdefault(d.gateway_id, {})[d.msg_id] = d.receipt_reason()
            else:
                decoded.append(d)
        new, refused = self._store(decoded, acks)
        self._acknowledge(batch)
        if self.cfg.receipts:
            for d in decoded:
                if d.msg_id not in refused:
                    self._receipts.setdefault(d.row.gateway_id, {})[d.msg_id] = None
            self._send_receipts()
        self.counts["batches"] += 1
        self.counts["stored"] += len(new)
        self.counts["duplicates"] += len(decoded) - len(new) - len(refused)
        self.counts["acks_confirmed"] += sum(a.status == "ok" for a in acks)
        if self.cfg.ack_alerts:
            for d in decoded:
                if d.msg_id in new and isinstance(d.row, Alert) and d.row.state == "raised":
                    self._ack_alert(d.row.msg_id, d.row.gateway_id, d.row.device_id)
            self._retry_acks()

    def _store(self, decoded: list[Decoded], acks: list[AckStatus]) -> tuple[set[str], set[str]]:
        """Write until it commits; the identifiers stored anew, and those the database refused.
        A batch the database refuses as such is written message by message, and a message it
        refuses alone is logged and dropped (it never will be stored: holding it would stop
        every message behind it)."""
        for attempt in itertools.count():
            try:
                return self.store.write(decoded, acks), set()
            except TransientError as exc:
                wait = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                log.warning("database unavailable (%s); trying again in %g s", exc, wait)
                if self._stopping.wait(wait):
                    raise
            except DatabaseError as exc:
                if len(decoded) + len(acks) <= 1:
                    log.error("the database refuses %s: %s", [d.msg_id for d in decoded], exc)
                    self.counts["invalid"] += len(decoded)
                    return set(), {d.msg_id for d in decoded}
                new: set[str] = set()
                refused: set[str] = set()
                for d in decoded:
                    one_new, one_refused = self._store([d], [])
                    new |= one_new
                    refused |= one_refused
                for a in acks:
                    self._store([], [a])
                return new, refused
        raise AssertionError("itertools.count() ended")

    def _send_receipts(self, now: bool = False) -> None:
        """Tell each gateway which of its messages are now in the database (stored by the
        batches since the last receipts, or before: a gateway sends again what it has no
        receipt for, and the copy is a duplicate here), and which were refused as not of the
        contract, once RECEIPT_INTERVAL_S has passed since the last (`now`: at once). QoS 1,
        not retained; a receipt lost costs a resend (refused again, named again). A message
        the database refused is named in neither list: it stays unconfirmed and comes again,
        in case what made the database refuse it is mended."""
        if not self._receipts and not self._rejections:
            return
        full = any(len(ids) >= RECEIPT_MAX_IDS for ids in self._receipts.values()) or any(
            len(ids) >= RECEIPT_MAX_REJECTED for ids in self._rejections.values()
        )
        if not (now or full or time.monotonic() - self._receipts_sent_at >= RECEIPT_INTERVAL_S):
            return
        self._receipts_sent_at = time.monotonic()
        stored, self._receipts = self._receipts, {}
        rejected, self._rejections = self._rejections, {}
        when = _iso_now()
        for gateway in {**stored, **rejected}:
            names = list(stored.get(gateway, ()))
            refused = [{"msg_id": i, "reason": why} for i, why in rejected.get(gateway, {}).items()]
            for k in itertools.count():
                ids = names[k * RECEIPT_MAX_IDS : (k + 1) * RECEIPT_MAX_IDS]
                rej = refused[k * RECEIPT_MAX_REJECTED : (k + 1) * RECEIPT_MAX_REJECTED]
                if not ids and not rej:
                    break
                receipt: dict[str, Any] = {"stored": ids, "t": when}
                if rej:  # absent when there are none: a receipt as before rejections existed
                    receipt["rejected"] = rej
                body = json.dumps(receipt, separators=(",", ":"))
                self.client.publish(f"{self.cfg.prefix}/{gateway}/receipt", body, 1, False)
                self.counts["receipts"] += 1
                self.counts["receipt_bytes"] += len(body)
                self.counts["rejections_sent"] += len(rej)

    def _acknowledge(self, batch: Sequence[Received]) -> None:
        with self._link_lock:
            for r in batch:
                if r.qos > 0 and r.link == self._link:
                    self.client.ack(r.mid, r.qos)

    def _ack_alert(self, msg_id: str, gateway_id: str, device_id: str) -> None:
        aid = alert_id(msg_id)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = f"{self.cfg.prefix}/{gateway_id}/reply/{self.worker}"
        props.CorrelationData = aid.encode()
        props.ContentType = "application/json"
        body = {"command": "ack_alert", "alert_id": aid, "by": f"hospital:{self.worker}"}
        # cmd/ack_alert: the one command topic the deployed ACL lets the ingest service write
        topic = f"{self.cfg.prefix}/{gateway_id}/device/{device_id}/cmd/ack_alert"
        self.client.publish(topic, json.dumps(body), 1, False, props)
        self._ack_tries[msg_id] = self._ack_tries.get(msg_id, 0) + 1
        self.counts["acks_sent"] += 1

    def _retry_acks(self) -> None:
        """Every `ack_retry_s`, send again the acknowledgements of this worker's alerts that no
        gateway has answered for that long, up to ACK_TRIES each (the same command: the gateway
        records an acknowledgement once and answers each)."""
        wait = self.cfg.ack_retry_s
        if not self.cfg.ack_alerts or wait <= 0 or time.monotonic() - self._acks_checked_at < wait:
            return
        self._acks_checked_at = time.monotonic()
        now = time.time()
        try:  # those stored within the tries' span: older ones have had all theirs
            unanswered = self.store.unanswered_alerts(now - wait * (ACK_TRIES + 1), now - wait)
        except (DatabaseError, TransientError) as exc:
            log.warning("cannot look for unanswered acknowledgements: %s", exc)
            return
        for msg_id, gateway_id, device_id in unanswered:
            tries = self._ack_tries.get(msg_id, 1)  # (stored by this worker before a restart)
            if tries < ACK_TRIES:
                self._ack_alert(msg_id, gateway_id, device_id)
            elif tries == ACK_TRIES:
                self._ack_tries[msg_id] = tries + 1  # said once
                log.warning("%s: no answer to its acknowledgement after %d tries", msg_id, tries)

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = self.cfg.in_flight
        expiry = self.cfg.session_expiry_s
        if expiry > 0:
            props.SessionExpiryInterval = expiry
        self._writer = threading.Thread(target=self._write_loop, name=f"{self.worker}-writer",
                                        daemon=True)  # fmt: skip
        self._writer.start()
        self.client.connect_async(self.cfg.host, self.cfg.port, clean_start=expiry == 0,
                                  properties=props)  # fmt: skip
        self.client.loop_start()

    def drained(self) -> bool:
        """Nothing received is waiting to be written (what is being written may still be)."""
        return self._queue.empty()

    def stop(self, drain_s: float = 10.0) -> None:
        """Write and acknowledge what has arrived (for at most `drain_s`), then disconnect."""
        deadline = time.monotonic() + drain_s
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(max(0.5, deadline - time.monotonic()))
        self.client.disconnect()
        self.client.loop_stop()


# paho's own log: only a callback's exception, not its reconnection chatter
_PAHO_LOG = logging.getLogger("hospital.paho")
_PAHO_LOG.setLevel(logging.ERROR)
_PAHO_LOG.addFilter(lambda record: str(record.msg).startswith("Caught exception in"))


class _Client(mqtt.Client):
    """paho's client, decoding the MQTT 5 properties of a message only where the ingest reads
    them: the gateways' answers (their Correlation Data).

    Why: paho 2.2 decodes every property of every message it receives, in pure Python
    (`Properties.unpack`); for the two a gateway sets on each reading (content type and the
    `msg_id` user property, both also in the payload) that was most of a worker's CPU
    (docs/scaling.md, "Measured here"). A QoS 1 message on a data topic is parsed here
    instead: topic, packet id, the properties skipped by their length, the payload; every other
    message (QoS 0 or 2, an answer, MQTT 3) goes through paho's own `_handle_publish`. The
    topic is always in the packet: this client never grants the broker a topic alias."""

    def _handle_publish(self) -> MQTTErrorCode:
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        if (header & 0x06) >> 1 != 1 or self.protocol != MQTTProtocolVersion.MQTTv5:
            return super()._handle_publish()
        end = 2 + int.from_bytes(packet[0:2], "big")
        topic = bytes(packet[2:end])
        if b"/reply/" in topic:
            return super()._handle_publish()
        mid = int.from_bytes(packet[end : end + 2], "big")
        length, pos, shift = 0, end + 2, 0
        while True:  # the properties' length: a variable byte integer (MQTT 5, 1.5.5)
            byte = packet[pos]
            length |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if byte < 0x80:
                break
        message = mqtt.MQTTMessage(mid, topic)
        message.qos, message.dup, message.retain = 1, bool(header & 0x08), bool(header & 0x01)
        message.payload = bytes(packet[pos + length :])
        message.timestamp = time.monotonic()
        self._handle_on_message(message)
        return MQTTErrorCode.MQTT_ERR_SUCCESS if self._manual_ack else self._send_puback(mid)


def _iso_now() -> str:
    """Now, as the contract writes times: UTC, ISO 8601 with milliseconds."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _reply(r: Received) -> AckStatus | None:
    """The gateway's answer to an `ack_alert` (matched by Correlation Data), else None."""
    try:
        reply = json.loads(r.payload)
    except ValueError:
        return None
    if r.correlation and isinstance(reply, dict) and reply.get("command") == "ack_alert":
        return AckStatus(r.correlation.decode(errors="replace"), str(reply.get("status", "?")))
    return None
