"""`SessionStore`: sessions, schedules and the mother's page links in SQLite under data_dir."""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS session (
    id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    start REAL,
    due REAL,
    record TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    end_row INTEGER NOT NULL DEFAULT 0,
    drops_at_start INTEGER NOT NULL DEFAULT 0,
    report TEXT
);
CREATE INDEX IF NOT EXISTS session_device ON session (device, start);
CREATE TABLE IF NOT EXISTS schedule (device TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mother_link (device TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS progress (device TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


class SessionStore:
    """Sessions, schedules and mother's-page links in `{data_dir}/sessions.sqlite`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def add(self, rec: dict[str, Any], *, end_row: int = 0, drops: int = 0) -> bool:
        """Store a finished or missed session; False if it was already there."""
        start_at, due_at = rec.get("start"), rec.get("due")
        start = unix_seconds(start_at) if start_at else None
        due = unix_seconds(due_at) if due_at else None
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO session (id, device, start, due, record, end_row,"
                " drops_at_start) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rec["session_id"], rec["device_id"], start if start is not None else due, due,
                 json.dumps(rec), end_row, drops),
            )  # fmt: skip
            return cur.rowcount == 1

    def set_report(self, session_id: str, path: str) -> None:
        with self._lock:
            self._db.execute("UPDATE session SET report = ? WHERE id = ?", (path, session_id))

    def set_delivered(self, session_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE session SET delivered = 1 WHERE id = ?", (session_id,))

    def sessions(self, device: str, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: the record plus `delivered` and `report` (a file name or None)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record, delivered, report FROM session WHERE device = ?"
                " ORDER BY start DESC LIMIT ?",
                (device, limit),
            ).fetchall()
        return [{**json.loads(r), "delivered": bool(d), "report": rep} for r, d, rep in rows]

    def get(self, session_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT record, delivered, report FROM session WHERE id = ?", (session_id,)
            ).fetchone()
        if row is None:
            return None
        return {**json.loads(row[0]), "delivered": bool(row[1]), "report": row[2]}

    def undelivered(self) -> list[tuple[str, str, int, int]]:
        """(session id, msg id prefix, end row, drops at start) of sessions not yet confirmed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, record, end_row, drops_at_start FROM session WHERE delivered = 0"
            ).fetchall()
        out = []
        for sid, rec, end_row, drops in rows:
            r = json.loads(rec)
            prefix = f"{r['device_id']}:{r['boot']}:" if "boot" in r else f"{r['msg_id']}"
            out.append((sid, prefix, end_row, drops))
        return out

    def set_schedule(self, device: str, schedule: dict[str, Any] | None) -> None:
        with self._lock:
            if schedule is None:
                self._db.execute("DELETE FROM schedule WHERE device = ?", (device,))
            else:
                self._db.execute(
                    "INSERT INTO schedule (device, body) VALUES (?, ?) ON CONFLICT (device)"
                    " DO UPDATE SET body = excluded.body",
                    (device, json.dumps(schedule)),
                )

    def schedule(self, device: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM schedule WHERE device = ?",
                                   (device,)).fetchone()  # fmt: skip
        return json.loads(row[0]) if row else None

    def schedules(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT device, body FROM schedule").fetchall()
        return {d: json.loads(b) for d, b in rows}

    def set_progress(self, device: str, progress: dict[str, Any] | None) -> None:
        """A device's session in progress, without its points (`Recordings.resume`); None:
        there is none."""
        with self._lock:
            if progress is None:
                self._db.execute("DELETE FROM progress WHERE device = ?", (device,))
            else:
                self._db.execute(
                    "INSERT INTO progress (device, body) VALUES (?, ?) ON CONFLICT (device)"
                    " DO UPDATE SET body = excluded.body",
                    (device, json.dumps(progress)),
                )

    def progress(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT device, body FROM progress").fetchall()
        return {d: json.loads(b) for d, b in rows}

    def mother_token(self, device: str, create: bool = True) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT token FROM mother_link WHERE device = ?",
                                   (device,)).fetchone()  # fmt: skip
            if row is not None or not create:
                return row[0] if row else None
            token = secrets.token_urlsafe(24)
            self._db.execute("INSERT INTO mother_link (device, token) VALUES (?, ?)",
                             (device, token))  # fmt: skip
            return token

    def renew_mother_token(self, device: str) -> str:
        with self._lock:
            self._db.execute("DELETE FROM mother_link WHERE device = ?", (device,))
        return self.mother_token(device) or ""

    def device_for_token(self, token: str) -> str | None:
        with self._lock:
            rows = self._db.execute("SELECT device, token FROM mother_link").fetchall()
        found = None
        for device, t in rows:  # constant time per comparison, every row compared
            if secrets.compare_digest(t.encode(), token.encode()):
                found = device
        return found

    def close(self) -> None:
        with self._lock:
            self._db.close()


def unix_seconds(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
