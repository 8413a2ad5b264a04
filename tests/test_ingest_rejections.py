"""Messages the ingest refuses as not of the contract are named to their gateway in a receipt's
`rejected` with a machine-readable reason (docs/mqtt.md, "Receipts"), when they name themselves;
one that names no identifier is only logged and counted."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt
import pytest

from hospital.config import IngestConfig
from hospital.ingest import RECEIPT_MAX_REJECTED, Ingest
from hospital.messages import MAX_REASON_CHARS, Invalid, decode, load_checks, named_id
from tests.harness import region as rg
from tests.harness.contract import validator
from tests.harness.mqtt import PREFIX
from tests.harness.wait import eventually

TOPIC = f"{PREFIX}/gw-000/device/tcb-gw-000-00/tcb"


def _valid() -> dict:
    (m,) = rg.outbox("gw-000", 1, devices=1, observations=False)
    assert m.topic == TOPIC
    return json.loads(m.body)


@pytest.mark.unit
def test_a_message_that_fails_its_schema_is_named_with_why():
    checks = load_checks()
    bad = {**_valid(), "tcb_mg_dl": "high"}
    d = decode(TOPIC, json.dumps(bad).encode(), checks)
    assert isinstance(d, Invalid)
    assert (d.code, d.msg_id, d.gateway_id) == ("schema", bad["msg_id"], "gw-000")
    assert d.receipt_reason().startswith("schema: tcb: ")
    rejection = {"msg_id": d.msg_id, "reason": d.receipt_reason()}
    validator("receipt").validate({"stored": [], "rejected": [rejection]})


@pytest.mark.unit
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"seq": 1}',
        json.dumps({"msg_id": "a" * 201}).encode(),
        json.dumps({"msg_id": ""}).encode(),
    ],  # fmt: skip
)
def test_a_message_that_names_no_identifier_is_not_named(body):
    d = decode(TOPIC, body, load_checks())
    assert isinstance(d, Invalid) and d.msg_id is None


@pytest.mark.unit
def test_the_identifier_is_the_one_the_gateway_keeps():
    """As gateway/publish/mqtt.py's `message_id`: `msg_id`, else a FHIR resource's identifier."""
    assert named_id({"msg_id": 12}) == "12"
    assert named_id({"resourceType": "Observation", "identifier": [{"value": "o:1"}]}) == "o:1"
    assert named_id({"identifier": [{"value": "o:1"}]}) is None  # not a resource
    assert named_id({"resourceType": "Observation", "identifier": ["o:1"]}) is None


@pytest.mark.unit
def test_a_reason_is_one_printable_line_a_receipt_holds():
    why = Invalid("x", "schema", "a", "gw", "tcb: line\nbreak\x00 " + "é" * 400).receipt_reason()
    assert len(why) == MAX_REASON_CHARS and why.isprintable() and why.startswith("schema: tcb: ")
    validator("receipt").validate({"stored": [], "rejected": [{"msg_id": "a", "reason": why}]})


@pytest.mark.system
def test_many_rejections_are_split_over_receipts_each_within_the_schema(broker, tmp_path):
    got: list[dict] = []
    ready = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    watcher.on_subscribe = lambda *a: ready.append(True)
    watcher.connect(broker.host, broker.port)
    watcher.loop_start()
    watcher.subscribe(f"{PREFIX}/gw-000/receipt", 1)
    eventually(lambda: ready, 10, "no SUBACK")
    w = Ingest(IngestConfig(host=broker.host, port=broker.port, worker="w1", ack_alerts=False,
                            db=str(tmp_path / "ingest.sqlite")))  # fmt: skip
    w.start()
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    gw.connect(broker.host, broker.port)
    gw.loop_start()
    n = 2 * RECEIPT_MAX_REJECTED + 50
    try:
        assert w.ready.wait(10)
        valid = _valid()
        gw.publish(TOPIC, json.dumps(valid), 1)
        for i in range(n):
            gw.publish(TOPIC, json.dumps({**valid, "msg_id": f"bad:{i}", "boot": "one"}), 1)
        named = lambda: [r["msg_id"] for body in got for r in body.get("rejected", [])]  # noqa: E731
        eventually(lambda: len(named()) >= n, 20, lambda: f"{len(named())} of {n}, {w.counts}")
        assert sorted(named()) == sorted(f"bad:{i}" for i in range(n))
        assert [i for body in got for i in body["stored"]] == [valid["msg_id"]]
        schema = validator("receipt")
        for body in got:
            schema.validate(body)
            assert len(body.get("rejected", [])) <= RECEIPT_MAX_REJECTED
        assert w.counts["invalid"] == n and w.counts["rejections_sent"] == n
    finally:
        gw.disconnect()
        gw.loop_stop()
        w.stop()
        w.store.close()
        watcher.disconnect()
        watcher.loop_stop()
