"""A region's gateways reconnecting after an outage, each flushing its outbox at once: 20,000
queued messages from 50 simulated gateways reach the broker while the two ingest workers are
stalled, so the whole burst waits in the broker's per-client queues (10,000 each, ten times
Mosquitto's default limit of 1000). With the queue settings deploy/mosquitto/mosquitto.conf
ships, and the ingest's in-flight window, none is lost: each is stored exactly once, in
PostgreSQL, and the gap report is empty (docs/scaling.md, "Queue limits")."""

from __future__ import annotations

import time

import pytest

from devtools.broker import start_broker
from hospital.store import Store
from tests.harness import postgres as _postgres
from tests.harness import region as rg
from tests.harness.wait import eventually

pytestmark = pytest.mark.system

postgres = _postgres.postgres  # the fixture, for this module

GATEWAYS = 50
PER_GATEWAY = 400  # 20,000 in all


def test_a_region_flushing_20000_queued_messages_loses_none(tmp_path, postgres):
    broker = start_broker(tmp_path / "broker", extra_conf=rg.broker_conf(tmp_path / "broker"))
    db = postgres.create_database("flood")
    workers = [rg.IngestProcess(f"hospital-{k}", broker.host, broker.port, db, "--no-ack")
               for k in (1, 2)]  # fmt: skip
    outboxes = rg.region(GATEWAYS, PER_GATEWAY)
    total = sum(len(m) for m in outboxes.values())
    gateways = rg.Gateways(broker.host, broker.port)
    store = Store(db)
    try:
        for w in workers:
            w.subscribed()
            w.pause()  # stalled: what the gateways flush can only queue in the broker
        t0 = time.monotonic()
        gateways.connect(outboxes)
        gateways.publish(outboxes)
        eventually(lambda: gateways.acked() == total, 60,
                   lambda: f"the broker acknowledged {gateways.acked()} of {total}")  # fmt: skip
        t_flushed = time.monotonic() - t0
        t0 = time.monotonic()
        for w in workers:
            w.resume()
        stored = lambda: store.count("readings") + store.count("alerts")  # noqa: E731
        eventually(lambda: stored() >= total, 120, lambda: f"stored {stored()} of {total}")
        t_drained = time.monotonic() - t0
        assert sorted(store.ids("readings") + store.ids("alerts")) == rg.keys(outboxes)
        assert store.gaps() == []
        per_worker = dict(store.query("SELECT worker, COUNT(*) FROM readings GROUP BY worker"))
        assert set(per_worker) == {"hospital-1", "hospital-2"}
        print(f"{total} messages from {GATEWAYS} gateways: in the broker after {t_flushed:.1f} s, "
              f"stored by 2 workers {t_drained:.1f} s later ({total / t_drained:.0f}/s)")  # fmt: skip
    finally:
        store.close()
        gateways.close()
        for w in workers:
            w.stop()
        broker.stop()
