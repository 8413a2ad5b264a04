"""The ingest database: SQLite (a file) or PostgreSQL (a `postgresql://` URL, with psycopg 3).

`Store.write` stores a whole batch of decoded messages in one transaction and says which were
new: a row whose identifier is already there (a QoS 1 redelivery, a message resent from a
gateway's outbox, one that two workers both received across a reconnection) is not stored again.
The caller acknowledges the batch's MQTT messages only after `write` returns, so a message is
never acknowledged before it is on disk (hospital/ingest.py).

The tables are hospital/schema.py's migrations, applied when the store opens.
"""

from __future__ import annotations

import importlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hospital.messages import NO_BOOT, Alert, Decoded
from hospital.schema import LATEST, MIGRATIONS, SCHEMA_VERSION_TABLE

# The numbers missing between those received: a row whose seq lies past the end of every row
# before it in its series (seq + count, the next number expected).
_GAPS = """SELECT gateway_id, device_id, kind, boot, expected, seq - 1 FROM (
    SELECT gateway_id, device_id, kind, boot, seq,
           MAX(seq + count) OVER (PARTITION BY gateway_id, device_id, kind, boot ORDER BY seq
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS expected
    FROM sequences) AS s
WHERE seq > expected ORDER BY gateway_id, device_id, kind, boot, expected"""

_READING_COLS = ("msg_id", "kind", "gateway_id", "device_id", "code", "t", "payload",
                 "received_at", "worker")  # fmt: skip
_ALERT_COLS = ("msg_id", "gateway_id", "device_id", "alert", "state", "severity", "detail", "t",
               "raised_at", "payload", "received_at", "worker")  # fmt: skip
_SEQUENCE_COLS = ("gateway_id", "device_id", "kind", "boot", "seq", "count")
# PostgreSQL: the array type of each column, for one INSERT ... SELECT FROM unnest(...) a table
_PG_TYPES = {"received_at": "float8", "boot": "int8", "seq": "int8", "count": "int4"}
_MIGRATION_LOCK = 0x70657269  # PostgreSQL advisory lock held while migrating ("peri")


class DatabaseError(Exception):
    """The database cannot be opened or used as it is (one line, for the user)."""


class TransientError(Exception):
    """The database could not be reached or the transaction did not commit: try again."""


@dataclass(frozen=True)
class Gap:
    """Numbers `first`..`last` of a series were never received: messages lost on the way."""

    gateway_id: str
    device_id: str
    kind: str  # a topic kind, or `{code}-obs` for FHIR Observations (docs/mqtt.md)
    boot: int  # NO_BOOT for the kinds the gateway numbers across boots
    first: int
    last: int

    @property
    def missing(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        boot = "" if self.boot == NO_BOOT else f" boot {self.boot}"
        nums = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{self.gateway_id}/{self.device_id} {self.kind}{boot}: seq {nums} missing"


@dataclass(frozen=True, slots=True)
class AckStatus:
    """The gateway's answer to an `ack_alert` command: `status` for the alert `alert_id`."""

    alert_id: str
    status: str


class _Engine(Protocol):
    """One database engine's connection and its way of writing rows in bulk."""

    name: str

    def transaction(self, migrating: bool = False) -> Any: ...
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def insert_new(self, table: str, cols: Sequence[str],
                   rows: Sequence[tuple[Any, ...]]) -> set[str]: ...  # fmt: skip
    def insert_ignore(self, table: str, cols: Sequence[str],
                      rows: Sequence[tuple[Any, ...]]) -> None: ...  # fmt: skip
    def set_acks(self, acks: Sequence[AckStatus]) -> None: ...
    def close(self) -> None: ...


class Store:
    """Readings, alerts and sequence numbers, each row stored once by its identifier."""

    def __init__(self, url: str, worker: str = "") -> None:
        """`url`: a SQLite file (or `sqlite:///path`), or `postgresql://...`. `worker`: the name
        written beside each row this store writes."""
        self.url, self.worker = url, worker
        self.lock = threading.Lock()
        self.engine: _Engine = _open(url)
        with self.lock:
            self._migrate()

    @property
    def dialect(self) -> str:
        return self.engine.name

    def _migrate(self) -> None:
        with self.engine.transaction(migrating=True):
            self.engine.execute(SCHEMA_VERSION_TABLE)
            ((have,),) = self.engine.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            if have > LATEST:
                raise DatabaseError(f"{safe_url(self.url)}: its schema is version {have}, newer than "
                                    f"this perimon-ingest knows ({LATEST}): upgrade perimon")  # fmt: skip
            for m in MIGRATIONS:
                if m.version <= have:
                    continue
                for sql in m.statements:
                    self.engine.execute(sql)
                self.engine.execute(
                    "INSERT INTO schema_version (version, description, applied_at)"
                    f" VALUES ({self._marks(3)})",
                    (m.version, m.description, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
                )

    def _marks(self, n: int) -> str:
        return ", ".join(["?" if self.engine.name == "sqlite" else "%s"] * n)

    def version(self) -> int:
        with self.lock:
            return int(self.engine.execute("SELECT MAX(version) FROM schema_version")[0][0])

    def write(self, batch: Iterable[Decoded], acks: Sequence[AckStatus] = ()) -> set[str]:
        """Store the batch and the gateways' answers to acknowledgements, in one transaction;
        the identifiers of the rows that were not there before. Within the batch an identifier
        counts once (the first row with it). Raises TransientError if it did not commit (the
        connection is reopened for the next try), DatabaseError for what trying again will
        not fix (such as a value the database refuses)."""
        now = time.time()
        readings: dict[str, tuple[Any, ...]] = {}
        alerts: dict[str, tuple[Any, ...]] = {}
        numbers: list[tuple[Any, ...]] = []
        for d in batch:
            table = alerts if isinstance(d.row, Alert) else readings
            if d.msg_id not in readings and d.msg_id not in alerts:
                table[d.msg_id] = (*d.row, now, self.worker)
            if d.sequence is not None:
                numbers.append(d.sequence)
        with self.lock:
            try:
                with self.engine.transaction():
                    new = self.engine.insert_new("readings", _READING_COLS, list(readings.values()))
                    new |= self.engine.insert_new("alerts", _ALERT_COLS, list(alerts.values()))
                    # the same transaction: a number is noted if and only if its message is stored
                    self.engine.insert_ignore("sequences", _SEQUENCE_COLS, numbers)
                    if acks:
                        self.engine.set_acks(acks)
                return new
            except (DatabaseError, TransientError):
                raise
            except Exception as exc:  # the driver's own errors, sorted into the two above
                raise self._sorted(exc) from exc

    def _sorted(self, exc: Exception) -> Exception:
        """TransientError (the engine reopened) for a lost connection or a busy database,
        DatabaseError for the rest."""
        if _is_transient(exc):
            try:
                self.engine.close()
            except Exception:  # closing a broken connection: it is being replaced anyway
                pass
            try:
                self.engine = _open(self.url)
            except DatabaseError:
                pass  # still unreachable: the next write tries again
            return TransientError(f"{type(exc).__name__}: {_one_line(exc)}")
        return DatabaseError(f"{type(exc).__name__}: {_one_line(exc)}")

    def add_sequence(self, gateway_id: str, device_id: str, kind: str, boot: int, seq: int,
                     count: int) -> None:  # fmt: skip
        """Note a number as received (a redelivery or a republication adds nothing)."""
        with self.lock, self.engine.transaction():
            self.engine.insert_ignore("sequences", _SEQUENCE_COLS,
                                      [(gateway_id, device_id, kind, boot, seq, count)])  # fmt: skip

    def gaps(self) -> list[Gap]:
        """Every run of numbers missing between two received ones, in every series."""
        with self.lock:
            rows = self.engine.execute(_GAPS)
        return [Gap(*row) for row in rows]

    def count(self, table: str) -> int:
        if table not in ("readings", "alerts", "sequences", "schema_version"):
            raise ValueError(f"no table {table!r}")
        with self.lock:
            return int(self.engine.execute(f"SELECT COUNT(*) FROM {table}")[0][0])

    def ids(self, table: str) -> list[str]:
        """Every stored identifier of `table` (readings or alerts), sorted."""
        if table not in ("readings", "alerts"):
            raise ValueError(f"no table {table!r}")
        with self.lock:
            return [r[0] for r in self.engine.execute(f"SELECT msg_id FROM {table} ORDER BY 1")]

    def unanswered_alerts(self, after: float, before: float,
                          limit: int = 1000) -> list[tuple[str, str, str]]:  # fmt: skip
        """Raised alerts this store's worker stored between `after` and `before` (time.time())
        whose acknowledgement no gateway has answered yet: (msg_id, gateway_id, device_id)."""
        with self.lock:
            rows = self.engine.execute(
                "SELECT msg_id, gateway_id, device_id FROM alerts WHERE state = 'raised'"
                f" AND ack_status IS NULL AND worker = {self._marks(1)}"
                f" AND received_at >= {self._marks(1)} AND received_at < {self._marks(1)}"
                f" ORDER BY received_at LIMIT {int(limit)}",
                (self.worker, after, before),
            )
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query (placeholders in the engine's style: `?` or `%s`)."""
        with self.lock:
            return self.engine.execute(sql, params)

    def close(self) -> None:
        with self.lock:
            self.engine.close()


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = url.split("://", 1)
        cred, host = rest.split("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}@{host}"
    return url


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    try:
        psycopg = importlib.import_module("psycopg")
    except ImportError:
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.errors.SerializationFailure)


def _open(url: str) -> _Engine:
    if url.startswith(("postgresql://", "postgres://")):
        return _Postgres(url)
    if url.startswith(("sqlite:///", "/", ".")) or "://" not in url:
        return _Sqlite(url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url)
    raise DatabaseError(f"{safe_url(url)}: not a SQLite file or a postgresql:// URL")


class _Sqlite:
    name = "sqlite"

    def __init__(self, path: str) -> None:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # autocommit: transactions are the explicit BEGIN IMMEDIATE ... COMMIT below
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout=10000")
            self.conn.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseError(f"{path}: {exc}") from None

    def transaction(self, migrating: bool = False) -> _SqliteTransaction:
        return _SqliteTransaction(self.conn)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def insert_new(self, table: str, cols: Sequence[str],
                   rows: Sequence[tuple[Any, ...]]) -> set[str]:  # fmt: skip
        sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
               " ON CONFLICT (msg_id) DO NOTHING")  # fmt: skip
        new = set()
        for row in rows:  # one statement a row: rowcount says whether it was new
            if self.conn.execute(sql, row).rowcount == 1:
                new.add(row[0])
        return new

    def insert_ignore(self, table: str, cols: Sequence[str],
                      rows: Sequence[tuple[Any, ...]]) -> None:  # fmt: skip
        self.conn.executemany(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            " ON CONFLICT DO NOTHING", rows)  # fmt: skip

    def set_acks(self, acks: Sequence[AckStatus]) -> None:
        self.conn.executemany("UPDATE alerts SET ack_status = ? WHERE msg_id = ?",
                              [(a.status, a.alert_id + ":raised") for a in acks])  # fmt: skip

    def close(self) -> None:
        self.conn.close()


class _SqliteTransaction:
    """BEGIN IMMEDIATE (the write lock at once, so two workers never deadlock upgrading a read
    lock) ... COMMIT, or ROLLBACK on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class _Postgres:
    name = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            self.psycopg = importlib.import_module("psycopg")
        except ImportError:
            raise DatabaseError(
                "PostgreSQL needs the psycopg driver (pip install perimon[hospital])"
            ) from None
        try:
            self.conn = self.psycopg.connect(url, autocommit=True, connect_timeout=10)
        except self.psycopg.Error as exc:
            raise DatabaseError(f"{safe_url(url)}: {_one_line(exc)}") from None

    def transaction(self, migrating: bool = False) -> Any:
        return _PostgresTransaction(self.conn, migrating)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(sql, tuple(params))
        return list(cur.fetchall()) if cur.description is not None else []

    def _unnest(self, table: str, cols: Sequence[str]) -> str:
        arrays = ", ".join(f"%b::{_PG_TYPES.get(c, 'text')}[]" for c in cols)
        return f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM unnest({arrays})"

    def insert_new(self, table: str, cols: Sequence[str],
                   rows: Sequence[tuple[Any, ...]]) -> set[str]:  # fmt: skip
        """One statement for the whole batch: each column as an array, unnested."""
        if not rows:
            return set()
        sql = self._unnest(table, cols) + " ON CONFLICT (msg_id) DO NOTHING RETURNING msg_id"
        cur = self.conn.execute(sql, [list(col) for col in zip(*rows, strict=True)])
        return {r[0] for r in cur.fetchall()}

    def insert_ignore(self, table: str, cols: Sequence[str],
                      rows: Sequence[tuple[Any, ...]]) -> None:  # fmt: skip
        if rows:
            self.conn.execute(self._unnest(table, cols) + " ON CONFLICT DO NOTHING",
                              [list(col) for col in zip(*rows, strict=True)])  # fmt: skip

    def set_acks(self, acks: Sequence[AckStatus]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany("UPDATE alerts SET ack_status = %s WHERE msg_id = %s",
                            [(a.status, a.alert_id + ":raised") for a in acks])  # fmt: skip

    def close(self) -> None:
        self.conn.close()


class _PostgresTransaction:
    """psycopg's transaction block; while migrating, also a lock that other workers opening the
    same database wait for (released with the transaction)."""

    def __init__(self, conn: Any, migrating: bool) -> None:
        self.block = conn.transaction()
        self.conn, self.migrating = conn, migrating

    def __enter__(self) -> None:
        self.block.__enter__()
        if self.migrating:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def __exit__(self, *exc: Any) -> None:
        self.block.__exit__(*exc)
