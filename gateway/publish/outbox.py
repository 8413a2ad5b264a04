"""The gateway's persistent outbox: every message to the hospital is on disk before it is sent.

A reading or alert is written to SQLite (WAL, synchronous=NORMAL) in the same call that accepts
it, and the row is deleted only when the broker has acknowledged it (MQTT PUBACK), or, for a
hospital that sends receipts (docs/mqtt.md, "Receipts"), only when a receipt says the hospital
has stored it: until then the row is kept as delivered (`acked`) and sent again when it falls
due (`resend_at`), later each time. After a crash,
a power cut or a restart the gateway sends whatever is still here. With every row the outbox
keeps, in the same transaction, the per-device high-water marks: the last live-trace point and
the last jaundice record that are safely in the outbox, so a restarted gateway asks the device
to resend from exactly there (docs/reliability.md).

Bounded by size and age. When full, the policy drops in this order, counting every drop:
1. the oldest live-trace messages (`fhr`, `mhr`: 4 Hz points, priority 0);
2. the oldest superseded status messages (retained device status, priority 1);
3. only then the oldest clinical readings and alerts (priority 2), each logged as an error.
Age: a message older than `max_age_h` is dropped the same way (counted, readings logged).
A retained status message replaces the unsent one on the same topic (the newest state wins).

Rejected messages: a receipt may say the hospital refused a delivered message as not of the
contract (docs/mqtt.md, "Receipts"). Sending it again would be refused again, so its row goes,
and a copy, with the hospital's reason, is kept in the `rejected` table for the engineer (the
newest REJECTED_KEEP; the count of all is kept with the other counters).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.times import iso_time

log = logging.getLogger(__name__)

PRIO_TRACE = 0  # live 4 Hz trace: the first to go when the outbox is full
PRIO_STATUS = 1  # retained status: superseded by the next one anyway
PRIO_READING = 2  # clinical readings and alerts: dropped only as a last resort, never silently

TRACE_KINDS = frozenset({"fhr", "mhr"})
MARK_KINDS = frozenset({"fhr", "mhr", "tcb"})
PRIORITY_NAMES = {PRIO_TRACE: "trace", PRIO_STATUS: "status", PRIO_READING: "readings"}
_ROW_OVERHEAD = 64  # bytes per row counted beyond topic and payload (ids, times, flags)
# Copies of rejected messages kept for a person to read (the newest; older ones are forgotten,
# counted): bounded, so a gateway whose every message the hospital refuses cannot fill its disk.
REJECTED_KEEP = 200
# Keys bound in one `IN (...)` list: well below SQLite's limit on a statement's variables.
_IN_CHUNK = 500

_Key = TypeVar("_Key", int, str)


def _in_chunks(keys: Sequence[_Key]) -> Iterator[tuple[Sequence[_Key], str]]:
    """`keys` in slices of at most _IN_CHUNK, each with its `?,?,...` placeholders: one
    statement per slice, however many keys a caller passes."""
    for i in range(0, len(keys), _IN_CHUNK):
        chunk = keys[i : i + _IN_CHUNK]
        yield chunk, ",".join("?" * len(chunk))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS msg (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    created REAL NOT NULL,
    acked REAL,
    resends INTEGER NOT NULL DEFAULT 0,
    resend_at REAL
);
CREATE INDEX IF NOT EXISTS msg_priority ON msg (priority, id);
CREATE TABLE IF NOT EXISTS mark (
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    boot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (device, kind)
);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS recent_trace (
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    boot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (device, kind, seq)
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    rejected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sequence (
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (device, kind)
);
"""

# Columns added after the first release: an older outbox file gets them when it is opened.
_ADDED_COLUMNS = (("acked", "REAL"), ("resends", "INTEGER NOT NULL DEFAULT 0"),
                  ("resend_at", "REAL"))  # fmt: skip
# Rows waiting for a receipt: found by msg_id (a receipt) and by when they fall due (a resend).
_RECEIPT_INDEXES = """
CREATE INDEX IF NOT EXISTS msg_awaiting ON msg (msg_id) WHERE acked IS NOT NULL;
CREATE INDEX IF NOT EXISTS msg_resend ON msg (resend_at) WHERE resend_at IS NOT NULL;
"""


@dataclass(frozen=True)
class Row:
    id: int
    msg_id: str | None
    topic: str
    payload: bytes
    retain: bool
    priority: int
    created: float


@dataclass(frozen=True)
class Rejected:
    """A message the hospital refused, as kept in the `rejected` table."""

    msg_id: str
    topic: str
    payload: bytes
    reason: str
    created: float  # when the gateway stored it
    rejected_at: float  # when the receipt that refused it was taken


@dataclass(frozen=True)
class Mark:
    """The last point (trace) or record seq (tcb) of a device's boot that is in the outbox."""

    device: str
    kind: str
    boot: int
    seq: int


class OutboxError(RuntimeError):
    """The outbox cannot be opened (path not writable, not an SQLite file)."""


class Outbox:
    """Thread-safe: rows are added from the asyncio loop and acknowledged from paho's thread."""

    def __init__(
        self, path: str | Path, max_bytes: int, max_age_s: float, recent_points: int = 0
    ) -> None:
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.max_age_s = float(max_age_s)
        # The live-trace messages of each device's last `recent_points` points are kept beside
        # the marks, sent or not: a restarted gateway finishes the FHIR trace window in progress
        # with them (gateway/processing/fhir.py). 0: none kept.
        self.recent_points = int(recent_points)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            have = {r[1] for r in self._db.execute("PRAGMA table_info(msg)").fetchall()}
            for name, decl in _ADDED_COLUMNS:
                if name not in have:
                    self._db.execute(f"ALTER TABLE msg ADD COLUMN {name} {decl}")
            self._db.executescript(_RECEIPT_INDEXES)
            size, rows = self._db.execute(
                f"SELECT COALESCE(SUM(length(topic) + length(payload) + {_ROW_OVERHEAD}), 0),"
                " COUNT(*) FROM msg"
            ).fetchone()
            self.counters: dict[str, int] = dict(
                self._db.execute("SELECT name, value FROM counter").fetchall()
            )
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"{self.path}: cannot open the outbox ({exc})") from None
        self.bytes = int(size)
        self.rows = int(rows)
        self.peak_bytes = self.bytes
        self.added = 0
        self.acked = 0
        self.confirmed = 0  # rows deleted on a hospital's receipt
        self.write_s = 0.0  # time spent in add(), to show it does not stall the event loop

    # ---- writing ----

    def add(
        self,
        topic: str,
        payload: bytes,
        *,
        msg_id: str | None,
        retain: bool,
        priority: int,
        mark: Mark | None = None,
        now: float | None = None,
    ) -> int:
        """Store one message (and its high-water mark) in one transaction; returns its row id."""
        now = time.time() if now is None else now
        size = len(topic.encode()) + len(payload) + _ROW_OVERHEAD
        t0 = time.perf_counter()
        with self._lock:
            with self._transaction() as db:
                if retain and msg_id is None:
                    # the newest state of a retained topic replaces an unsent older one
                    gone = db.execute(
                        "DELETE FROM msg WHERE topic = ? AND retain = 1 AND msg_id IS NULL"
                        " AND id > ? RETURNING length(topic) + length(payload)",
                        (topic, self.handed_upto),
                    ).fetchall()
                    for (n,) in gone:
                        self._forget_row(n)
                cur = db.execute(
                    "INSERT INTO msg (msg_id, topic, payload, retain, priority, created)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (msg_id, topic, payload, int(retain), priority, now),
                )
                if mark is not None and mark.kind in TRACE_KINDS and self.recent_points:
                    db.execute(
                        "INSERT OR REPLACE INTO recent_trace (device, kind, boot, seq, payload)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (mark.device, mark.kind, mark.boot, mark.seq, payload),
                    )
                    db.execute(
                        "DELETE FROM recent_trace WHERE device = ? AND kind = ?"
                        " AND (boot != ? OR seq <= ?)",
                        (mark.device, mark.kind, mark.boot, mark.seq - self.recent_points),
                    )
                if mark is not None:
                    db.execute(
                        "INSERT INTO mark (device, kind, boot, seq) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT (device, kind) DO UPDATE SET boot = excluded.boot,"
                        " seq = CASE WHEN mark.boot = excluded.boot"
                        " THEN MAX(mark.seq, excluded.seq) ELSE excluded.seq END",
                        (mark.device, mark.kind, mark.boot, mark.seq),
                    )
                self.bytes += size
                self.rows += 1
                self._enforce(now)
            self.peak_bytes = max(self.peak_bytes, self.bytes)
            self.added += 1
            self.write_s += time.perf_counter() - t0
            assert cur.lastrowid is not None  # an INSERT that returned always has one
            return cur.lastrowid

    handed_upto = 0  # rows up to this id have been handed to the MQTT client (set by mqtt.py)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (the caller holds the lock): taken before the first read so
        no other writer slips in between, committed whole or rolled back whole."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _forget_row(self, n: int) -> None:
        """Account for one deleted row whose topic and payload were `n` bytes."""
        self.bytes -= n + _ROW_OVERHEAD
        self.rows -= 1

    def _delete_in(self, db: sqlite3.Connection, lhs: str, keys: Sequence[_Key]) -> int:
        """Delete the rows for which `{lhs} IN (keys)` holds (`lhs`: SQL written in this
        module, never input), inside the caller's transaction; returns how many went."""
        gone_n = 0
        for chunk, marks in _in_chunks(keys):
            gone = db.execute(
                f"DELETE FROM msg WHERE {lhs} IN ({marks})"
                " RETURNING length(topic) + length(payload)",
                chunk,
            ).fetchall()
            for (n,) in gone:
                self._forget_row(n)
            gone_n += len(gone)
        return gone_n

    def _count(self, name: str, n: int) -> None:
        if n <= 0:
            return
        self.counters[name] = self.counters.get(name, 0) + n
        self._db.execute(
            "INSERT INTO counter (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def _drop(self, where: str, args: tuple[object, ...], reason: str) -> int:
        """Delete rows matching `where` (not yet handed to the client, or delivered and waiting
        for a receipt); count them by priority."""
        gone = self._db.execute(
            f"DELETE FROM msg WHERE (id > ? OR acked IS NOT NULL) AND ({where})"
            " RETURNING priority, msg_id, topic, length(topic) + length(payload)",
            (self.handed_upto, *args),
        ).fetchall()
        for prio, msg_id, topic, n in gone:
            self._forget_row(n)
            self._count(f"dropped_{PRIORITY_NAMES[prio]}_{reason}", 1)
            if prio == PRIO_READING:
                log.error("outbox %s: dropped reading %s on %s", reason, msg_id or "-", topic)
        return len(gone)

    def _enforce(self, now: float) -> None:
        """Apply the age and size limits (inside the caller's transaction)."""
        if self.max_age_s > 0:
            oldest = self._db.execute("SELECT MIN(created) FROM msg WHERE id > ?"
                                      " OR acked IS NOT NULL",
                                      (self.handed_upto,)).fetchone()[0]  # fmt: skip
            if oldest is not None and oldest < now - self.max_age_s:
                self._drop("created < ?", (now - self.max_age_s,), "age")
        if self.bytes <= self.max_bytes:
            return
        for prio in (PRIO_TRACE, PRIO_STATUS, PRIO_READING):
            while self.bytes > self.max_bytes:
                # the oldest 64 rows of this priority at a time: a few statements per overflow
                if not self._drop(
                    "id IN (SELECT id FROM msg WHERE priority = ? AND (id > ? OR acked IS NOT NULL)"
                    " ORDER BY id LIMIT 64)",
                    (prio, self.handed_upto),
                    "full",
                ):
                    break

    # ---- reading and acknowledging ----

    def pending(self, after_id: int, limit: int) -> list[Row]:
        """Rows not yet handed to the MQTT client, oldest first (not those delivered and
        waiting for a receipt: `due` hands those out again)."""
        with self._lock:
            return self._pending(after_id, limit)

    def _pending(self, after_id: int, limit: int) -> list[Row]:
        rows = self._db.execute(
            "SELECT id, msg_id, topic, payload, retain, priority, created FROM msg"
            " WHERE id > ? AND acked IS NULL ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [Row(r[0], r[1], r[2], bytes(r[3]), bool(r[4]), r[5], r[6]) for r in rows]

    def take_pending(self, limit: int) -> list[Row]:
        """The next rows not yet handed to the MQTT client, oldest first, counted as handed in
        the same hold of the lock: from here the limits (`_enforce`) never drop or replace a
        row on its way to the client. `hand_back` returns those the client did not take."""
        with self._lock:
            rows = self._pending(self.handed_upto, limit) if limit > 0 else []
            if rows:
                self.handed_upto = max(self.handed_upto, rows[-1].id)
        return rows

    def hand_back(self, first_id: int) -> None:
        """Rows from `first_id` on were not handed to the client after all: pending again."""
        with self._lock:
            self.handed_upto = min(self.handed_upto, first_id - 1)

    def delivered(self, ids: list[int], wait_s: float, now: float | None = None) -> None:
        """The broker has these, and they wait for the hospital's receipt: kept, and due to be
        sent again `wait_s` from now (a row sent again is due when `due` said)."""
        if not ids:
            return
        now = time.time() if now is None else now
        with self._lock:
            with self._transaction() as db:
                for chunk, marks in _in_chunks(ids):
                    db.execute(
                        "UPDATE msg SET acked = COALESCE(acked, ?),"
                        f" resend_at = COALESCE(resend_at, ?) WHERE id IN ({marks})",
                        (now, now + wait_s, *chunk),
                    )

    def due(self, limit: int, wait_s: float, max_wait_s: float,
            now: float | None = None) -> list[Row]:  # fmt: skip
        """Delivered rows no receipt has confirmed by their time, oldest first: each is due
        again after twice its last wait (from `wait_s`, at most `max_wait_s`), so a hospital
        that stays silent costs fewer resends the longer it is silent."""
        now = time.time() if now is None else now
        with self._lock:
            with self._transaction() as db:
                rows = db.execute(
                    "SELECT id, msg_id, topic, payload, retain, priority, created, resends"
                    " FROM msg WHERE resend_at <= ? ORDER BY resend_at, id LIMIT ?",
                    (now, limit),
                ).fetchall()
                for r in rows:
                    wait = min(max_wait_s, wait_s * 2.0 ** min(r[7] + 1, 30))
                    db.execute("UPDATE msg SET resends = resends + 1, resend_at = ? WHERE id = ?",
                               (now + wait, r[0]))  # fmt: skip
                self._count("resent", len(rows))
        return [Row(r[0], r[1], r[2], bytes(r[3]), bool(r[4]), r[5], r[6]) for r in rows]

    def confirm(self, msg_ids: list[str]) -> int:
        """The hospital has stored these: forget them. Only rows the broker has acknowledged
        go (a receipt cannot take a message that was never published); returns how many."""
        if not msg_ids:
            return 0
        with self._lock:
            with self._transaction() as db:
                gone_n = self._delete_in(db, "acked IS NOT NULL AND msg_id", msg_ids)
            self.confirmed += gone_n
        return gone_n

    def reject(self, reasons: dict[str, str], now: float | None = None) -> list[Rejected]:
        """The hospital refused these (msg_id -> its reason) and never will store them: their
        rows go and a copy of each is kept in `rejected` (the newest REJECTED_KEEP). As with
        `confirm`, only rows the broker has acknowledged go. Returns what was moved."""
        if not reasons:
            return []
        now = time.time() if now is None else now
        moved: list[Rejected] = []
        names = list(reasons)
        with self._lock:
            with self._transaction() as db:
                for chunk, marks in _in_chunks(names):
                    gone = db.execute(
                        f"DELETE FROM msg WHERE acked IS NOT NULL AND msg_id IN ({marks})"
                        " RETURNING msg_id, topic, payload, created,"
                        " length(topic) + length(payload)",
                        chunk,
                    ).fetchall()
                    for msg_id, topic, payload, created, n in gone:
                        r = Rejected(msg_id, topic, bytes(payload), reasons[msg_id], created, now)
                        db.execute(
                            "INSERT INTO rejected (msg_id, topic, payload, reason, created,"
                            " rejected_at) VALUES (?, ?, ?, ?, ?, ?)",
                            (r.msg_id, r.topic, r.payload, r.reason, r.created, r.rejected_at),
                        )
                        self._forget_row(n)
                        moved.append(r)
                forgotten = db.execute(
                    "DELETE FROM rejected WHERE id <= (SELECT MAX(id) FROM rejected) - ?",
                    (REJECTED_KEEP,),
                ).rowcount
                self._count("rejected", len(moved))
                self._count("rejected_forgotten", forgotten)
        return moved

    def rejected(self, limit: int = REJECTED_KEEP) -> list[Rejected]:
        """The kept copies of rejected messages, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT msg_id, topic, payload, reason, created, rejected_at FROM rejected"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [Rejected(r[0], r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    def awaiting(self) -> int:
        """Rows delivered to the broker and not yet confirmed by a receipt."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM msg WHERE acked IS NOT NULL").fetchone()
        return int(row[0])

    def oldest_created(self) -> float | None:
        """When the oldest message still here was stored (time.time()), sent or not: how long
        the hospital has been without it. None when the outbox is empty. Ids grow with time, so
        this is the first row by its key, not a scan."""
        with self._lock:
            row = self._db.execute("SELECT created FROM msg ORDER BY id LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def release_awaiting(self) -> int:
        """Forget every row waiting for a receipt (the gateway no longer waits for them: the
        broker acknowledged each); returns how many."""
        with self._lock:
            gone = self._db.execute(
                "DELETE FROM msg WHERE acked IS NOT NULL RETURNING length(topic) + length(payload)"
            ).fetchall()
            for (n,) in gone:
                self._forget_row(n)
        return len(gone)

    def ack(self, ids: list[int]) -> None:
        """The broker has these: forget them."""
        if not ids:
            return
        with self._lock:
            with self._transaction() as db:
                self.acked += self._delete_in(db, "id", ids)

    def next_seq(self, device: str, kind: str) -> int:
        """The next number of a kind the gateway numbers itself (alerts, CTG findings, sessions),
        from 1 per device and kind, never reused: committed with a full sync before the message
        that carries it exists, so neither a restart nor a power cut hands it out twice. A number
        whose message never reached the outbox (a crash in between) shows as a gap, as it should:
        something the gateway meant to publish was lost."""
        with self._lock:
            db = self._db
            db.execute("PRAGMA synchronous=FULL")
            try:
                ((seq,),) = db.execute(  # fetchall: the statement (and its commit) completes
                    "INSERT INTO sequence (device, kind, seq) VALUES (?, ?, 1)"
                    " ON CONFLICT (device, kind) DO UPDATE SET seq = seq + 1 RETURNING seq",
                    (device, kind),
                ).fetchall()
            finally:
                db.execute("PRAGMA synchronous=NORMAL")
        return int(seq)

    def marks(self, device: str, boot: int) -> dict[str, int]:
        """High-water marks of this device's boot: kind -> last seq safely in the outbox."""
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, seq FROM mark WHERE device = ? AND boot = ?", (device, boot)
            ).fetchall()
        return dict(rows)

    def recent_trace(self, device: str, boot: int, kind: str) -> list[bytes]:
        """The kept live-trace messages (payloads) of a device's boot, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT payload FROM recent_trace WHERE device = ? AND kind = ? AND boot = ?"
                " ORDER BY seq",
                (device, kind, boot),
            ).fetchall()
        return [r[0] for r in rows]

    def unacked(self, msg_id_prefix: str, upto_id: int) -> int:
        """How many messages up to row `upto_id` whose msg_id starts with the prefix are still
        waiting for the broker's acknowledgement (a recording session's delivery)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM msg WHERE id <= ? AND substr(msg_id, 1, ?) = ?",
                (upto_id, len(msg_id_prefix), msg_id_prefix),
            ).fetchone()
        return int(row[0])

    def last_id(self) -> int:
        """The id of the newest row ever added (ids only grow)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'msg'").fetchone()
        return int(row[0]) if row else 0

    def checkpoint(self) -> None:
        """Fold the WAL into the database (syncs it): bounds what a power cut can take back."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += Path(str(self.path) + suffix).stat().st_size
            except OSError:
                pass
        return total

    def stats(self) -> dict[str, Any]:
        with self._lock:  # a first count of a kind adds a key, from the sender or the loop
            counters = dict(self.counters)
        dropped = {
            name: sum(v for k, v in counters.items() if k.startswith(f"dropped_{name}_"))
            for name in PRIORITY_NAMES.values()
        }
        return {
            "queued": self.rows,
            "queued_bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "dropped_trace": dropped["trace"],
            "dropped_status": dropped["status"],
            "dropped_readings": dropped["readings"],
            "awaiting_receipt": self.awaiting(),
            "resent": counters.get("resent", 0),
            "rejected": counters.get("rejected", 0),
            "last_rejected": self._last_rejected(),
        }

    def last_rejected_at(self) -> float | None:
        """When the newest rejection was taken (time.time()), or None if there was none."""
        with self._lock:
            row = self._db.execute("SELECT MAX(rejected_at) FROM rejected").fetchone()
        return None if row[0] is None else float(row[0])

    def _last_rejected(self) -> dict[str, Any] | None:
        """The newest rejection, as the gateway status shows it (no payload: the gateway keeps
        that), or None."""
        newest = self.rejected(1)
        if not newest:
            return None
        r = newest[0]
        return {
            "msg_id": r.msg_id,
            "topic": r.topic,
            "reason": r.reason,
            "t": iso_time(r.rejected_at),
        }

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()


def priority_of(kind: str, retain: bool, msg_id: str | None) -> int:
    if kind in TRACE_KINDS:
        return PRIO_TRACE
    if retain and msg_id is None:
        return PRIO_STATUS
    return PRIO_READING
