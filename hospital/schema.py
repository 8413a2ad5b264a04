"""The ingest database's tables, as numbered migrations, for SQLite and PostgreSQL alike.

This is the one place the database's layout is written. Each migration is applied once, in its
own transaction, and recorded in `schema_version` (one row a migration); a worker that opens the
database applies whatever is missing, so upgrading `perimon-ingest` upgrades the database it
opens. Two workers opening one database at once take turns (`Store` holds the database's write
lock, or a PostgreSQL advisory lock, while it migrates). A database whose version is newer than
this code is refused rather than written to.

The SQL is written once for both engines: every type used here (TEXT, BIGINT, INTEGER, DOUBLE
PRECISION) and `CREATE ... IF NOT EXISTS` mean the same in SQLite and PostgreSQL; what differs
between the engines is how rows are written in bulk, and that is in hospital/store.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# Stored once by its identifier (the message's `msg_id`, or an Observation's identifier): the
# primary key is what makes a redelivery or a resent message a no-op.
_READINGS = """CREATE TABLE IF NOT EXISTS readings (
    msg_id TEXT PRIMARY KEY, kind TEXT NOT NULL, gateway_id TEXT NOT NULL,
    device_id TEXT NOT NULL, code TEXT, t TEXT, payload TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL, worker TEXT NOT NULL)"""
_ALERTS = """CREATE TABLE IF NOT EXISTS alerts (
    msg_id TEXT PRIMARY KEY, gateway_id TEXT NOT NULL, device_id TEXT NOT NULL,
    alert TEXT NOT NULL, state TEXT NOT NULL, severity TEXT NOT NULL, detail TEXT,
    t TEXT, raised_at TEXT, payload TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,
    worker TEXT NOT NULL, ack_status TEXT)"""
# Every sequence number received (docs/mqtt.md, "Sequence numbers"), for the gap report.
_SEQUENCES = """CREATE TABLE IF NOT EXISTS sequences (
    gateway_id TEXT NOT NULL, device_id TEXT NOT NULL, kind TEXT NOT NULL,
    boot BIGINT NOT NULL, seq BIGINT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (gateway_id, device_id, kind, boot, seq))"""

MIGRATIONS: Final = (  # fmt: skip
    # The tables as perimon-ingest created them before migrations were numbered (CREATE TABLE IF
    # NOT EXISTS: such a database is adopted as version 1, its rows untouched).
    Migration(1, "readings, alerts and sequence numbers", (_READINGS, _ALERTS, _SEQUENCES)),
    # What the nurse-side screens ask: one device's readings or alerts over a span of time
    # (`t` is the wire's UTC ISO 8601 text, which sorts as time does).
    Migration(
        2,
        "indexes by device and time",
        (
            "CREATE INDEX IF NOT EXISTS readings_by_device_t ON readings (device_id, t)",
            "CREATE INDEX IF NOT EXISTS alerts_by_device_t ON alerts (device_id, t)",
        ),
    ),
)
LATEST: Final = MIGRATIONS[-1].version

SCHEMA_VERSION_TABLE: Final = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"""
