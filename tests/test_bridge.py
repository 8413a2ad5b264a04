"""Gateways -> a site Mosquitto -> a regional Mosquitto -> ingest workers on PostgreSQL, with
the bridge configured as deploy/mosquitto/bridge.conf ships it and both brokers keeping what
deploy/mosquitto/mosquitto.conf keeps.

While gateways publish, the link between the brokers is cut, and while it is down the regional
broker is killed (kill -9) and restarted: every message is stored exactly once, with no
sequence gap, and the hospital's acknowledgement of each alert crosses the bridge down and the
gateway's answer up, with their MQTT 5 properties intact (an acknowledgement published while
the link is down is dropped by the regional broker: the ingest sends it again).

A regional Mosquitto killed while messages wait in it for a stalled ingest loses what it
acknowledged since its last save (about 2 s, docs/reliability.md). In the second test the
gateways' own publishers wait for the ingest's receipts (docs/mqtt.md, "Receipts") and send
again what is not confirmed: every message is stored exactly once all the same."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devtools.broker import Broker, start_broker
from hospital.config import IngestConfig
from hospital.ingest import Ingest
from hospital.messages import Decoded, decode, load_checks
from hospital.store import Store
from tests.harness import postgres as _postgres
from tests.harness import region as rg
from tests.harness.mqtt import saves_after
from tests.harness.wait import eventually

pytestmark = pytest.mark.system

postgres = _postgres.postgres  # the fixture, for this module


class GatewayAnswers:
    """On the site broker, what a gateway's downlink does with an `ack_alert`: answer on the
    Response Topic with the Correlation Data (gateway/publish/downlink.py)."""

    def __init__(self, site: Broker) -> None:
        self.commands: list[tuple[str, dict, str | None]] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.c.on_message = self._on_message
        self.c.connect(site.host, site.port)
        self.c.subscribe("perimon/v1/+/device/+/cmd/#", 1)
        self.c.loop_start()

    def _on_message(self, client, userdata, m) -> None:
        body = json.loads(m.payload)
        topic = getattr(m.properties, "ResponseTopic", None)
        self.commands.append((m.topic, body, topic))
        if topic:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = m.properties.CorrelationData
            reply = {"device_id": m.topic.split("/")[4], "command": body["command"],
                     "status": "ok", "t": "2026-11-23T10:00:01.000Z"}  # fmt: skip
            client.publish(topic, json.dumps(reply), 1, properties=props)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@dataclass
class Region:
    """The brokers, the link between them and the ingest workers of one test."""

    regional: Broker
    regional_dir: Path
    link: rg.Link
    site: Broker
    workers: list[Ingest]
    db: str
    store: Store
    gateways: rg.Gateways | rg.OutboxGateways

    def kill_regional(self) -> None:
        """kill -9 the regional broker and start it again, same port, same database."""
        self.regional.kill()
        self.regional = start_broker(self.regional_dir, self.regional.port,
                                     rg.broker_conf(self.regional_dir))  # fmt: skip

    def stored(self) -> set[str]:
        return set(self.store.ids("readings") + self.store.ids("alerts"))

    def publish(self, outboxes: dict[str, list[rg.Message]], rounds: int,
                between_s: float = 0.1) -> threading.Event:  # fmt: skip
        """Each gateway publishes its outbox in `rounds` parts, `between_s` apart, in the
        background; the event is set once all is handed to paho."""
        done = threading.Event()

        def run() -> None:
            for r in range(rounds):
                self.gateways.publish({g: m[r::rounds] for g, m in outboxes.items()})
                time.sleep(between_s)  # the gateways' pace: the run lasts rounds x between_s
            done.set()

        threading.Thread(target=run, daemon=True).start()
        return done


@contextlib.contextmanager
def bridged(tmp_path: Path, postgres, workers: int) -> Iterator[Region]:
    regional_dir = tmp_path / "regional"
    regional_dir.mkdir()
    regional = start_broker(regional_dir, extra_conf=rg.broker_conf(regional_dir))
    link = rg.Link((regional.host, regional.port))
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    site = start_broker(site_dir, extra_conf=rg.broker_conf(site_dir) + rg.bridge_conf(link.port))
    db = postgres.create_database(tmp_path.name.replace("-", "_").lower())
    # ack_retry_s: an acknowledgement published while the link is down is dropped by the
    # regional Mosquitto (2.0 keeps no session for an MQTT 5 bridge across a drop) and sent again
    ingests = [Ingest(IngestConfig(host=regional.host, port=regional.port, db=db,
                                   worker=f"regional-{i}", session_expiry_h=1.0, ack_retry_s=2.0))
               for i in range(1, workers + 1)]  # fmt: skip
    r = Region(regional, regional_dir, link, site, ingests, db, Store(db),
               rg.Gateways(site.host, site.port))  # fmt: skip
    try:
        for w in ingests:
            w.client.reconnect_delay_set(0.2, 1)  # back within a second of the broker
            w.start()
        assert all(w.ready.wait(10) for w in ingests)
        eventually(lambda: link.connections() == 1, 10, "the bridge did not connect")
        yield r
    finally:
        r.gateways.close()
        for w in ingests:
            w.stop(drain_s=2)
            w.store.close()
        r.store.close()
        site.stop()
        link.close()
        r.regional.stop()


def quiet(value, quiet_s: float, timeout_s: float, what: str) -> None:
    """Wait until `value()` has not changed for `quiet_s`."""
    seen = [value(), time.monotonic()]

    def settled() -> bool:
        now = value()
        if now != seen[0]:
            seen[:] = [now, time.monotonic()]
        return time.monotonic() - seen[1] >= quiet_s

    eventually(settled, timeout_s, what)


def test_every_message_once_through_a_cut_link_and_a_killed_regional_broker(tmp_path, postgres):
    outboxes = rg.region(20, 150)  # 3000 messages from 20 gateways, 80 raised alerts among them
    total = sum(len(m) for m in outboxes.values())
    raised = sum(m.topic.endswith("/alert") for msgs in outboxes.values() for m in msgs)
    with bridged(tmp_path, postgres, workers=2) as r:
        answers = GatewayAnswers(r.site)
        try:
            r.gateways.connect(outboxes)
            sent = r.publish(outboxes, rounds=30)  # about 4 s of publishing
            time.sleep(0.8)  # the run under way
            r.link.cut()  # the WAN link goes down; the site broker queues what arrives
            # The regional broker, with the link down: once the ingest has taken all it had,
            # and the broker has saved since, it is killed and started again.
            quiet(lambda: len(r.stored()), 1.0, 20, "the ingest did not settle")
            saves_after(r.regional_dir / "mosquitto.db", 2, 10)
            r.kill_regional()
            r.link.restore()
            eventually(lambda: r.link.connections() == 1, 10, "the bridge did not reconnect")
            assert sent.wait(30)
            eventually(lambda: r.gateways.acked() == total, 30, "the site did not take it all")
            eventually(lambda: len(r.stored()) >= total, 60,
                       lambda: f"stored {len(r.stored())} of {total}")  # fmt: skip
            assert sorted(r.store.ids("readings") + r.store.ids("alerts")) == rg.keys(outboxes)
            assert r.store.gaps() == []
            # Every raised alert was acknowledged down the bridge, and the answers came back up
            # (some twice: those sent again while the answer to the first was on its way).
            answered = lambda: r.store.query(  # noqa: E731
                "SELECT COUNT(*) FROM alerts WHERE ack_status = 'ok'")[0][0]  # fmt: skip
            eventually(lambda: answered() == raised, 30, lambda: f"{answered()} of {raised}")
            assert all(topic and "/reply/regional-" in topic for _, _, topic in answers.commands)
            assert len({json.dumps(body) for _, body, _ in answers.commands}) == raised
            statuses = {s for (s,) in r.store.query("SELECT ack_status FROM alerts")}
            assert statuses == {"ok"}
        finally:
            answers.close()


@pytest.mark.parametrize("receipts", [True, False], ids=["receipts", "no_receipts"])
def test_a_regional_broker_killed_with_a_backlog(tmp_path, postgres, receipts):
    """Mosquitto acknowledges a QoS 1 message before it saves it: killed with a backlog for a
    stalled ingest, the regional broker loses what it acknowledged since its last save (0 to
    883 of these 2,000 in seven runs, docs/scaling.md).

    With receipts, the gateways' publishers keep each message until the ingest's receipt says
    it is stored and send again what is not confirmed: every message is stored, once. Without
    (a hospital that sends none, or a gateway not configured to wait for them), each message
    goes at its PUBACK, as before: what the broker lost is lost, and the ingest's gap report
    names each one."""
    outboxes = rg.region(10, 200, observations=False)  # readings and alerts only: dense series
    total = sum(len(m) for m in outboxes.values())
    with bridged(tmp_path, postgres, workers=0) as r:
        # The ingest as its own process, so that it can be stalled; named, with a session the
        # regional broker has saved, as a broker that has run for a while has.
        worker = rg.IngestProcess("regional-1", r.regional.host, r.regional.port, r.db, "--no-ack",
                               "--session-expiry-h", "1")  # fmt: skip
        gws_dir = tmp_path / "gateways"
        gws_dir.mkdir()
        gateways = rg.OutboxGateways(r.site.host, r.site.port, gws_dir, outboxes,
                                     await_receipts=receipts, receipt_timeout_s=2.0)  # fmt: skip
        r.gateways = gateways  # publishes and closes as rg.Gateways does
        try:
            worker.subscribed()
            eventually(lambda: all(p.subscribed.is_set() or not receipts
                                   for p in gateways.publishers.values()),
                       10, "the gateways did not subscribe to their receipts")  # fmt: skip
            saves_after(r.regional_dir / "mosquitto.db", 2, 10)
            sent = r.publish(outboxes, rounds=30)  # 3 s: the kill at 1.5 s falls well inside it
            time.sleep(0.5)
            worker.pause()  # the ingest falls behind: a backlog builds in the regional broker
            time.sleep(1.0)
            r.kill_regional()  # kill -9 with its backlog, while messages flow through it
            worker.resume()
            assert sent.wait(30)
            # with receipts: each confirmed, so each in the database; without: each acknowledged
            eventually(lambda: gateways.queued() == 0, 120,
                       lambda: f"{gateways.queued()} of {total} still in the outboxes: "
                               + "".join(worker.log[-3:]))  # fmt: skip
            # Each gateway's last message comes after all the others, through one bridge and one
            # queue: once they are stored, what came before is stored or lost for good.
            last = {m[-1].key for m in outboxes.values()}
            eventually(lambda: last <= r.stored(), 60,
                       lambda: "the last messages were not stored: " + "".join(worker.log[-5:]))  # fmt: skip
        finally:
            worker.stop()
        stored = r.stored()
        assert stored <= set(rg.keys(outboxes))  # nothing invented, each stored once (primary key)
        if receipts:
            assert sorted(r.store.ids("readings") + r.store.ids("alerts")) == rg.keys(outboxes)
            assert r.store.gaps() == []
            print(f"regional broker killed with a backlog, receipts: 0 of {total} lost; "
                  f"{gateways.resent()} sent again by the gateways for want of a receipt")  # fmt: skip
            return
        assert gateways.resent() == 0  # without receipts nothing is sent twice by the outbox
        checks = load_checks()
        lost = [d for msgs in outboxes.values() for m in msgs if m.key not in stored
                for d in [decode(m.topic, m.body, checks)] if isinstance(d, Decoded)]  # fmt: skip
        gaps = r.store.gaps()
        received: dict[tuple, list[int]] = {}
        for g, dev, kind, boot, seq in r.store.query(
                "SELECT gateway_id, device_id, kind, boot, seq FROM sequences"):  # fmt: skip
            received.setdefault((g, dev, kind, boot), []).append(seq)
        unseen = 0
        for d in lost:
            n = d.sequence
            assert n is not None
            series = (n.gateway_id, n.device_id, n.kind, n.boot)
            seqs = received.get(series, [])
            if not seqs or not min(seqs) < n.seq < max(seqs):
                unseen += 1  # before or after all its series delivered: no gap can show it
                continue
            assert any((g.gateway_id, g.device_id, g.kind, g.boot) == series
                       and g.first <= n.seq <= g.last for g in gaps), d.msg_id  # fmt: skip
        print(f"regional broker killed with a backlog, no receipts: {len(lost)} of {total} lost, "
              f"{sum(g.missing for g in gaps)} named in {len(gaps)} gaps, {unseen} at the edge "
              "of their series")  # fmt: skip
