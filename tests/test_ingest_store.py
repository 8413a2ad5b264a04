"""The ingest database on SQLite and on PostgreSQL alike: numbered migrations, a batch stored
once by identifier in one transaction, a value the database refuses held to its own message,
the indexes of the nurse-side queries; and, against a real broker, nothing acknowledged before
it is committed."""

from __future__ import annotations

import json

import pytest

from hospital.config import IngestConfig
from hospital.ingest import Ingest, Received
from hospital.messages import Decoded, decode, load_checks
from hospital.schema import LATEST, MIGRATIONS
from hospital.store import DatabaseError, Store, _open
from tests.harness import postgres as _postgres
from tests.harness import region as rg
from tests.harness.postgres import start_postgres
from tests.harness.wait import eventually

pytestmark = pytest.mark.system

postgres, new_database = _postgres.postgres, _postgres.new_database  # fixtures, for this module

CHECKS = load_checks()


def _decoded(messages: list[rg.Message]) -> list[Decoded]:
    out = [decode(m.topic, m.body, CHECKS) for m in messages]
    assert all(isinstance(d, Decoded) for d in out)
    return out  # type: ignore[return-value]


def test_migrations_number_the_schema_and_adopt_a_database_made_before_them(new_database):
    url = new_database()
    store = Store(url)
    assert store.version() == LATEST == 2
    rows = store.query("SELECT version, description FROM schema_version ORDER BY version")
    assert rows == [(m.version, m.description) for m in MIGRATIONS]
    store.close()
    assert Store(url).version() == LATEST  # opening again applies nothing twice

    # A database perimon-ingest made before the migrations: the tables, a row, no version.
    old = new_database()
    engine = _open(old)  # the connection alone, without the migrations
    with engine.transaction():
        for sql in MIGRATIONS[0].statements:
            engine.execute(sql)
        engine.insert_ignore("sequences", ("gateway_id", "device_id", "kind", "boot", "seq",
                                           "count"), [("gw", "fh-01", "alert", -1, 1, 1)])  # fmt: skip
    engine.close()
    adopted = Store(old)
    assert adopted.version() == LATEST and adopted.count("sequences") == 1
    adopted.close()


def test_a_database_newer_than_the_code_is_refused(new_database):
    url = new_database()
    store = Store(url)
    mark = "?" if store.dialect == "sqlite" else "%s"
    with store.engine.transaction():
        store.engine.execute(f"INSERT INTO schema_version VALUES ({mark}, {mark}, {mark})",
                             (LATEST + 1, "from the future", "2030-01-01T00:00:00Z"))  # fmt: skip
    store.close()
    with pytest.raises(DatabaseError, match=f"schema is version {LATEST + 1}, newer than"):
        Store(url)


def test_a_batch_is_stored_once_by_identifier_with_its_sequence_numbers(new_database):
    store = Store(new_database(), worker="w1")
    messages = rg.outbox("gw-001", 40)
    batch = _decoded(messages)
    first = store.write(batch[:25] + batch[:5])  # the first five twice in one batch
    assert first == {m.key for m in messages[:25]}
    second = store.write(batch[20:])  # five of them again, across batches
    assert second == {m.key for m in messages[25:]}
    assert sorted(store.ids("readings") + store.ids("alerts")) == sorted(m.key for m in messages)
    assert store.count("sequences") == len(messages) and store.gaps() == []
    assert {w for (w,) in store.query("SELECT DISTINCT worker FROM readings")} == {"w1"}
    store.close()


def test_a_value_the_database_refuses_is_held_to_its_own_message(new_database):
    """PostgreSQL refuses a NUL character in text (SQLite takes it): that alert alone is not
    stored; the rest of its batch is, and the worker goes on."""
    url = new_database()
    w = Ingest(IngestConfig(port=1, db=url, worker="w1", ack_alerts=False))
    messages = rg.outbox("gw-001", 70)  # an alert every tenth reading of a device
    alert = next(m for m in messages if m.topic.endswith("/alert"))
    poisoned = json.loads(alert.body) | {"detail": "bad\u0000byte"}
    batch = [Received(m.topic, m.body, i + 1, 0, 0) for i, m in enumerate(messages)
             if m is not alert] + [Received(alert.topic, json.dumps(poisoned).encode(), 99, 0, 0)]  # fmt: skip
    w.process(batch)
    refused = 1 if w.store.dialect == "postgresql" else 0
    assert w.counts["stored"] == len(messages) - refused
    assert w.counts["invalid"] == refused
    w.process([Received(m.topic, m.body, 1, 0, 0) for m in rg.outbox("gw-002", 5)])
    assert w.counts["stored"] == len(messages) - refused + 5
    w.store.close()


def test_the_nurse_side_queries_have_their_indexes(new_database):
    store = Store(new_database())
    if store.dialect == "sqlite":
        plan = store.query("EXPLAIN QUERY PLAN SELECT payload FROM readings "
                           "WHERE device_id = ? AND t BETWEEN ? AND ?", ("tcb-01", "a", "b"))  # fmt: skip
        assert "readings_by_device_t" in str(plan)
        names = {n for (n,) in store.query("SELECT name FROM sqlite_master WHERE type='index'")}
    else:
        names = {n for (n,) in store.query("SELECT indexname FROM pg_indexes")}
    assert {"readings_by_device_t", "alerts_by_device_t"} <= names
    store.close()


def test_nothing_is_acknowledged_before_it_is_committed(broker, tmp_path):
    """A worker that has received messages but cannot commit them (its PostgreSQL is down) is
    killed: the broker still holds them, and the worker's next run stores every one. Had it
    acknowledged them on receipt, as paho does by default, they would be gone."""
    pg = start_postgres(durable=True)  # a server of its own, stopped and started by this test
    try:
        db = pg.create_database("acks")
        Store(db).close()
        worker = rg.IngestProcess("acks-1", broker.host, broker.port, db, "--no-ack")
        worker.subscribed()
        pg.kill()
        outboxes = rg.region(5, 100)
        gateways = rg.Gateways(broker.host, broker.port)
        gateways.connect(outboxes)
        gateways.publish(outboxes)
        eventually(lambda: gateways.acked() == 500, 20, "the broker did not take them")
        gateways.close()
        eventually(lambda: any("database unavailable" in line for line in worker.log), 20,
                   lambda: "the worker did not try to store: " + "".join(worker.log[-3:]))  # fmt: skip
        worker.proc.kill()  # kill -9 with the batch uncommitted
        worker.proc.wait()
        pg.start()
        again = rg.IngestProcess("acks-1", broker.host, broker.port, db, "--no-ack")
        store = Store(db)
        try:
            stored = lambda: store.count("readings") + store.count("alerts")  # noqa: E731
            eventually(lambda: stored() == 500, 30, lambda: f"stored {stored()} of 500")
            assert sorted(store.ids("readings") + store.ids("alerts")) == rg.keys(outboxes)
            assert store.gaps() == []
        finally:
            store.close()
            again.stop()
    finally:
        pg.stop()
