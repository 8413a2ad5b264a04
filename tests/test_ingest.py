"""The reference hospital subscriber: two ingest workers on one MQTT 5 shared subscription
against one Mosquitto store every reading and alert exactly once, and acknowledge alerts back
to the gateway on the command topic. The tests that store run on SQLite and on PostgreSQL
(`new_database`)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest

import gateway.processing.fhir
from devtools.broker import free_port
from gateway.app import Gateway
from gateway.cli import main as cli_main
from gateway.config import config_from_dict
from hospital import ingest as ingest_module
from hospital.cli import main as ingest_main
from hospital.config import IngestConfig
from hospital.ingest import Ingest, Received
from hospital.store import Store
from simulators.fleet import DeviceSpec, Fleet
from tests.harness import postgres as _postgres
from tests.harness import region as rg
from tests.harness.chain import gateway_config, newborn, run_chain, running_fleet, running_gateway
from tests.harness.contract import validator
from tests.harness.mqtt import PREFIX, Subscriber
from tests.harness.wait import eventually, eventually_async

postgres, new_database = _postgres.postgres, _postgres.new_database  # fixtures, for this module

pytestmark = pytest.mark.system


def _key(topic: str, payload: dict) -> str:
    if topic.endswith("/observation"):
        return payload["identifier"][0]["value"]
    return payload["msg_id"]


def _worker(broker, db: str, name: str, **kw) -> Ingest:
    return Ingest(IngestConfig(host=broker.host, port=broker.port, db=db, worker=name, **kw))


def test_two_workers_store_each_message_exactly_once_and_ack_alerts(
    broker, tmp_path, monkeypatch, new_database
):
    monkeypatch.setattr(gateway.processing.fhir, "TRACE_POINTS_PER_OBSERVATION", 20)
    db = new_database()
    workers = [_worker(broker, db, f"w{i}") for i in (1, 2)]
    for w in workers:
        w.start()
    assert all(w.ready.wait(10) for w in workers)
    specs = [
        DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0, snr_db=15),
        # above the phototherapy line at 40 h, 38 weeks: alerts are raised and acknowledged
        DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=17.0,
                   press_every_s=3.0),
    ]  # fmt: skip
    sub, gw = run_chain(broker, tmp_path, specs, seconds=12)

    stored_kinds = ("observation", "tcb", "ctg", "alert", "session")
    published = {_key(t, p): t for t, p, _ in sub.messages if t.rsplit("/", 1)[-1] in stored_kinds}
    assert len(published) > 10
    store = Store(db)

    def rows() -> int:
        return store.count("readings") + store.count("alerts")

    eventually(lambda: rows() >= len(published), 15, lambda: f"stored {rows()} of {len(published)}")
    ids = store.ids("readings") + store.ids("alerts")
    assert sorted(ids) == sorted(published)  # every message, each exactly once
    per_worker = dict(store.query("SELECT worker, COUNT(*) FROM readings GROUP BY worker"))
    assert set(per_worker) == {"w1", "w2"}, per_worker  # the broker shared the load
    assert sum(w.counts["invalid"] for w in workers) == 0

    # the gateway's alerts were acknowledged from the hospital, and the gateway confirmed
    raised = [p for t, p, _ in sub.messages if t.endswith("/alert") and p["state"] == "raised"]
    assert raised
    acked = [a for a in gw.history.alerts.values() if a["acked_by"]]
    assert acked and all(a["acked_by"].startswith("hospital:w") for a in acked)
    assert all(a["acked_via"] == "mqtt" for a in acked)
    eventually(lambda: sum(w.counts["acks_confirmed"] for w in workers) == len(raised), 15,
               "not every alert's acknowledgement was confirmed")  # fmt: skip
    statuses = [r[0] for r in store.query("SELECT ack_status FROM alerts WHERE state='raised'")]
    assert statuses and set(statuses) == {"ok"}

    # a redelivery (same identifier) is not stored again, whichever worker gets it
    before = rows()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    again = [(t, p) for t, p, _ in sub.messages if t.endswith(("/tcb", "/observation"))][:6]
    for t, p in again:
        c.publish(t, json.dumps(p), 1).wait_for_publish(5)
    eventually(lambda: sum(w.counts["duplicates"] for w in workers) >= len(again), 15,
               "redeliveries not seen as duplicates")  # fmt: skip
    assert rows() == before
    # an invalid message is refused, not stored
    c.publish(f"{PREFIX}/gw-test/device/tcb-01/tcb", json.dumps({"msg_id": "x"}), 1)
    eventually(lambda: sum(w.counts["invalid"] for w in workers) == 1, 15, "not refused")
    assert rows() == before
    c.disconnect()
    c.loop_stop()
    assert store.gaps() == []  # nothing was lost on the way
    store.close()
    for w in workers:
        w.stop()
        w.store.close()
    _replay_without_one(broker, new_database(), sub.messages, stored_kinds)


def _replay_without_one(broker, db: str, messages, stored_kinds) -> None:
    """The run's messages again, to a fresh ingest, without the middle TcB reading and its two
    Observations: `perimon ingest` names exactly those as missing, and nothing else."""
    tcb = sorted((p for t, p, _ in messages if t.endswith("/tcb")), key=lambda p: p["seq"])
    assert len(tcb) >= 3, len(tcb)
    lost = tcb[len(tcb) // 2]
    lost_ids = {lost["msg_id"], f"{lost['msg_id']}:tcb_mg_dl", f"{lost['msg_id']}:tcb_umol_l"}
    replay = [(t, p) for t, p, _ in messages if t.rsplit("/", 1)[-1] in stored_kinds
              and _key(t, p) not in lost_ids]  # fmt: skip
    w = _worker(broker, db, "r1", group="replay", ack_alerts=False)
    w.start()
    assert w.ready.wait(10)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    for t, p in replay:
        c.publish(t, json.dumps(p), 1).wait_for_publish(5)
    eventually(lambda: w.counts["stored"] == len({_key(t, p) for t, p in replay}), 15,
               "the replay was not stored")  # fmt: skip
    c.disconnect()
    c.loop_stop()
    w.stop()
    w.store.close()
    seq = lost["seq"]
    expected = [f"gw-test/tcb-01 {kind} boot {lost['boot']}: seq {seq} missing"
                for kind in ("tcb", "tcb_mg_dl-obs", "tcb_umol_l-obs")]  # fmt: skip
    assert [str(g) for g in Store(db).gaps()] == expected
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["ingest", "--db", db, "--gaps"]) == 0
    assert out.getvalue().splitlines() == ["gaps: 3 messages missing in 3 places",
                                           *(f"gap: {line}" for line in expected)]  # fmt: skip


def test_ingest_command_line(broker, tmp_path, capsys):
    db = tmp_path / "x.sqlite"
    rc = cli_main(["ingest", "--host", broker.host, "--port", str(broker.port), "--db", str(db),
                   "--seconds", "1"])  # fmt: skip
    assert rc == 0
    assert "stored 0" in capsys.readouterr().out
    assert Store(str(db)).count("readings") == 0
    nowhere = "postgresql://ingest:secret@/x?host=/nonexistent"
    assert cli_main(["ingest", "--db", nowhere, "--seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perimon: error: postgresql://ingest@/x?host=/nonexistent: ")
    assert "secret" not in err and len(err.splitlines()) == 1


def test_perimon_ingest_is_the_same_command_on_its_own(broker, tmp_path, capsys):
    db = tmp_path / "x.sqlite"
    rc = ingest_main(["--host", broker.host, "--port", str(broker.port), "--db", str(db),
                      "--seconds", "1"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == ["received 0, stored 0, duplicates 0, invalid 0, alerts acknowledged 0/0",
                       "gaps: 0 messages missing in 0 places"]  # fmt: skip
    assert ingest_main(["--db", str(db), "--schemas", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"perimon-ingest: error: {tmp_path}: no perimon JSON Schemas there\n"
    )
    with pytest.raises(SystemExit) as exc:
        ingest_main(["--port", "x"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("perimon-ingest: error: argument --port")


def test_the_hospital_side_imports_nothing_of_the_gateway():
    """hospital/ runs without gateway/ (its own `perimon-ingest`): not even indirectly."""
    code = ("import sys, hospital.cli, hospital.ingest; hospital.cli.build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules}))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout
    assert "'hospital'" in loaded and "'perimon_schemas'" in loaded
    assert "'gateway'" not in loaded and "'simulators'" not in loaded and "'devtools'" not in loaded


def test_a_named_worker_gets_what_arrived_while_it_was_away(broker, new_database):
    """With --worker the broker keeps the worker's session: a restarted worker stores what was
    published while it was down; there is no gap."""
    db = new_database()
    w = _worker(broker, db, "ward-ingest", session_expiry_h=600 / 3600)
    w.start()
    assert w.ready.wait(10)
    w.stop()
    w.store.close()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    for seq in (1, 2, 3):
        alert = {"msg_id": f"fh-01:alert:signal_loss:{seq}:raised", "seq": seq,
                 "device_id": "fh-01", "alert": "signal_loss", "state": "raised",
                 "severity": "medium", "detail": "x", "t": "2026-01-01T00:00:00.000Z",
                 "raised_at": "2026-01-01T00:00:00.000Z"}  # fmt: skip
        c.publish(f"{PREFIX}/gw-test/device/fh-01/alert", json.dumps(alert), 1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    w = _worker(broker, db, "ward-ingest", session_expiry_h=600 / 3600, ack_alerts=False)
    w.start()
    eventually(lambda: w.counts["stored"] == 3, 15, lambda: f"stored: {w.counts}")
    w.stop()
    assert w.store.count("alerts") == 3 and w.store.gaps() == []
    w.store.close()
    assert cli_main(["ingest", "--worker", "w", "--session-expiry-h", "-1", "--db", db]) == 2


@pytest.mark.parametrize("bad", ["not json", json.dumps({"command": "ack_alert"})])
def test_ingest_ignores_unreadable_replies(tmp_path, bad):
    w = Ingest(IngestConfig(port=1, db=str(tmp_path / "y.sqlite"), worker="w"))
    w.process([Received(f"{PREFIX}/gw-test/reply/w", bad.encode(), 1, 0, 0, b"fh-01:alert:x:1")])
    assert w.counts["acks_confirmed"] == 0 and w.counts["received"] == 0


@pytest.mark.parametrize("receipts", [True, False])
def test_receipts_name_each_stored_message_after_its_batch_commits(broker, tmp_path, receipts):
    """docs/mqtt.md, "Receipts": per gateway, after the batches commit, naming the messages
    now in the database (new or stored before: a gateway's resend is confirmed too), never one
    the database does not hold; none with `receipts = false`."""
    outboxes = rg.region(2, 30)  # two gateways' readings, Observations and alerts
    got: list[tuple[str, dict]] = []
    ready = []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    watcher.on_subscribe = lambda *a: ready.append(True)
    watcher.connect(broker.host, broker.port)
    watcher.loop_start()
    watcher.subscribe(f"{PREFIX}/+/receipt", 1)
    eventually(lambda: ready, 10, "no SUBACK")
    db = str(tmp_path / "ingest.sqlite")
    w = _worker(broker, db, "w1", receipts=receipts, ack_alerts=False)
    w.start()
    gws = rg.Gateways(broker.host, broker.port)
    try:
        assert w.ready.wait(10)
        gws.connect(outboxes)
        gws.publish(outboxes)
        total = sum(len(m) for m in outboxes.values())
        named = lambda: [(t, i) for t, body in got for i in body["stored"]]  # noqa: E731
        if receipts:  # (gathered for up to a second: hospital/ingest.py, RECEIPT_INTERVAL_S)
            eventually(lambda: len(named()) >= total, 15, lambda: f"{len(named())} of {total}")
        first = outboxes["gw-000"][0]
        bad = rg.Message(first.topic, b'{"msg_id": "not a reading"}', "x")
        garbled = rg.Message(first.topic, b'{"msg_id": "cut sho', "y")  # names no identifier
        # a duplicate, one the ingest refuses (named in a receipt), one it cannot name
        gws.publish({"gw-000": [first, bad, garbled]})
        eventually(lambda: w.counts["received"] == total + 3, 15, lambda: str(w.counts))
        assert w.counts["invalid"] == 2
        if not receipts:
            time.sleep(1.5)  # a window for a receipt to (wrongly) arrive in
            assert got == [] and w.counts["receipts"] == 0
            return
        eventually(lambda: len(named()) >= total + 1, 10, lambda: f"{len(named())} of {total + 1}")
        expected = [(f"{PREFIX}/{g}/receipt", m.key) for g, msgs in outboxes.items() for m in msgs]
        assert sorted(set(named())) == sorted(expected)  # each gateway its own, nothing else
        assert len(named()) == total + 1  # the duplicate confirmed again
        rejected = lambda: [(t, r) for t, body in got for r in body.get("rejected", [])]  # noqa: E731
        eventually(lambda: rejected(), 10, "no rejection")
        ((topic, refusal),) = rejected()  # the refused one, to its gateway; not the garbled one
        assert topic == f"{PREFIX}/gw-000/receipt" and refusal["msg_id"] == "not a reading"
        assert refusal["reason"].startswith("schema: tcb: "), refusal
        assert w.counts["rejections_sent"] == 1
        schema = validator("receipt")
        for _, body in got:
            schema.validate(body)
        assert w.counts["receipts"] == len(got)
    finally:
        gws.close()
        w.stop()
        w.store.close()
        watcher.disconnect()
        watcher.loop_stop()


def test_a_gateway_waiting_for_receipts_forgets_each_reading_once_the_ingest_stored_it(
    broker, tmp_path, monkeypatch
):
    """The whole path: a jaundice meter's firmware -> a gateway with `await_receipts` -> a real
    Mosquitto -> perimon-ingest. Each TcB reading and Observation the gateway published is kept
    after its PUBACK until the ingest's receipt names it; once the meter and then the gateway
    stop, nothing waits, nothing was sent twice, and what the gateway forgot is what the
    database holds."""
    # the receipt of the press the gateway's stop publishes must come within the stop's 2 s
    # drain: receipts every 0.1 s here, not every 1 s
    monkeypatch.setattr(ingest_module, "RECEIPT_INTERVAL_S", 0.1)
    db = str(tmp_path / "ingest.sqlite")
    w = _worker(broker, db, "w1", ack_alerts=False)
    w.start()
    sub = Subscriber(broker.host, broker.port)
    radio = f"127.0.0.1:{free_port()}"
    raw = gateway_config(tmp_path, mqtt={"host": broker.host, "port": broker.port,
                                         "await_receipts": True},
                         processing={"status_interval_s": 1.0}, devices=newborn())  # fmt: skip
    raw["radio"] = {"listen": radio}
    cfg = config_from_dict(raw)
    specs = [DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=12.0,
                        press_every_s=2.0)]  # fmt: skip

    async def main() -> tuple[int, int, int, dict[str, int]]:
        fleet = Fleet(specs, radio, tmp_path / "devices", radio_kind="sim", gateway=cfg)
        async with running_gateway(Gateway(cfg)) as gw:
            pub = gw.publisher
            async with running_fleet(fleet):
                await eventually_async(lambda: pub.outbox.awaiting() > 0, 30,
                                       "no reading waited for its receipt")  # fmt: skip
                await asyncio.sleep(6)  # a few presses

        # the gateway stopped: the press still being read out when the meter stopped was
        # finished, published and, within the stop's drain, confirmed like the others
        return pub.receipts, pub.outbox.confirmed, pub.outbox.rows, pub.outbox.counters

    def published() -> set[str]:
        return {_key(t, p) for t, p, _ in sub.messages
                if t.rsplit("/", 1)[-1] in ("tcb", "observation", "alert")}  # fmt: skip

    try:
        assert w.ready.wait(10)
        receipts, confirmed, left, counters = asyncio.run(main())
        # the subscriber sees what the ingest confirmed, the last of it a moment later
        eventually(lambda: len(published()) >= confirmed, 10,
                   "the subscriber is missing what the ingest stored")  # fmt: skip
    finally:
        w.stop()
        w.store.close()
        sub.close()
    assert len(published()) >= 3 and receipts >= 1
    store = Store(db)
    assert set(store.ids("readings") + store.ids("alerts")) == published()
    store.close()
    assert confirmed == len(published()) and left == 0 and counters.get("resent", 0) == 0


def test_an_unanswered_alert_acknowledgement_is_sent_again_a_bounded_number_of_times(
    broker, tmp_path
):
    """A broker may drop a command (a bridge's link down: docs/scaling.md): the ingest sends an
    acknowledgement no gateway answers again every `ack_retry_s`, ACK_TRIES times in all."""
    from hospital.ingest import ACK_TRIES

    commands: list[bytes] = []
    ready = []
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)  # answers nothing
    gw.on_message = lambda c, u, m: commands.append(bytes(m.payload))
    gw.on_subscribe = lambda *a: ready.append(True)
    gw.connect(broker.host, broker.port)
    gw.loop_start()
    gw.subscribe(f"{PREFIX}/+/device/+/cmd/#", 1)
    eventually(lambda: ready, 10, "no SUBACK")
    w = _worker(broker, str(tmp_path / "ingest.sqlite"), "w1", ack_retry_s=1.0)
    w.start()
    gws = rg.Gateways(broker.host, broker.port)
    try:
        assert w.ready.wait(10)
        alert = next(m for m in rg.outbox("gw-000", 40, observations=False)
                     if m.topic.endswith("/alert"))  # fmt: skip
        gws.connect(["gw-000"])
        gws.publish({"gw-000": [alert]})
        eventually(lambda: len(commands) == ACK_TRIES, 20, lambda: f"{len(commands)} sent")
        time.sleep(2.5)  # two more retry periods: no more
        assert len(commands) == ACK_TRIES and len(set(commands)) == 1
        assert w.counts["acks_sent"] == ACK_TRIES
    finally:
        gws.close()
        w.stop()
        w.store.close()
        gw.disconnect()
        gw.loop_stop()
