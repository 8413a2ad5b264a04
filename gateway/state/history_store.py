"""`HistoryStore`: what the gateway published in the last hours, on disk in
`{data_dir}/history.sqlite` (SQLite, WAL, `synchronous=NORMAL`), for the nurse view, the
recording sessions and their reports.

Its own file beside the outbox, never the outbox's database: the history is a copy kept for
the ward, the outbox is the hospital's only copy of what has not been acknowledged yet. A
history that is corrupt, deleted or full is rebuilt empty (`rebuild`) without touching the
outbox, and a history write can neither fail nor slow an outbox transaction (docs/reliability.md).

Messages are written in blocks: one row holds a batch of one device's messages of one kind
(a live-trace batch is everything published in the last `FLUSH_S` seconds, see
gateway/state/history.py), as zlib-compressed JSON in publish order, with the span of time it
covers (at most BLOCK_SPAN_S) so a window query reads only the blocks that overlap it. The
time index leads with the time, so a batch appends to its end (a few pages written per batch,
not one per device) and a prune deletes from its start. Each device's latest status and every
alert (with its acknowledgement) are rows of their own. Rows older than the configured age
are deleted (`prune`); SQLite reuses their pages, so the file stays the size of one period of
history (docs/performance.md, "History on the gateway").
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.times import parse_time

log = logging.getLogger(__name__)

Message = dict[str, Any]
Status = tuple[float, Message]  # when it was recorded (unix s), the status

_SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS block (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    t_first REAL NOT NULL,
    t_last REAL NOT NULL,
    boot INTEGER,
    seq_last INTEGER,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS block_time ON block (t_last, device, kind);
CREATE TABLE IF NOT EXISTS stream (
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    t_last REAL NOT NULL,
    PRIMARY KEY (device, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS status (device TEXT PRIMARY KEY, t REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alert (
    id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    raised REAL NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL
);
"""
_PAGE = 64  # blocks read per query: about 10 minutes of one device's trace
BLOCK_SPAN_S = 600.0  # no block covers more time than this (a query bounds its scan by it)
_ZLIB_LEVEL = 6  # zlib's default: 9 saves under 2 % on these blocks for more CPU
_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)  # primary result codes


@dataclass(frozen=True)
class Block:
    """A batch of one device's messages of one kind, each with its time span (unix s)."""

    device: str
    kind: str
    messages: list[Message]
    t_first: float
    t_last: float
    boot: int | None = None  # the trace's boot and last point: catching up from the outbox
    seq_last: int | None = None


class _Damaged(Exception):
    """The file is not a history database this gateway can read."""


def _open(path: Path | None) -> sqlite3.Connection:
    """The history database at `path` (None: in memory), its tables created if new."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(":memory:" if path is None else str(path), check_same_thread=False,
                         isolation_level=None, timeout=5.0)  # fmt: skip
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # commits reach the disk at checkpoints
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta (key, value) VALUES ('version', ?)", (_SCHEMA_VERSION,))
        elif row[0] != _SCHEMA_VERSION:
            raise _Damaged(f"schema version {row[0]!r}, this gateway reads {_SCHEMA_VERSION!r}")
    except sqlite3.Error as exc:
        db.close()
        if is_corrupt(exc):
            raise _Damaged(str(exc)) from None
        raise
    except BaseException:
        db.close()
        raise
    return db


def is_corrupt(exc: sqlite3.Error) -> bool:
    """SQLite says the file is damaged or not a database (rather than busy, full or read-only)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _CORRUPT


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def encode(messages: list[Message]) -> bytes:
    return zlib.compress(_json(messages).encode(), _ZLIB_LEVEL)


def decode(body: bytes) -> list[Message]:
    out = json.loads(zlib.decompress(body))
    if not isinstance(out, list):
        raise ValueError("a block is not a list of messages")
    return out


class HistoryStore:
    """The history database; `None` as the path keeps it in memory (tests, tools).

    Every method may raise sqlite3.Error; `History` (gateway/state/history.py) decides what a
    failure means. `rebuild` replaces a damaged file with an empty database."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.lost: str | None = None  # why the history was started empty, if it was
        self.bytes_written = 0  # compressed message bytes written, since opening
        try:
            self._db = _open(path)
        except _Damaged as exc:
            self._db = self._fresh(f"was damaged ({exc})")
        except (sqlite3.Error, OSError) as exc:
            self._db = self._in_memory(f"cannot be opened ({exc})")

    def _fresh(self, why: str) -> sqlite3.Connection:
        """Move the damaged file aside (one copy kept, for whoever looks into it) and start an
        empty database in its place."""
        assert self.path is not None  # a database in memory is never found damaged on disk
        self.lost = f"{why}: started empty"
        log.error("history %s %s (the old file is now %s.corrupt)", self.path, self.lost,
                  self.path.name)  # fmt: skip
        for suffix in ("", "-wal", "-shm"):
            try:
                Path(f"{self.path}{suffix}").replace(Path(f"{self.path}.corrupt{suffix}"))
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("history: cannot move %s%s aside (%s)", self.path, suffix, exc)
        try:
            return _open(self.path)
        except (_Damaged, sqlite3.Error, OSError) as exc:
            return self._in_memory(f"{why}, and cannot be created again ({exc})")

    def _in_memory(self, why: str) -> sqlite3.Connection:
        """No usable file: the history lives in memory until the next start (still pruned)."""
        self.lost = f"{why}: kept in memory until the gateway restarts"
        log.error("history %s %s", self.path, self.lost)
        return _open(None)

    def rebuild(self, why: str, damaged: bool = True) -> None:
        """SQLite found the database damaged while running: start it empty (`lost` says why).
        Not `damaged` (it cannot be read for another reason: an I/O error, a lock held by
        another process): the file is left as it is and the history kept in memory."""
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            if self.path is None or not damaged:
                self._db = self._in_memory(why)
            else:
                self._db = self._fresh(why)

    # ---- writing ----

    def write(
        self, blocks: list[Block], statuses: dict[str, Status], alerts: list[Message]
    ) -> None:
        """One transaction: message blocks, devices' newest statuses (device id -> when it was
        recorded, the status) and
        alert records (as `History` keeps them: id, device_id, raised_at, state, ...)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for b in blocks:
                    body = encode(b.messages)
                    self.bytes_written += len(body)
                    db.execute(
                        "INSERT INTO block (device, kind, t_first, t_last, boot, seq_last, body)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (b.device, b.kind, b.t_first, b.t_last, b.boot, b.seq_last, body),
                    )
                    db.execute(
                        "INSERT INTO stream (device, kind, t_last) VALUES (?, ?, ?) ON CONFLICT"
                        " (device, kind) DO UPDATE SET t_last = MAX(t_last, excluded.t_last)",
                        (b.device, b.kind, b.t_last),
                    )
                for device, (t, status) in statuses.items():
                    db.execute(
                        "INSERT INTO status (device, t, body) VALUES (?, ?, ?) ON CONFLICT"
                        " (device) DO UPDATE SET t = excluded.t, body = excluded.body",
                        (device, t, _json(status)),
                    )
                for a in alerts:
                    db.execute(
                        "INSERT INTO alert (id, device, raised, state, body) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
                        " body = excluded.body",
                        (a["id"], a["device_id"], parse_time(a["raised_at"]) or 0.0, a["state"],
                         _json(a)),
                    )  # fmt: skip
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def prune(self, before: float, alerts: Iterable[str]) -> int:
        """Delete messages that ended, statuses sent and cleared alerts raised before `before`
        (unix s), and the alerts named; returns the number of message blocks deleted. Along
        the time index: a prune reads what it deletes, not the whole file."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                n = db.execute("DELETE FROM block WHERE t_last < ?", (before,)).rowcount
                db.execute("DELETE FROM stream WHERE t_last < ?", (before,))
                db.execute("DELETE FROM status WHERE t < ?", (before,))
                db.execute("DELETE FROM alert WHERE raised < ? AND state = 'cleared'", (before,))
                db.executemany("DELETE FROM alert WHERE id = ?", [(a,) for a in alerts])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return int(n)

    # ---- reading ----

    def blocks(
        self, device: str, kind: str, since: float, until: float, newest_first: bool = False
    ) -> Iterator[tuple[float, float, list[Message]]]:
        """The blocks of a device's `kind` that overlap [since, until] in time order (of their
        newest message), or newest first: (t_first, t_last, its messages). Read along the time
        index _PAGE rows at a time, so a reader that stops early has read little. A block that
        does not decode is skipped, logged: SQLite checks its pages, not what is in a value."""
        order, beyond = ("DESC", "<") if newest_first else ("ASC", ">")
        key = (math.inf, math.inf) if newest_first else (-math.inf, -math.inf)
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, t_first, t_last, body FROM block WHERE t_last >= ? AND t_last <= ?"
                    " AND device = ? AND kind = ? AND t_first <= ?"
                    f" AND (t_last, id) {beyond} (?, ?) ORDER BY t_last {order}, id {order}"
                    " LIMIT ?",
                    (since, until + BLOCK_SPAN_S, device, kind, until, *key, _PAGE),
                ).fetchall()
            for block_id, t_first, t_last, body in rows:
                try:
                    yield t_first, t_last, decode(body)
                except (zlib.error, ValueError) as exc:
                    log.error("history: block %d of %s %s unreadable (%s), skipped", block_id,
                              device, kind, exc)  # fmt: skip
            if len(rows) < _PAGE:
                return
            key = (rows[-1][2], rows[-1][0])

    def last(self, device: str, kind: str) -> list[Message]:
        """The messages of the newest block of a device's `kind` (empty if none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM block WHERE device = ? AND kind = ?"
                " ORDER BY t_last DESC, id DESC LIMIT 1",
                (device, kind),
            ).fetchone()
        try:
            return [] if row is None else decode(row[0])
        except (zlib.error, ValueError):
            return []

    def kinds(self) -> list[tuple[str, str]]:
        """Every (device, kind) that has messages."""
        with self._lock:
            rows = self._db.execute("SELECT device, kind FROM stream").fetchall()
        return [(str(d), str(k)) for d, k in rows]

    def trace_end(self, device: str, kind: str) -> tuple[int, int] | None:
        """(boot, last point) of the newest stored block of a trace, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT boot, seq_last FROM block WHERE device = ? AND kind = ?"
                " AND boot IS NOT NULL ORDER BY t_last DESC, id DESC LIMIT 1",
                (device, kind),
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def statuses(self) -> dict[str, Status]:
        """Each device's newest status: when it was recorded (unix s), the status."""
        with self._lock:
            rows = self._db.execute("SELECT device, t, body FROM status").fetchall()
        return {str(d): (float(t), json.loads(b)) for d, t, b in rows}

    def alerts(self) -> list[Message]:
        """Every alert record kept, oldest raised first."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM alert ORDER BY raised, id").fetchall()
        return [json.loads(b) for (b,) in rows]

    def file_bytes(self) -> int:
        """The database, its WAL and shared-memory index, on disk."""
        if self.path is None:
            return 0
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += Path(str(self.path) + suffix).stat().st_size
            except OSError:
                pass
        return total

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
