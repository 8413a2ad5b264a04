"""Publishing to the hospital over MQTT 5 with paho-mqtt.

Topics and payloads are specified in docs/mqtt.md. The gateway's availability is a retained
message with a Last Will, so subscribers learn of an unclean loss from the broker itself.
Every other message passes through the persistent outbox (gateway/publish/outbox.py) and is sent at
QoS 1; docs/reliability.md states what that guarantees. paho's network loop runs in its own
thread, the outbox sender in another; publish() is safe to call from asyncio code.

Receipts (docs/mqtt.md, "Receipts"; `[mqtt] await_receipts`): a broker's PUBACK says only that
the broker has a message, and a broker that crashes before saving it loses it. With receipts on,
a reading or alert (the kinds docs/schemas/receipt.schema.json lists) stays in the outbox after
its PUBACK until the hospital's receipt on `{prefix}/{gateway}/receipt` names it as stored, and
is sent again each time it falls due unconfirmed (after `receipt_timeout_s`, then twice as long
each time, at most `RESEND_DOUBLINGS` doublings); the hospital de-duplicates by `msg_id`. A
receipt deletes only rows the broker has acknowledged, and only the hospital's ingest identity
may publish one (deploy/mosquitto/acl). With receipts off, rows go at the PUBACK, as before.
A receipt's `rejected` names delivered messages the hospital refused as not of the contract:
each goes from the outbox into its `rejected` table (kept for the engineer), is counted and
logged, and the gateway status carries the warning REJECTED_WARNING for REJECTED_WARN_S.

One connection per gateway: the hospital's commands (gateway/publish/downlink.py) and receipts
arrive on the publisher's connection (`Publisher.listen`). The deployed broker binds a client id to its
identity (`use_username_as_clientid`): a second connection under the gateway's identity would
take the first one's place, and so would another gateway's client id without the binding.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config import MqttSection
from gateway.publish.outbox import MARK_KINDS, Mark, Outbox, Row, priority_of
from gateway.schemas import SchemaCheck
from gateway.times import iso_time

# Kinds the gateway numbers itself, per device (docs/mqtt.md, "Sequence numbers"): `seq` from 1,
# kept in the outbox's database across restarts. The trace (fhr, mhr) and TcB readings carry
# the device's own numbering instead.
GATEWAY_NUMBERED = frozenset({"alert", "ctg", "session"})

log = logging.getLogger(__name__)

QOS_READING = 1  # everything the outbox sends: at least once, de-duplicated by msg_id downstream
QOS_TRACE = 1  # the live trace too: every 4 Hz point is accounted for (docs/reliability.md)
_CHECKPOINT_S = 5.0  # sync the outbox's WAL this often: the most a power cut can take back
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30  # paho's wait before reconnecting, doubled each time

_RECEIPT = SchemaCheck("receipt")  # docs/schemas/receipt.schema.json, compiled once
# The kinds a hospital that sends receipts confirms; the others go at the broker's PUBACK.
RECEIPT_KINDS = frozenset(_RECEIPT.root["$defs"]["confirmed_kind"]["enum"])
RECEIPT_TOPIC = "receipt"  # {prefix}/{gateway}/receipt
# The largest receipt the schema admits: its most identifiers and rejections, each of its
# longest with quotes, commas and keys, and room for the rest of the object. A character (a
# code point, as the schema counts) is at most 12 bytes: a surrogate pair of JSON escapes
# (\ud83d\ude00, as Python's json writes one), 4 in UTF-8.
_CHAR_BYTES = 12
_STORED = _RECEIPT.root["properties"]["stored"]
_REJECTED = _RECEIPT.root["properties"]["rejected"]
_REJECTION = _REJECTED["items"]["properties"]
MAX_RECEIPT_BYTES = (
    _STORED["maxItems"] * (_CHAR_BYTES * _STORED["items"]["maxLength"] + 3)
    + _REJECTED["maxItems"]
    * (_CHAR_BYTES * (_REJECTION["msg_id"]["maxLength"] + _REJECTION["reason"]["maxLength"]) + 32)
    + 1024
)
# The gateway status's warning that the hospital refuses some of this gateway's messages as not
# of the contract (docs/mqtt.md, "Gateway status"), shown for a day after the last one: long
# enough for an engineer to see it, gone once a mended contract stops the refusals.
REJECTED_WARNING = "hospital_rejects_messages"
REJECTED_WARN_S = 24 * 3600.0
# A message no receipt confirms is sent again after receipt_timeout_s, then after twice the
# last wait, up to 2**RESEND_DOUBLINGS times receipt_timeout_s (16 min at the default 60 s):
# bounded while the hospital is away; the outbox's age limit ends it (docs/reliability.md).
RESEND_DOUBLINGS = 4


def gateway_topic(prefix: str, gateway_id: str, *parts: str) -> str:
    return "/".join([prefix, gateway_id, *parts])


def publish_properties() -> Properties:
    """Empty MQTT 5 PUBLISH properties, to be filled in by the caller."""
    # paho's Properties.__init__ has no annotations; this is the one place that calls it
    props: Properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    return props


# paho's own log: only a callback's exception, which suppress_exceptions would otherwise hide;
# not its reconnection chatter (logged at ERROR while a broker is away: the publisher says that)
_PAHO_LOG = logging.getLogger("gateway.publish.paho")
_PAHO_LOG.setLevel(logging.ERROR)
_PAHO_LOG.addFilter(lambda record: str(record.msg).startswith("Caught exception in"))


def make_client(cfg: MqttSection, client_id: str) -> mqtt.Client:
    """A paho client for the broker `cfg` names: its protocol, TLS (the broker's certificate
    always verified), credentials, and the waits between reconnections. The publisher and the
    command handler each make theirs here; callbacks, a Last Will and queue limits are the
    caller's, and so are connecting and starting the loop."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5
        if cfg.protocol == "5"
        else MQTTProtocolVersion.MQTTv311,
    )
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password or None)
    if cfg.tls:
        client.tls_set(
            ca_certs=cfg.ca_file or None,
            certfile=cfg.cert_file or None,
            keyfile=cfg.key_file or None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    # An exception in a callback is logged, not raised: raised, it ends paho's network thread,
    # and with it every publish and reconnection until the gateway restarts.
    client.suppress_exceptions = True
    client.enable_logger(_PAHO_LOG)
    return client


class Publisher:
    """Every message goes through the persistent outbox (gateway/publish/outbox.py) at QoS 1.

    `publish()` stores the message (and its device high-water mark) on disk and returns; a
    sender thread hands stored messages to paho in order, at most `window` unacknowledged at a
    time, and deletes each one from the outbox on the broker's PUBACK (paho's on_publish).
    Messages handed to paho before a disconnection are re-sent by paho after reconnecting;
    after a restart everything still in the outbox is sent again. A subscriber therefore sees
    every message at least once and de-duplicates by `msg_id`.
    """

    def __init__(
        self,
        cfg: MqttSection,
        gateway_id: str,
        outbox: Outbox | None = None,
        *,
        window: int = 256,
        status_interval_s: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self.gateway_id = gateway_id
        self.outbox = outbox if outbox is not None else Outbox(":memory:", 1 << 30, 0)
        self.window = window
        self.status_interval_s = status_interval_s
        self.connected = threading.Event()
        self._stopping = False
        self.published = 0
        self.v5 = cfg.protocol == "5"
        self._wake = threading.Event()
        self._announce = False  # connected: the sender publishes the online status first
        self._acks: deque[tuple[int, bool]] = deque()  # (mid, accepted) from paho's thread
        # paho mid -> (row id, its msg_id if it awaits a receipt, else None)
        self._inflight: dict[int, tuple[int, str | None]] = {}
        # What receipts said of messages whose PUBACK was not yet taken, acted on at the PUBACK:
        # msg_id -> None (stored) or the hospital's reason for rejecting it
        self._answered_early: dict[str, str | None] = {}
        self.await_receipts = cfg.await_receipts
        self._receipts: deque[bytes] = deque()  # receipt payloads from paho's thread
        self.receipts = 0  # receipts taken
        self.receipts_refused = 0  # receipts that were not one (too large, not the schema)
        self.resend_wait_s = cfg.receipt_timeout_s
        self.resend_max_s = cfg.receipt_timeout_s * 2**RESEND_DOUBLINGS
        self._retry: list[int] = []  # rows the broker refused: sent again later
        self._sender: threading.Thread | None = None
        self.refused = 0
        self._subscriptions: list[tuple[str, SubscribeOptions]] = []
        self._listening = threading.Lock()  # listen() vs a connection being made
        self._granted = 0  # topics SUBACKed on this connection
        self.subscribed = threading.Event()  # a SUBACK came for every topic listen() asked
        self.client = make_client(cfg, f"perimon-{gateway_id}")
        self.client.will_set(
            self.topic("status"), self._status_payload("offline", "connection lost"), 1, True
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.max_queued_messages_set(0)  # bounded by `window` instead
        self.client.max_inflight_messages_set(min(window, 100))
        if self.await_receipts:
            self.listen(self.topic(RECEIPT_TOPIC), SubscribeOptions(qos=1), self._on_receipt)
        else:  # rows a run with receipts kept: the broker acknowledged each
            released = self.outbox.release_awaiting()
            if released:
                log.info("receipts off: %d delivered messages no longer kept", released)

    def topic(self, *parts: str) -> str:
        return gateway_topic(self.cfg.topic_prefix, self.gateway_id, *parts)

    def _status_payload(self, state: str, reason: str = "") -> str:
        d: dict[str, Any] = {"gateway_id": self.gateway_id, "state": state, "reason": reason}
        if state == "online":
            d["outbox"] = self.outbox.stats()
            d["warnings"] = self.warnings()
        d["t"] = iso_time(time.time())
        return json.dumps(d)

    def warnings(self) -> list[str]:
        """What a hospital engineer must look at, in the gateway status: REJECTED_WARNING while
        the hospital refused a message of this gateway within REJECTED_WARN_S."""
        last = self.outbox.last_rejected_at()
        if last is not None and time.time() - last < REJECTED_WARN_S:
            return [REJECTED_WARNING]
        return []

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Properties | None) -> None:  # fmt: skip
        if reason_code.is_failure:
            log.error("MQTT broker refused the connection: %s", reason_code)
            return
        log.info("connected to MQTT broker %s:%d", self.cfg.host, self.cfg.port)
        # the online status reads the outbox: the sender publishes it, first thing, not paho's
        # thread (an outbox error here would end that thread)
        self._announce = True
        with self._listening:  # a session is not kept: subscribe again at each connection
            self._granted = 0
            self.subscribed.clear()
            if self._subscriptions:
                client.subscribe(list(self._subscriptions))
            self.connected.set()
        self._wake.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties | None) -> None:  # fmt: skip
        with self._listening:
            self._granted += len(reason_codes)
            if self._granted >= len(self._subscriptions):
                self.subscribed.set()

    def _on_receipt(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # paho's network thread: only note it; the sender thread acts
        self._receipts.append(bytes(message.payload))
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Properties | None) -> None:  # fmt: skip
        self.connected.clear()
        if self._stopping:
            return
        log.warning("MQTT disconnected (%s); reconnecting", reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                    properties: Properties | None) -> None:  # fmt: skip
        # paho's network thread, holding paho's locks: only note it; the sender thread acts
        self._acks.append((mid, not reason_code.is_failure))
        self._wake.set()

    # ---- the sender thread ----

    def _send_loop(self) -> None:
        last_status = time.monotonic()
        last_checkpoint = time.monotonic()
        retry_at = 0.0
        while not self._stopping:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._take_acks()
                self._take_receipts()
                now = time.monotonic()
                if self._retry and now >= retry_at:
                    self.outbox.hand_back(min(self._retry))
                    self._retry.clear()
                    retry_at = now + 5.0
                if self.connected.is_set():
                    if self._announce or now - last_status >= self.status_interval_s:
                        self._announce = False
                        last_status = now
                        self.client.publish(
                            self.topic("status"), self._status_payload("online"), 1, True
                        )
                    self._hand_over()
                if now - last_checkpoint >= _CHECKPOINT_S:
                    last_checkpoint = now
                    self.outbox.checkpoint()
            except Exception:  # the sender must outlive a bad row or a full disk
                log.exception("outbox sender")
                time.sleep(0.5)

    def _take_acks(self) -> None:
        done: list[int] = []
        kept: list[int] = []  # delivered, waiting for the hospital's receipt
        stored: list[str] = []  # delivered, and a receipt already said stored
        rejected: dict[str, str] = {}  # delivered, and a receipt already rejected them
        while self._acks:
            mid, ok = self._acks.popleft()
            entry = self._inflight.pop(mid, None)
            if entry is None:
                continue  # a status message paho published itself
            row, msg_id = entry
            if msg_id is not None and msg_id in self._answered_early:
                why = self._answered_early.pop(msg_id)
                if ok and why is None:
                    stored.append(msg_id)
                elif ok and why is not None:
                    rejected[msg_id] = why
            if ok:
                (kept if msg_id is not None else done).append(row)
            else:
                self.refused += 1
                self._retry.append(row)
                log.error("broker refused outbox row %d; it is sent again later", row)
        self.outbox.ack(done)
        self.outbox.delivered(kept, self.resend_wait_s)
        self._apply_receipt(stored, rejected)
        self.published += len(done) + len(kept)

    def _take_receipts(self) -> None:
        """Delete what the hospital's receipts name. A receipt can overtake the PUBACK of what
        it names: the PUBACK came in after `_take_acks` looked, or a broker forwarded the
        message before it acknowledged it. What it says of a message still in flight is
        acted on when its PUBACK is taken, so the message is not sent again."""
        while self._receipts:
            body = self._receipts.popleft()
            receipt = read_receipt(body)
            if receipt is None:
                self.receipts_refused += 1
                log.warning("refused a receipt that is not one (%d bytes)", len(body))
                continue
            self.receipts += 1
            self._apply_receipt(receipt.stored, receipt.rejected)
            answers: dict[str, str | None] = {**dict.fromkeys(receipt.stored), **receipt.rejected}
            for _, msg_id in self._inflight.values():
                if msg_id in answers:
                    self._answered_early[msg_id] = answers[msg_id]

    def _apply_receipt(self, stored: list[str], rejected: dict[str, str]) -> None:
        """Forget what the hospital stored; set aside what it rejected (only what the broker
        acknowledged: the outbox checks)."""
        self.outbox.confirm(stored)
        for r in self.outbox.reject(rejected):
            log.error("the hospital rejected %s on %s, kept aside, not sent again: %s",
                      r.msg_id, r.topic, r.reason)  # fmt: skip

    def awaits_receipt(self, row: Row) -> bool:
        """Whether this row stays after its PUBACK until a receipt confirms it."""
        if not self.await_receipts or row.msg_id is None:
            return False
        parts = row.topic.rsplit("/", 3)
        return len(parts) == 4 and parts[1] == "device" and parts[3] in RECEIPT_KINDS

    def _hand_over(self) -> None:
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        rows: list[Row] = []
        if self.await_receipts:  # the oldest first: what no receipt confirmed in time
            rows = self.outbox.due(room, self.resend_wait_s, self.resend_max_s)
        pending = self.outbox.take_pending(room - len(rows))
        untaken = {r.id for r in pending}
        for row in rows + pending:
            props = None
            if self.v5:
                props = publish_properties()
                props.ContentType = "application/json"
                if row.msg_id is not None:
                    props.UserProperty = [("msg_id", row.msg_id)]
            info = self.client.publish(row.topic, row.payload, QOS_READING, row.retain, props)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("paho did not take outbox row %d: %s", row.id, info.rc)
                if untaken:
                    self.outbox.hand_back(min(untaken))
                break
            untaken.discard(row.id)
            self._inflight[info.mid] = (row.id, row.msg_id if self.awaits_receipt(row) else None)

    # ---- public ----

    def listen(self, topic: str, options: SubscribeOptions,
               on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]) -> None:  # fmt: skip
        """Subscribe to `topic` on this connection, now if connected and at every connection,
        and hand its messages to `on_message` (on paho's network thread: record, do no work)."""
        self.client.message_callback_add(topic, on_message)
        with self._listening:
            self._subscriptions.append((topic, options))
            if self.connected.is_set():
                self.subscribed.clear()
                self.client.subscribe(topic, options=options)

    def start(self) -> None:
        """Connect in the background; an unreachable broker is retried, never fatal."""
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="outbox", daemon=True)
        self._sender.start()

    def drain(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty (everything acknowledged, and with receipts on,
        confirmed); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.outbox.rows == 0:
                return True
            self._wake.set()
            time.sleep(0.05)
        return self.outbox.rows == 0

    def stop(self, drain_s: float = 2.0) -> None:
        """Send what can be sent within `drain_s`; the rest stays in the outbox for next time."""
        if self.connected.is_set():
            self.drain(drain_s)
        self._stopping = True
        self._wake.set()
        if self._sender is not None:
            self._sender.join(5.0)
        self._take_acks()
        info = self.client.publish(
            self.topic("status"), self._status_payload("offline", "shutdown"), 1, True
        )
        if self.connected.is_set():
            info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()
        self._take_acks()
        self.outbox.close()

    def publish(
        self,
        parts: tuple[str, ...],
        payload: dict[str, Any],
        *,
        qos: int = QOS_READING,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> dict[str, Any]:
        """Store one message in the outbox; it is sent at QoS 1 as soon as the broker is up.
        Returns the payload as stored: a kind in GATEWAY_NUMBERED gets its `seq` here.

        Every message goes at QoS 1 whatever `qos` says, and the live trace carries no MQTT
        expiry (`expiry_s` is not applied): the broker would drop an expired message without
        anyone counting it; the outbox's age limit drops and counts instead.
        """
        kind = parts[-1] if parts else ""
        if len(parts) == 3 and parts[0] == "device" and kind in GATEWAY_NUMBERED:
            if "seq" not in payload:
                seq = self.outbox.next_seq(parts[1], kind)
                payload = {"msg_id": payload["msg_id"], "seq": seq, **payload}
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        msg_id = message_id(payload)
        self.outbox.add(
            self.topic(*parts),
            body,
            msg_id=msg_id,
            retain=retain,
            priority=priority_of(kind, retain, msg_id),
            mark=_mark(parts, payload),
        )
        self._wake.set()
        return payload


@dataclass(frozen=True)
class Receipt:
    """What a hospital's receipt says: the messages it stored, and those it refused (msg_id ->
    reason; docs/schemas/receipt.schema.json)."""

    stored: list[str]
    rejected: dict[str, str] = field(default_factory=dict)


def read_receipt(body: bytes) -> Receipt | None:
    """The receipt in `body`, or None if it is not one (too large, not JSON, not the schema)."""
    if len(body) > MAX_RECEIPT_BYTES:
        return None
    try:
        receipt = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply for the parser
        return None
    if _RECEIPT.problem(receipt) is not None:
        return None
    rejected = {str(r["msg_id"]): str(r["reason"]) for r in receipt.get("rejected", ())}
    return Receipt(list(receipt["stored"]), rejected)


def receipt_ids(body: bytes) -> list[str] | None:
    """The identifiers a receipt names as stored, or None if `body` is not a receipt."""
    receipt = read_receipt(body)
    return None if receipt is None else receipt.stored


def message_id(payload: dict[str, Any]) -> str | None:
    """The deterministic id of a reading: `msg_id`, or a FHIR Observation's identifier."""
    if "msg_id" in payload:
        return str(payload["msg_id"])
    ident = payload.get("identifier")
    if payload.get("resourceType") and isinstance(ident, list) and ident:
        value = ident[0].get("value") if isinstance(ident[0], dict) else None
        return str(value) if value is not None else None
    return None


def _mark(parts: tuple[str, ...], payload: dict[str, Any]) -> Mark | None:
    """The high-water mark a trace or jaundice message advances (device, kind, boot, last)."""
    if len(parts) != 3 or parts[0] != "device" or parts[2] not in MARK_KINDS:
        return None
    boot, seq = payload.get("boot"), payload.get("seq")
    if not isinstance(boot, int) or not isinstance(seq, int):
        return None
    last = seq + int(payload.get("count", 1)) - 1
    return Mark(parts[1], parts[2], boot, last)
