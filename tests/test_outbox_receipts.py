"""Receipts (docs/mqtt.md, "Receipts"): with `[mqtt] await_receipts`, a reading stays in the
outbox after the broker's PUBACK until the hospital's receipt names it as stored, and is sent
again, later each time, while none does. A receipt deletes only what the broker acknowledged;
on the deployed broker only the hospital's ingest identity may publish one. Without receipts
configured the outbox forgets a message at its PUBACK, as before. A receipt's `rejected`
(messages the hospital refused as not of the contract) takes a delivered message out of the
outbox into its `rejected` table: counted, logged, warned of in the gateway status, never sent
again."""

from __future__ import annotations

import json
import logging
import sqlite3
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from devtools.broker_tls import make_certs, start_tls_broker
from gateway.config import config_from_dict
from gateway.publish import outbox as outbox_module
from gateway.publish.mqtt import (
    MAX_RECEIPT_BYTES,
    RECEIPT_KINDS,
    REJECTED_WARNING,
    Publisher,
    read_receipt,
    receipt_ids,
)
from gateway.publish.outbox import PRIO_READING, Outbox
from hospital.config import IngestConfig
from hospital.ingest import Ingest
from hospital.messages import STORED_KINDS
from hospital.store import Store
from tests.harness import region as rg
from tests.harness.contract import validator
from tests.harness.mqtt import Subscriber
from tests.harness.wait import eventually

MB = 1024 * 1024


def _reading(ob: Outbox, i: int, now: float = 1000.0, size: int = 100) -> int:
    return ob.add("perimon/v1/gw-t/device/tcb-01/tcb", b"x" * size, msg_id=f"tcb-01:1:tcb:{i}",
                  retain=False, priority=PRIO_READING, now=now)  # fmt: skip


# ---- the outbox: pure bookkeeping, time passed in ----------------------------------------


@pytest.mark.unit
def test_a_delivered_row_stays_until_a_receipt_names_it():
    ob = Outbox(":memory:", 10 * MB, 0)
    ids = [_reading(ob, i) for i in range(3)]
    ob.handed_upto = ids[-1]
    ob.delivered(ids, wait_s=60, now=1000.0)
    assert ob.rows == 3 and ob.awaiting() == 3
    assert ob.pending(0, 10) == []  # not sent again as new: only when due
    assert ob.confirm(["tcb-01:1:tcb:0", "tcb-01:1:tcb:2", "someone-else:1:tcb:0"]) == 2
    assert ob.rows == 1 and ob.confirmed == 2
    assert [r.msg_id for r in ob.due(10, 60, 960, now=1061.0)] == ["tcb-01:1:tcb:1"]


@pytest.mark.unit
def test_a_receipt_naming_what_was_never_published_deletes_nothing():
    """msg_ids are deterministic, so a receipt could name readings before they exist or before
    they are sent: only rows the broker acknowledged may go."""
    ob = Outbox(":memory:", 10 * MB, 0)
    sent = _reading(ob, 0)
    queued = _reading(ob, 1)  # in the outbox, never handed to the broker
    in_flight = _reading(ob, 2)  # handed to paho, no PUBACK yet
    ob.handed_upto = in_flight
    ob.delivered([sent], wait_s=60, now=1000.0)
    assert ob.confirm(["tcb-01:1:tcb:1", "tcb-01:1:tcb:2", "tcb-01:1:tcb:3"]) == 0
    assert ob.rows == 3
    assert [r.id for r in ob.pending(sent, 10)] == [queued, in_flight]
    assert ob.confirm(["tcb-01:1:tcb:0"]) == 1 and ob.rows == 2


@pytest.mark.unit
def test_an_unconfirmed_row_is_sent_again_later_each_time_up_to_a_bound():
    ob = Outbox(":memory:", 10 * MB, 0)
    rid = _reading(ob, 0)
    ob.handed_upto = rid
    ob.delivered([rid], wait_s=10, now=0.0)
    times = []
    t = 0.0
    while t < 400:
        t += 1.0
        for row in ob.due(10, 10, 80, now=t):
            times.append(t)
            ob.delivered([row.id], wait_s=10, now=t)  # its PUBACK: the due time stays
    # 10 s after the PUBACK, then after 20, 40, 80, and 80 s from then on
    assert times == [10.0, 30.0, 70.0, 150.0, 230.0, 310.0, 390.0]
    assert ob.stats()["resent"] == len(times)


@pytest.mark.unit
def test_rows_waiting_for_a_receipt_count_against_the_limits_and_may_be_dropped():
    ob = Outbox(":memory:", 1 * MB, max_age_s=3600)
    old = [_reading(ob, i, now=0.0, size=1000) for i in range(3)]
    ob.handed_upto = old[-1]
    ob.delivered(old, wait_s=60, now=1.0)
    _reading(ob, 3, now=4000.0)  # an hour later: the waiting rows are too old
    assert ob.rows == 1 and ob.stats()["dropped_readings"] == 3


@pytest.mark.unit
def test_an_outbox_file_from_before_receipts_gets_their_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE msg (id INTEGER PRIMARY KEY AUTOINCREMENT, msg_id TEXT, topic TEXT NOT NULL,"
        " payload BLOB NOT NULL, retain INTEGER NOT NULL, priority INTEGER NOT NULL,"
        " created REAL NOT NULL);"
        "INSERT INTO msg (msg_id, topic, payload, retain, priority, created)"
        " VALUES ('a:1:tcb:0', 't/a/tcb', x'7b7d', 0, 2, 1.0);"
    )
    db.commit()
    db.close()
    ob = Outbox(path, 10 * MB, 0)
    assert [r.msg_id for r in ob.pending(0, 10)] == ["a:1:tcb:0"]
    ob.handed_upto = 1
    ob.delivered([1], wait_s=60, now=2.0)
    assert ob.awaiting() == 1 and ob.confirm(["a:1:tcb:0"]) == 1


@pytest.mark.unit
def test_receipt_ids_takes_only_a_receipt():
    assert receipt_ids(b'{"stored": ["a:1:tcb:0", "b"], "t": "2026-11-23T10:00:00.000Z"}') == [
        "a:1:tcb:0",
        "b",
    ]
    for body in (b"", b"not json", b"[]", b'{"stored": []}', b'{"stored": "a"}',
                 b'{"stored": [1]}', b"[" * 100_000, json.dumps({"stored": ["a"] * 1001}).encode(),
                 b'{"stored": ["a"]}' + b" " * MAX_RECEIPT_BYTES):  # fmt: skip
        assert receipt_ids(body) is None, body[:40]


def _rejection(*ids: str, stored: tuple[str, ...] = ()) -> bytes:
    return json.dumps({"stored": list(stored), "t": "2026-11-23T10:00:00.000Z",
                       "rejected": [{"msg_id": i, "reason": "schema: tcb: 'boot' is a required"
                                     " property"} for i in ids]}).encode()  # fmt: skip


@pytest.mark.unit
def test_read_receipt_takes_rejections_and_only_a_receipt():
    r = read_receipt(_rejection("a:1:tcb:1", stored=("a:1:tcb:0",)))
    assert r is not None and r.stored == ["a:1:tcb:0"]
    assert r.rejected == {"a:1:tcb:1": "schema: tcb: 'boot' is a required property"}
    only = read_receipt(_rejection("a:1:tcb:1"))  # a receipt that only rejects
    assert only is not None and only.stored == [] and list(only.rejected) == ["a:1:tcb:1"]
    # a later hospital's key in a rejection is ignored, as an older gateway ignores `rejected`
    later = json.loads(_rejection("a"))
    later["rejected"][0]["field"] = "boot"
    assert read_receipt(json.dumps(later).encode()) is not None
    assert read_receipt(b'{"stored": ["a"], "rejected": []}') is None  # absent when none
    for bad in ({"msg_id": "a"}, {"reason": "schema: x"}, {"msg_id": "", "reason": "schema: x"},
                {"msg_id": "a", "reason": "no code"}, {"msg_id": "a" * 201, "reason": "schema: x"},
                {"msg_id": "a", "reason": "schema: " + "x" * 200}, "a"):  # fmt: skip
        assert read_receipt(json.dumps({"stored": [], "rejected": [bad]}).encode()) is None, bad
    assert read_receipt(_rejection(*[f"a:{i}" for i in range(101)])) is None  # 100 at most


@pytest.mark.unit
def test_the_largest_receipt_the_schema_admits_is_read():
    """MAX_RECEIPT_BYTES follows from the schema: its most identifiers and rejections, each at
    its longest, in the characters that cost the most bytes (12: a surrogate pair escaped)."""
    worst = "\U0001f600"
    body = json.dumps({"stored": [worst * 200] * 1000, "t": "2026-11-23T10:00:00.000Z",
                       "rejected": [{"msg_id": worst * 200, "reason": "schema: " + worst * 192}
                                    for _ in range(100)]}).encode()  # fmt: skip
    assert len(body) <= MAX_RECEIPT_BYTES and len(body) > MAX_RECEIPT_BYTES * 0.95
    r = read_receipt(body)
    assert r is not None and len(r.stored) == 1000 and len(r.rejected) == 1


@pytest.mark.unit
def test_a_rejected_row_leaves_the_outbox_and_a_copy_is_kept(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", 10 * MB, 0)
    ids = [_reading(ob, i) for i in range(3)]
    queued = _reading(ob, 3)  # never handed to the broker
    ob.handed_upto = ids[-1]
    ob.delivered(ids, wait_s=60, now=1000.0)
    why = "schema: tcb: 'boot' is a required property"
    # only what the broker acknowledged: not a queued row, nor another gateway's, nor unknown
    assert ob.reject({"tcb-01:1:tcb:3": why, "tcb-01:1:tcb:9": why}) == []
    assert ob.rows == 4 and ob.rejected() == [] and ob.stats()["rejected"] == 0
    assert ob.stats()["last_rejected"] is None and ob.last_rejected_at() is None
    moved = ob.reject({"tcb-01:1:tcb:1": why}, now=2000.0)
    assert [(r.msg_id, r.reason, r.payload) for r in moved] == [("tcb-01:1:tcb:1", why, b"x" * 100)]
    assert ob.rows == 3 and ob.awaiting() == 2
    assert [r.id for r in ob.pending(0, 10)] == [queued]
    assert [r.msg_id for r in ob.due(10, 60, 960, now=5000.0)] == ["tcb-01:1:tcb:0",
                                                                  "tcb-01:1:tcb:2"]  # fmt: skip
    assert ob.reject({"tcb-01:1:tcb:1": why}) == []  # rejected again (a resent copy): no copy
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite", 10 * MB, 0)  # kept across a restart
    assert [(r.msg_id, r.topic, r.created) for r in ob.rejected()] == [
        ("tcb-01:1:tcb:1", "perimon/v1/gw-t/device/tcb-01/tcb", 1000.0)]  # fmt: skip
    stats = ob.stats()
    assert stats["rejected"] == 1 and ob.last_rejected_at() == 2000.0
    assert stats["last_rejected"] == {"msg_id": "tcb-01:1:tcb:1", "reason": why,
                                      "topic": "perimon/v1/gw-t/device/tcb-01/tcb",
                                      "t": "1970-01-01T00:33:20.000Z"}  # fmt: skip


@pytest.mark.unit
def test_the_kept_copies_are_bounded(monkeypatch):
    monkeypatch.setattr(outbox_module, "REJECTED_KEEP", 5)
    ob = Outbox(":memory:", 10 * MB, 0)
    ids = [_reading(ob, i) for i in range(12)]
    ob.handed_upto = ids[-1]
    ob.delivered(ids, wait_s=60, now=1000.0)
    for i in range(12):
        assert len(ob.reject({f"tcb-01:1:tcb:{i}": "schema: x"})) == 1
    assert [r.msg_id for r in ob.rejected()] == [f"tcb-01:1:tcb:{i}" for i in range(11, 6, -1)]
    assert ob.rows == 0 and ob.bytes == 0
    assert ob.stats()["rejected"] == 12 and ob.counters["rejected_forgotten"] == 7


@pytest.mark.unit
def test_the_kinds_a_receipt_confirms_are_the_kinds_the_ingest_stores():
    assert set(STORED_KINDS) == RECEIPT_KINDS


# ---- the publisher on a real Mosquitto ------------------------------------------------------


class Hospital:
    """Publishes receipts as perimon-ingest does (QoS 1, not retained)."""

    def __init__(self, host: str, port: int, tls=None, name: str = "hospital-ingest") -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.pubacks: dict[int, object] = {}
        self.c.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc)
        if tls is not None:
            self.c.tls_set(ca_certs=str(tls.certs / "ca.crt"), certfile=str(tls.certs / f"{name}.crt"),
                           keyfile=str(tls.certs / f"{name}.key"), cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
        self.c.connect(host, port)
        self.c.loop_start()

    def receipt(self, gateway: str, ids: list[str], body: bytes | None = None):
        """Publish a receipt (`body`, or one storing `ids`); the broker's PUBACK reason code."""
        if body is None:
            body = json.dumps({"stored": ids, "t": "2026-11-23T10:00:00.000Z"}).encode()
        info = self.c.publish(f"perimon/v1/{gateway}/receipt", body, 1)
        eventually(lambda: info.mid in self.pubacks, 10, "no PUBACK for the receipt")
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _publisher(host: str, port: int, tmp_path, status_interval_s: float = 5.0,
               **mqtt_cfg) -> Publisher:  # fmt: skip
    cfg = config_from_dict({"mqtt": {"host": host, "port": port, **mqtt_cfg}})
    pub = Publisher(cfg.mqtt, "gw-t", Outbox(tmp_path / "o.sqlite", 10 * MB, 0),
                    status_interval_s=status_interval_s)  # fmt: skip
    pub.start()
    assert pub.connected.wait(10)
    eventually(lambda: pub.subscribed.is_set() or not pub.await_receipts, 10, "no SUBACK")
    return pub


def _tcb(i: int) -> dict:
    return {"msg_id": f"tcb-01:1:tcb:{i}", "boot": 1, "seq": i}


@pytest.mark.system
def test_a_reading_is_kept_until_the_hospital_confirms_it_and_sent_again_until_then(
    broker, tmp_path
):
    sub = Subscriber(broker.host, broker.port, gateway="gw-t")
    hospital = Hospital(broker.host, broker.port)
    # 2.5 s: time for the receipt below to be taken before anything falls due again
    pub = _publisher(broker.host, broker.port, tmp_path, await_receipts=True, receipt_timeout_s=2.5)
    try:
        for i in range(3):
            pub.publish(("device", "tcb-01", "tcb"), _tcb(i))
        pub.publish(("device", "fh-01", "fhr"), {"msg_id": "fh-01:1:fhr:1", "boot": 1, "seq": 1})
        eventually(lambda: len(sub.of("tcb-01", "tcb")) >= 3 and sub.of("fh-01", "fhr"), 10,
                   "not delivered")  # fmt: skip
        # the live trace is done at the PUBACK; the readings wait for their receipt
        eventually(lambda: pub.outbox.awaiting() == 3 and pub.outbox.rows == 3, 10,
                   lambda: f"{pub.outbox.rows} rows, {pub.outbox.awaiting()} awaiting")  # fmt: skip
        assert hospital.receipt("gw-t", ["tcb-01:1:tcb:0", "tcb-01:1:tcb:1"]).value == 0
        eventually(lambda: pub.outbox.rows == 1, 10, "the receipt deleted nothing")
        assert pub.receipts == 1
        # a receipt naming what this gateway never published takes nothing away
        hospital.receipt("gw-t", ["tcb-01:1:tcb:7", "fh-01:1:fhr:1"])
        eventually(lambda: pub.receipts == 2, 10, "the receipt did not arrive")
        assert pub.outbox.rows == 1
        # the one not confirmed is sent again: after 2.5 s, then 5 s, ...
        eventually(lambda: len(sub.of("tcb-01", "tcb")) >= 5, 20, "not sent again")
        again = [m["msg_id"] for m in sub.of("tcb-01", "tcb")[3:]]
        assert set(again) == {"tcb-01:1:tcb:2"}
        assert pub.outbox.stats()["resent"] >= 2
        hospital.receipt("gw-t", ["tcb-01:1:tcb:2"])
        assert pub.drain(10)
    finally:
        pub.stop(drain_s=0)
        hospital.close()
        sub.close()


@pytest.mark.system
def test_a_message_the_ingest_refuses_is_rejected_kept_aside_and_not_sent_again(
    broker, tmp_path, caplog
):
    """The whole path: a gateway with `await_receipts` publishes two TcB readings and one its
    schema refuses (no `boot`) to a real Mosquitto; perimon-ingest stores the two and names the
    third in its receipt's `rejected`. The gateway forgets all three, keeps a copy of the third
    with the reason, counts it and warns of it in its status, logs it, and never sends it again."""
    caplog.set_level(logging.ERROR, logger="gateway.publish.mqtt")
    sub = Subscriber(broker.host, broker.port, gateway="gw-t")
    ingest = Ingest(IngestConfig(host=broker.host, port=broker.port, worker="w1",
                                 db=str(tmp_path / "ingest.sqlite"), ack_alerts=False))  # fmt: skip
    ingest.start()
    assert ingest.ready.wait(10)
    pub = _publisher(broker.host, broker.port, tmp_path, status_interval_s=0.3,
                     await_receipts=True, receipt_timeout_s=2.0)  # fmt: skip
    good = rg.outbox("gw-t", 2, devices=1, observations=False)
    device = good[0].topic.split("/")[4]
    bad_id = f"{device}:1:tcb:99"
    bad = {**json.loads(good[0].body), "msg_id": bad_id, "seq": 99}
    del bad["boot"]
    try:
        for m in good:
            pub.publish(tuple(m.topic.split("/")[3:]), json.loads(m.body))
        pub.publish(("device", device, "tcb"), bad)
        eventually(lambda: pub.outbox.rows == 0, 15,
                   lambda: f"{pub.outbox.rows} rows, {ingest.counts}")  # fmt: skip
        store = Store(str(tmp_path / "ingest.sqlite"))
        assert sorted(store.ids("readings")) == sorted(m.key for m in good)
        store.close()
        (kept,) = pub.outbox.rejected()
        assert kept.msg_id == bad_id and json.loads(kept.payload) == bad
        assert kept.reason.startswith("schema: tcb: ") and "boot" in kept.reason
        lines = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
        assert len(lines) == 1 and bad_id in lines[0] and kept.reason in lines[0]

        def status() -> dict:
            return sub.on("status")[-1]

        eventually(lambda: status()["outbox"]["rejected"] == 1, 10, lambda: str(status()))
        assert status()["warnings"] == [REJECTED_WARNING]
        assert status()["outbox"]["last_rejected"]["msg_id"] == bad_id
        assert status()["outbox"]["last_rejected"]["reason"] == kept.reason
        validator("gateway-status").validate(status())
        # never sent again: well past the next resends it would have had (2 s, then 4 s)
        seen = len([p for p in sub.of(device, "tcb") if p["msg_id"] == bad_id])
        time.sleep(7.0)
        again = [p for p in sub.of(device, "tcb") if p["msg_id"] == bad_id]
        assert len(again) == seen and pub.outbox.rows == 0 and len(pub.outbox.rejected()) == 1
        assert ingest.counts["invalid"] == seen and ingest.counts["rejections_sent"] == seen
    finally:
        pub.stop(drain_s=0)
        ingest.stop()
        ingest.store.close()
        sub.close()


@pytest.mark.system
def test_a_rejection_takes_only_what_the_broker_acknowledged(broker, tmp_path):
    hospital = Hospital(broker.host, broker.port)
    pub = _publisher(broker.host, broker.port, tmp_path, await_receipts=True,
                     receipt_timeout_s=3600.0)  # fmt: skip
    try:
        for i in range(2):
            pub.publish(("device", "tcb-01", "tcb"), _tcb(i))
        eventually(lambda: pub.outbox.awaiting() == 2, 10, "not delivered")
        # never published, or another device's: nothing goes, nothing is kept, no warning
        refusal = _rejection("tcb-01:1:tcb:7", "fh-01:1:fhr:1")
        assert hospital.receipt("gw-t", [], refusal).value == 0
        eventually(lambda: pub.receipts == 1, 10, "the receipt did not arrive")
        assert pub.outbox.rows == 2 and pub.outbox.rejected() == [] and pub.warnings() == []
        hospital.receipt("gw-t", [], _rejection("tcb-01:1:tcb:1", stored=("tcb-01:1:tcb:0",)))
        eventually(lambda: pub.outbox.rows == 0, 10, "the receipt was not taken")
        assert [r.msg_id for r in pub.outbox.rejected()] == ["tcb-01:1:tcb:1"]
        assert pub.outbox.confirmed == 1 and pub.warnings() == [REJECTED_WARNING]
    finally:
        pub.stop(drain_s=0)
        hospital.close()


class QuickHospital(Hospital):
    """Answers each reading the moment the broker forwards it, from its network thread: the
    receipt often reaches the gateway on the heels of the PUBACK. Every `reject_every`th
    reading is rejected, the others stored."""

    def __init__(self, host: str, port: int, gateway: str, reject_every: int) -> None:
        super().__init__(host, port)

        def answer(c, u, m) -> None:
            msg_id = json.loads(m.payload)["msg_id"]
            if int(msg_id.rsplit(":", 1)[1]) % reject_every == 0:
                body = _rejection(msg_id)
            else:
                body = json.dumps({"stored": [msg_id], "t": "2026-11-23T10:00:00.000Z"}).encode()
            self.c.publish(f"perimon/v1/{gateway}/receipt", body, 1)

        self.c.on_message = answer
        self.c.subscribe(f"perimon/v1/{gateway}/device/+/tcb", 1)


@pytest.mark.system
def test_a_receipt_that_overtakes_the_puback_is_still_acted_on(broker, tmp_path):
    """A receipt and the PUBACK of what it names come in together, in either order for the
    gateway's sender: each reading is forgotten once, stored or rejected as the receipt
    said, and none waits to be sent again."""
    hospital = QuickHospital(broker.host, broker.port, "gw-t", reject_every=5)
    pub = _publisher(broker.host, broker.port, tmp_path, await_receipts=True,
                     receipt_timeout_s=3600.0)  # fmt: skip
    n = 300
    try:
        time.sleep(0.5)  # the hospital's SUBACK
        for i in range(n):
            pub.publish(("device", "tcb-01", "tcb"), _tcb(i))
            if i % 10 == 9:
                time.sleep(0.02)  # a few at a time, as presses and Observations come
        eventually(lambda: pub.receipts == n, 20, lambda: f"{pub.receipts} receipts of {n}")
        eventually(lambda: pub.outbox.rows == 0, 5,
                   lambda: f"{pub.outbox.awaiting()} of {n} wait for a receipt already taken")  # fmt: skip
        rejected = sorted(int(r.msg_id.rsplit(":", 1)[1]) for r in pub.outbox.rejected())
        assert rejected == list(range(0, n, 5))
        assert pub.outbox.confirmed == n - len(rejected) and pub.outbox.stats()["resent"] == 0
    finally:
        pub.stop(drain_s=0)
        hospital.close()


@pytest.mark.system
def test_without_receipts_the_outbox_forgets_at_the_puback_as_before(broker, tmp_path):
    path = tmp_path / "o.sqlite"
    # rows a run with receipts left waiting: a run without them forgets them (the broker had them)
    ob = Outbox(path, 10 * MB, 0)
    rid = _reading(ob, 0)
    ob.handed_upto = rid
    ob.delivered([rid], wait_s=60)
    ob.close()
    sub = Subscriber(broker.host, broker.port, gateway="gw-t")
    hospital = Hospital(broker.host, broker.port)
    pub = _publisher(broker.host, broker.port, tmp_path)
    try:
        assert not pub.await_receipts and pub.outbox.rows == 0
        for i in range(1, 4):
            pub.publish(("device", "tcb-01", "tcb"), _tcb(i))
        assert pub.drain(10)
        eventually(lambda: len(sub.of("tcb-01", "tcb")) == 3, 10, "not delivered")
        hospital.receipt("gw-t", ["tcb-01:1:tcb:1"])
        time.sleep(0.5)  # a window for a receipt to be (wrongly) taken in
        assert pub.receipts == 0 and pub.outbox.stats()["resent"] == 0
        assert len(sub.of("tcb-01", "tcb")) == 3  # nothing sent again
    finally:
        pub.stop()
        hospital.close()
        sub.close()


# ---- the deployed ACL: who may publish a receipt --------------------------------------------

PASSWORDS = {"gw-t": "t-secret", "gw-b": "b-secret"}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    work = tmp_path_factory.mktemp("tls")
    certs = make_certs(work / "certs", ["gw-t", "gw-b", "hospital-ingest", "hospital-commander"])
    b = start_tls_broker(work / "broker", certs, PASSWORDS)
    yield b
    b.stop()


@pytest.mark.system
def test_only_the_hospital_ingest_identity_may_publish_a_receipt(tls, tmp_path):
    cfg = config_from_dict({"mqtt": {
        "host": "127.0.0.1", "port": tls.cert_port, "tls": True, "await_receipts": True,
        "receipt_timeout_s": 3600.0, "ca_file": str(tls.certs / "ca.crt"),
        "cert_file": str(tls.certs / "gw-t.crt"), "key_file": str(tls.certs / "gw-t.key")}})  # fmt: skip
    pub = Publisher(cfg.mqtt, "gw-t", Outbox(tmp_path / "o.sqlite", 10 * MB, 0))
    pub.start()
    # (the gateway's own identity cannot forge one either: the next test; connecting with it
    # here would take the gateway's connection's place, use_username_as_clientid)
    forgers = [Hospital("127.0.0.1", tls.cert_port, tls, name)
               for name in ("gw-b", "hospital-commander")]  # fmt: skip
    hospital = Hospital("127.0.0.1", tls.cert_port, tls)
    try:
        eventually(lambda: pub.subscribed.is_set(), 10, "the gateway did not subscribe")
        for i in range(2):
            pub.publish(("device", "tcb-01", "tcb"), _tcb(i))
        eventually(lambda: pub.outbox.awaiting() == 2, 10, "not delivered")
        ids = ["tcb-01:1:tcb:0", "tcb-01:1:tcb:1"]
        for forger in forgers:  # another gateway, the hospital's commander
            assert forger.receipt("gw-t", ids).is_failure  # PUBACK: not authorized
        time.sleep(0.5)  # a window for a forged receipt to arrive in: none may
        assert pub.receipts == 0 and pub.outbox.rows == 2
        assert not hospital.receipt("gw-t", ids[:1]).is_failure
        eventually(lambda: pub.outbox.rows == 1, 10, "the hospital's receipt was not taken")
        # another gateway cannot read gw-t's receipts either. The forger gw-b goes first: the
        # spy connects as gw-b too (the client id is the certificate's name), and two clients
        # reconnecting with one id take each other's place (the SUBACK never came once)
        forgers[0].close()
        spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        got: list[str] = []
        ready = threading.Event()
        spy.on_message = lambda c, u, m: got.append(m.topic)
        spy.on_subscribe = lambda *a: ready.set()
        spy.tls_set(ca_certs=str(tls.certs / "ca.crt"), certfile=str(tls.certs / "gw-b.crt"),
                    keyfile=str(tls.certs / "gw-b.key"), cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
        spy.connect("127.0.0.1", tls.cert_port)
        spy.loop_start()
        spy.subscribe("perimon/v1/+/receipt", 1)
        assert ready.wait(10)
        hospital.receipt("gw-t", ids[1:])
        eventually(lambda: pub.outbox.rows == 0, 10, "the second receipt was not taken")
        time.sleep(0.3)
        assert got == []
        spy.disconnect()
        spy.loop_stop()
    finally:
        pub.stop(drain_s=0)
        for c in (*forgers, hospital):
            c.close()


@pytest.mark.system
def test_a_gateway_publishes_what_it_publishes_and_not_its_own_receipts(tls):
    """The ACL lists what a gateway writes (status, unknown_devices, device/..., reply/...):
    not its receipt topic."""
    gw = Hospital("127.0.0.1", tls.cert_port, tls, "gw-t")
    try:
        for topic in ("status", "unknown_devices", "device/tcb-01/tcb", "device/fh-01/status",
                      "reply/ingest-1"):  # fmt: skip
            info = gw.c.publish(f"perimon/v1/gw-t/{topic}", b"{}", 1)
            eventually(lambda: info.mid in gw.pubacks, 10, f"no PUBACK on {topic}")  # noqa: B023
            assert not gw.pubacks[info.mid].is_failure, topic
        # nothing else, and not its own receipts: a gateway cannot confirm its own messages
        assert gw.receipt("gw-t", ["tcb-01:1:tcb:0"]).is_failure
        info = gw.c.publish("perimon/v1/gw-t/anything-else", b"{}", 1)
        eventually(lambda: info.mid in gw.pubacks, 10, "no PUBACK")
        assert gw.pubacks[info.mid].is_failure
    finally:
        gw.close()
