"""The hospital contract: every message the gateway publishes in an end-to-end run validates
against docs/schemas (named by docs/asyncapi.yaml), including the FHIR Observations, CTG
findings and command responses."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import gateway.processing.fhir
from gateway.config import MqttSection, ProcessingSection
from gateway.processing.fetal import FetalProcessor
from gateway.publish.mqtt import REJECTED_WARNING, Publisher
from gateway.publish.outbox import PRIO_READING, Outbox
from hospital.config import IngestConfig
from hospital.ingest import Ingest
from simulators.fleet import DeviceSpec
from tests.harness import region as rg
from tests.harness.chain import run_chain
from tests.harness.contract import SCHEMAS, validator
from tests.harness.mqtt import PREFIX, Subscriber
from tests.harness.paths import DOCS
from tests.harness.wait import eventually, eventually_async


def asyncapi_channels() -> dict[str, tuple[re.Pattern, str]]:
    """channel id -> (address as a regex, schema name), from docs/asyncapi.yaml."""
    doc = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    out = {}
    for cid, ch in doc["channels"].items():
        (msg,) = ch["messages"].values()
        ref = msg["payload"]["schema"]["$ref"]
        schema = Path(ref).name.removesuffix(".schema.json")
        assert (SCHEMAS / Path(ref).name).exists(), ref
        pattern = re.escape(ch["address"])
        pattern = pattern.replace(re.escape("{prefix}"), "perimon/v1")
        pattern = re.sub(r"\\\{[a-zA-Z]+\\\}", "[^/]+", pattern)
        out[cid] = (re.compile(f"^{pattern}$"), schema)
    for op in doc["operations"].values():
        assert op["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]
    return out


def schema_for(topic: str, channels) -> str:
    matches = [schema for pattern, schema in channels.values() if pattern.match(topic)]
    assert len(matches) == 1, (topic, matches)
    return matches[0]


class Replies:
    def __init__(self, broker, topic: str) -> None:
        self.got: list[tuple[dict, bytes | None]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = lambda c, u, m: self.got.append(
            (json.loads(m.payload), getattr(m.properties, "CorrelationData", None))
        )
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def command(self, device: str, body: dict, correlation: bytes, reply_to: str) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_to
        props.CorrelationData = correlation
        topic = f"{PREFIX}/gw-test/device/{device}/cmd"
        self.client.publish(topic, json.dumps(body), 1, False, props).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.system
def test_every_published_message_matches_the_contract(broker, tmp_path, monkeypatch):
    monkeypatch.setattr(gateway.processing.fhir, "TRACE_POINTS_PER_OBSERVATION", 20)  # 5 s windows
    channels = asyncapi_channels()
    validators = {name: validator(name) for _, name in channels.values()}
    reply_to = "hospital/replies/ward-3"
    replies = Replies(broker, reply_to)
    specs = [
        DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0, snr_db=15),
        DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=11.0,
                   press_every_s=4.0),
    ]  # fmt: skip

    async def during(gw, fleet):
        linked = lambda: (s := gw.sessions.get("fh-01")) is not None and s.link is not None  # noqa: E731
        await eventually_async(linked, 20, "fh-01 never connected")
        replies.command("fh-01", {"command": "set_settings", "request_id": "r1",
                                  "settings": {"risk_colour": "orange"}}, b"c-1", reply_to)  # fmt: skip
        replies.command("fh-01", {"command": "get_settings"}, b"c-2", reply_to)
        replies.command("fh-01", {"command": "reboot"}, b"c-3", reply_to)

    sub, gw = run_chain(broker, tmp_path, specs, seconds=12, during=during)
    replies.close()

    kinds: dict[str, int] = {}
    for topic, payload, _ in sub.messages:
        if topic.endswith("/cmd"):
            continue  # the test's own commands, not the gateway's messages
        name = schema_for(topic, channels)
        errors = sorted(validators[name].iter_errors(payload), key=str)
        assert not errors, (topic, payload, [e.message for e in errors[:3]])
        kinds[name] = kinds.get(name, 0) + 1
    for name in ("gateway-status", "device-status", "fhr", "mhr", "tcb", "observation"):
        assert kinds.get(name), (name, kinds)
    codes = {
        p["code"]["coding"][0]["code"] for t, p, _ in sub.messages if t.endswith("/observation")
    }
    assert {"55283-6", "8867-4", "58941-6", "72898-0"} <= codes

    assert len(replies.got) == 3
    by_corr = {c: body for body, c in replies.got}
    for body in by_corr.values():
        assert not list(validators["command-response"].iter_errors(body))
    assert by_corr[b"c-1"]["status"] == "ok" and by_corr[b"c-1"]["request_id"] == "r1"
    assert by_corr[b"c-1"]["settings"] == {"risk_colour": "orange"}
    assert by_corr[b"c-2"]["settings"] == {"risk_colour": "orange"}
    assert by_corr[b"c-3"]["status"] == "rejected" and "command" in by_corr[b"c-3"]["error"]
    assert gw.sessions["fh-01"].processor.alerts.escalate is True  # orange: medium -> high


@pytest.mark.unit
def test_ctg_findings_match_the_contract():
    """CTG findings need a minute of trace (longer than the end-to-end run): built here by the
    gateway's own processor from 20 minutes of a trace with an acceleration."""
    outbox = Outbox(":memory:", 1 << 20, 0)
    publisher = Publisher(MqttSection(), "gw-test", outbox)  # stores, numbers; never started
    session = SimpleNamespace(state=SimpleNamespace(device_id="fh-01", boot=1, on_skin=True))
    proc = FetalProcessor(session, publisher.publish, ProcessingSection())
    t = np.arange(20 * 60 * 4) / 4.0
    fhr = 140 + 3 * np.sin(2 * np.pi * t / 50) + 20 * np.exp(-(((t - 400) / 15) ** 2))
    fhr[1000:1040] = np.nan
    proc.history_fhr.extend(fhr.tolist())
    proc.next_point = len(fhr) + 1
    proc.publish_ctg()
    proc.next_point += 240  # a minute later
    proc.publish_ctg()
    proc.apply_settings({"ctg_mode": "intrapartum"}, {})
    proc.publish_ctg()
    rows = outbox.pending(0, 100)
    ctg = [json.loads(r.payload) for r in rows if r.topic.endswith("/ctg")]
    assert [c["seq"] for c in ctg] == [1, 2, 3]  # numbered per device by the gateway, from 1
    for c in ctg:
        assert not list(validator("ctg").iter_errors(c)), c
    assert ctg[0]["accelerations"], ctg[0]
    # both analyses, the headline named by the device's CTG mode (antenatal unless set)
    assert [c["ctg_mode"] for c in ctg] == ["antenatal", "antenatal", "intrapartum"]
    dr = ctg[0]["dawes_redman"]
    assert dr["analysed_min"] == 20 and dr["status"] in ("met", "not_yet_met"), dr
    assert ctg[0]["dawes_redman_session_id"] is None  # no recording session: the window
    assert ctg[0]["artefact_pct"] == 0.0 and ctg[0]["signal_loss_pct"] > 0


@pytest.mark.unit
def test_ctg_messages_of_an_older_gateway_still_match_the_contract():
    """The keys added to CTG findings within v1 are optional: a message without them (a
    gateway from before them) is valid, one with a wrong Dawes-Redman status is not."""
    old = {"msg_id": "fh-01:1:ctg:480", "seq": 1, "device_id": "fh-01", "boot": 1,
           "window_s": 120.0, "t": "2026-01-01T00:00:00.000Z", "baseline_bpm": 140.0,
           "variability_bpm": 8.0, "stv_ms": 6.0, "accelerations": [], "decelerations": [],
           "signal_loss_pct": 1.0, "sinusoidal": False, "figo_class": "indeterminate",
           "reasons": ["trace shorter than 10 min"]}  # fmt: skip
    assert not list(validator("ctg").iter_errors(old))
    dr = {"criteria_met": None, "status": "maybe", "time_to_met_min": None, "analysed_min": 0,
          "basal_heart_rate_bpm": None, "stv_ms": None, "high_variation_min": 0,
          "low_variation_min": 0, "accelerations": 0, "decelerations_lost_beats": [],
          "signal_loss_pct": 0.0, "reasons_not_met": []}  # fmt: skip
    assert list(validator("ctg").iter_errors({**old, "dawes_redman": dr}))
    assert not list(
        validator("ctg").iter_errors({**old, "dawes_redman": {**dr, "status": "too_short"}})
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    "name,payload",
    [
        ("tcb", {"msg_id": "x", "device_id": "tcb-01", "boot": 1, "seq": 1,
                 "t": "2026-01-01T00:00:00.000Z", "t_device_ms": 1, "tcb_mg_dl": 9.0,
                 "tcb_umol_l": 153.9, "ci_low_mg_dl": 8.0, "ci_high_mg_dl": 10.0,
                 "flag": "no_contact", "assessment": None}),
        ("observation", {**gateway.processing.fhir.trace_observation("fhr", "gw", "fh-01", 1, 1, 0.0, [140.0]),
                         "valueQuantity": {"value": 1, "unit": "/min",
                                           "system": "http://unitsofmeasure.org", "code": "/min"}}),
        ("command", {"command": "set_settings", "settings": {"birth_time": "2026-01-01"}}),
    ],
)  # fmt: skip
def test_the_schemas_reject_what_the_contract_forbids(name, payload):
    """A flagged TcB with a number, an Observation with two values, a command setting what
    only the nurse may set: each is refused."""
    assert list(validator(name).iter_errors(payload))


@pytest.mark.unit
def test_every_alert_kind_is_documented_and_labelled_for_the_nurse():
    from gateway.processing.alerts import ALERT_KINDS

    root = Path(__file__).resolve().parents[1]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", (root / "docs/mqtt.md").read_text(), re.M))
    js = (root / "gateway/web/static/js/alerts.js").read_text()
    table = js[js.index("const ALERT_TEXT") : js.index("};", js.index("const ALERT_TEXT"))]
    labelled = set(re.findall(r"\b([a-z_]+): \"", table))
    assert set(ALERT_KINDS) <= documented
    assert set(ALERT_KINDS) == labelled


@pytest.mark.unit
def test_an_alert_kind_outside_the_catalogue_is_refused():
    from gateway.processing.alerts import AlertTracker

    sent = []
    with pytest.raises(ValueError):
        AlertTracker("fh-01", lambda *a, **k: sent.append(a)).set("made_up", True, "x")
    assert sent == []


@pytest.mark.unit
def test_a_ble_device_status_with_its_radio_statistics_matches_the_schema():
    """Every field the BLE transport adds to device status is in the schema, typed: a field
    added to RadioStats without a schema entry, or with a value of another type, fails here."""
    import dataclasses

    from gateway import protocol as p
    from gateway.device.session import DeviceSession
    from gateway.transports.ble import RadioStats

    schema = json.loads((SCHEMAS / "device-status.schema.json").read_text())
    radio = dataclasses.asdict(RadioStats(address="02:AB:CD:EF:01:02", rssi=-61, connected=True,
                                          last_reconnect_s=0.16))  # fmt: skip
    assert set(radio) <= set(schema["properties"]["radio"]["properties"])
    session = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, 15.0)
    status = session.state.to_dict() | {"last_seen": None, "t": "2026-11-23T10:00:00.000Z",
                                        "radio": radio}  # fmt: skip
    assert set(status["stats"]) <= set(schema["properties"]["stats"]["properties"])
    validator("device-status").validate(status)


def _status_with_a_rejection(outbox: Outbox) -> Publisher:
    """A publisher (never started) whose outbox holds one message the hospital rejected."""
    publisher = Publisher(MqttSection(), "gw-test", outbox)
    row = outbox.add("perimon/v1/gw-test/device/tcb-01/tcb", b"{}", msg_id="tcb-01:1:tcb:4",
                     retain=False, priority=PRIO_READING)  # fmt: skip
    outbox.delivered([row], 60.0)
    outbox.reject({"tcb-01:1:tcb:4": "schema: tcb: 'boot' is a required property"})
    return publisher


@pytest.mark.unit
def test_every_field_of_the_gateway_status_is_in_its_schema():
    """The gateway status as the publisher builds it, online with a rejection (so `warnings`,
    `outbox.rejected` and `outbox.last_rejected` are filled in) and offline: each key it carries
    is described by docs/schemas/gateway-status.schema.json, and each form is valid. A field
    added to the status or to Outbox.stats() without a schema entry fails here."""
    schema = json.loads((SCHEMAS / "gateway-status.schema.json").read_text())
    publisher = _status_with_a_rejection(Outbox(":memory:", 1 << 20, 0))
    online = json.loads(publisher._status_payload("online"))
    described = schema["properties"]
    assert set(online) <= set(described), set(online) - set(described)
    outbox_fields = described["outbox"]["properties"]
    assert set(online["outbox"]) <= set(outbox_fields), set(online["outbox"]) - set(outbox_fields)
    (rejection,) = [s for s in outbox_fields["last_rejected"]["oneOf"] if s["type"] == "object"]
    assert set(online["outbox"]["last_rejected"]) == set(rejection["properties"])
    assert online["warnings"] == [REJECTED_WARNING] and online["outbox"]["rejected"] == 1
    for status in (online, json.loads(publisher._status_payload("offline", "shutdown"))):
        errors = sorted(validator("gateway-status").iter_errors(status), key=str)
        assert not errors, (status, [e.message for e in errors[:3]])


@pytest.mark.unit
def test_the_gateway_status_schema_refuses_what_the_contract_forbids():
    """An online status without its outbox figures, a rejection without its reason, a warning
    that is not a code: each refused. A status of a gateway from before receipts (no
    `awaiting_receipt`, `resent`, `rejected`, `last_rejected`, `warnings`) is still valid."""
    publisher = _status_with_a_rejection(Outbox(":memory:", 1 << 20, 0))
    online = json.loads(publisher._status_payload("online"))
    check = validator("gateway-status")
    last = {k: v for k, v in online["outbox"]["last_rejected"].items() if k != "reason"}
    for wrong in (
        {k: v for k, v in online.items() if k != "outbox"},
        {**online, "outbox": {**online["outbox"], "last_rejected": last}},
        {**online, "warnings": "hospital_rejects_messages"},
        {**online, "warnings": ["Hospital rejects messages!"]},
        {**online, "outbox": {**online["outbox"], "rejected": -1}},
    ):
        assert list(check.iter_errors(wrong)), wrong
    older = {k: online["outbox"][k] for k in ("queued", "queued_bytes", "max_bytes",
                                              "dropped_trace", "dropped_status",
                                              "dropped_readings")}  # fmt: skip
    assert not list(check.iter_errors({**{k: v for k, v in online.items() if k != "warnings"},
                                       "outbox": older}))  # fmt: skip


@pytest.mark.system
def test_a_published_status_with_rejections_matches_the_contract(broker, tmp_path):
    """The status as the broker delivers it, after perimon-ingest refused one of the gateway's
    messages (a TcB reading without `boot`): its `warnings`, `outbox.rejected` and
    `outbox.last_rejected` are there, and valid."""
    sub = Subscriber(broker.host, broker.port, gateway="gw-test")
    ingest = Ingest(IngestConfig(host=broker.host, port=broker.port, worker="w1",
                                 db=str(tmp_path / "ingest.sqlite"), ack_alerts=False))  # fmt: skip
    ingest.start()
    assert ingest.ready.wait(10)
    cfg = MqttSection(host=broker.host, port=broker.port, await_receipts=True,
                      receipt_timeout_s=2.0)  # fmt: skip
    publisher = Publisher(cfg, "gw-test", Outbox(tmp_path / "o.sqlite", 1 << 20, 0),
                          status_interval_s=0.3)  # fmt: skip
    publisher.start()
    try:
        assert publisher.connected.wait(10)
        eventually(publisher.subscribed.is_set, 10, "no SUBACK for the receipts")
        (good,) = rg.outbox("gw-test", 1, devices=1, observations=False)
        bad = json.loads(good.body)
        del bad["boot"]
        publisher.publish(tuple(good.topic.split("/")[3:]), bad)

        def rejected() -> list[dict]:
            return [s for s in sub.on("status") if s.get("outbox", {}).get("rejected")]

        eventually(rejected, 15, lambda: f"{publisher.outbox.rows} rows, {ingest.counts}")
        status = rejected()[-1]
    finally:
        publisher.stop(drain_s=0)
        ingest.stop()
        ingest.store.close()
        sub.close()
    assert status["warnings"] == [REJECTED_WARNING]
    assert status["outbox"]["last_rejected"]["msg_id"] == bad["msg_id"]
    assert status["outbox"]["last_rejected"]["reason"].startswith("schema: tcb: ")
    errors = sorted(validator("gateway-status").iter_errors(status), key=str)
    assert not errors, (status, [e.message for e in errors[:3]])
