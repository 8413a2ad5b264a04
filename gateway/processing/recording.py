"""Recording sessions and the hospital's prescribed schedule (docs/home.md).

A session is a first-class record: start, end, device, minutes recorded, minutes with a fetal
rate ("good signal"), and whether every message of it reached the hospital's broker.

* `SessionTracker` is a pure state machine per device, fed once per FHR batch by the fetal
  processor (`feed`) and ticked by the clock (`tick`). A session starts when the probe is on
  the skin and FHR points with a rate flow; it ends when the probe has been off the skin for
  `OFF_SKIN_GRACE_S`, when no points arrived for `LINK_LOST_S` (the link is gone), when the
  device restarts, or when the prescribed duration is reached (then `on_complete` is called so
  the device can be told "session complete").
* `SessionStore` keeps sessions, schedules and the mother's page links in SQLite under
  data_dir (`sessions.sqlite`).
* `Schedule` is what the hospital pushes with the `set_schedule` command: sessions per day or
  per week, their duration, from which gestational week, and the pregnancy's risk colour (China
  NHC 2017 five-colour grading). The gateway applies it as given and invents no cut-off.
* `Recordings` ties them to a running gateway: it publishes each finished session (and each
  missed one) to `{prefix}/{gw}/device/{device}/session` through the outbox, renders the
  session report PDF (gateway/processing/report.py) in a worker thread, and checks delivery.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dsp.ctg_reference import POINT_S
from gateway.times import iso_time_or_none

if TYPE_CHECKING:
    from gateway.publish.outbox import Outbox
    from gateway.state.history import History

log = logging.getLogger(__name__)

LINK_LOST_S = 120.0  # no points for this long: the link is gone, the session ends
OFF_SKIN_GRACE_S = 20.0  # a probe lifted briefly to move it does not end the session
MIN_SESSION_S = 60.0  # shorter recordings are not kept as sessions (a probe touched and removed)
SIGNAL_WINDOW_POINTS = 40  # the last 10 s decide "signal good" or "move the probe a little"
SIGNAL_GOOD_SHARE = 0.5
MISSED_LOOKBACK_S = 7 * 86400.0
TICK_S = 5.0
RISK_COLOURS = ("green", "yellow", "orange", "red", "purple")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DEFAULT_TIMES = {1: ["09:00"], 2: ["09:00", "18:00"], 3: ["08:00", "14:00", "20:00"]}


# ---------------------------------------------------------------- schedules


def check_schedule(cmd: dict, now: float | None = None) -> dict:
    """A validated schedule from a `set_schedule` command body (ValueError with a message)."""
    now = time.time() if now is None else now
    per_day, per_week = cmd.get("sessions_per_day"), cmd.get("sessions_per_week")
    if (per_day is None) == (per_week is None):
        raise ValueError("set_schedule: exactly one of sessions_per_day, sessions_per_week")

    def integer(name, v, lo, hi):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"set_schedule: {name} an integer from {lo} to {hi}")
        return v

    def number(name, v, lo, hi):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"set_schedule: {name} a number from {lo} to {hi}")
        if not lo <= v <= hi:
            raise ValueError(f"set_schedule: {name} a number from {lo} to {hi}")
        return float(v)

    out: dict = {}
    if per_day is not None:
        out["sessions_per_day"] = integer("sessions_per_day", per_day, 1, 6)
        n = per_day
    else:
        out["sessions_per_week"] = integer("sessions_per_week", per_week, 1, 7)
        n = 1
    out["duration_min"] = number("duration_min", cmd.get("duration_min"), 1, 120)
    colour = cmd.get("risk_colour")
    if colour not in RISK_COLOURS:
        raise ValueError(f"set_schedule: risk_colour one of {', '.join(RISK_COLOURS)}")
    out["risk_colour"] = colour
    times = cmd.get("times")
    if times is None:
        times = _DEFAULT_TIMES.get(n) or [f"{8 + round(12 * i / (n - 1)):02d}:00" for i in range(n)]
    if (
        not isinstance(times, list)
        or len(times) != n
        or not all(isinstance(s, str) and _TIME_RE.match(s) for s in times)
    ):
        raise ValueError(f"set_schedule: times a list of {n} local times HH:MM")
    if len(set(times)) != n:
        raise ValueError("set_schedule: times must differ")
    out["times"] = sorted(times)
    today = datetime.fromtimestamp(now).date()
    start = today
    if cmd.get("from_ga_weeks") is not None:
        from_ga = number("from_ga_weeks", cmd["from_ga_weeks"], 12, 42)
        if cmd.get("ga_weeks") is None:
            raise ValueError("set_schedule: from_ga_weeks needs ga_weeks (gestation today)")
        ga = number("ga_weeks", cmd["ga_weeks"], 4, 44)
        out["from_ga_weeks"], out["ga_weeks_when_set"] = from_ga, ga
        start = today + timedelta(days=max(0, math.ceil((from_ga - ga) * 7 - 1e-9)))
    out["starts_on"] = start.isoformat()
    out["set_at"] = iso_time_or_none(now)
    return out


@dataclass(frozen=True)
class Slot:
    due: float  # unix time a session is due
    opens: float  # a session started from here on keeps this slot...
    closes: float  # ...until here; after that, without one, the slot is missed


def slots(schedule: dict, since: float, until: float) -> list[Slot]:
    """The schedule's slots whose window overlaps [since, until), in local time."""
    start = date.fromisoformat(schedule["starts_on"])
    times = [tuple(int(x) for x in s.split(":")) for s in schedule["times"]]
    if "sessions_per_week" in schedule:
        n = schedule["sessions_per_week"]
        week_days = sorted({round(i * 7 / n) % 7 for i in range(n)})
    else:
        week_days = list(range(7))
    first = max(start, datetime.fromtimestamp(since).date() - timedelta(days=8))
    last = datetime.fromtimestamp(until).date() + timedelta(days=8)
    dues: list[float] = []
    d = first
    while d <= last:
        if (d - start).days % 7 in week_days:
            for h, m in times:
                dues.append(datetime(d.year, d.month, d.day, h, m).timestamp())
        d += timedelta(days=1)
    out = []
    for i, due in enumerate(dues):
        spacing = (dues[i + 1] - due) if i + 1 < len(dues) else 86400.0
        lead = min(3600.0, spacing / 2, (due - dues[i - 1]) / 2 if i else 3600.0)
        opens = due - lead
        closes = min(due + 12 * 3600.0, due + spacing - min(3600.0, spacing / 2))
        if closes > since and opens < until:
            out.append(Slot(due, opens, closes))
    return out


# ---------------------------------------------------------------- the state machine


@dataclass
class Active:
    """The session being recorded."""

    device_id: str
    boot: int
    first_point: int
    start: float
    prescribed_s: float | None
    next_point: int = 0
    end: float = 0.0
    fhr: list[float] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)
    last_fed: float = 0.0
    off_skin_since: float | None = None

    @property
    def session_id(self) -> str:
        return f"{self.device_id}:{self.boot}:{self.first_point}"

    @property
    def recorded_s(self) -> float:
        return len(self.fhr) * POINT_S

    @property
    def good_s(self) -> float:
        return sum(1 for v in self.fhr if v == v) * POINT_S

    def signal(self) -> str:
        recent = self.fhr[-SIGNAL_WINDOW_POINTS:]
        if not recent:
            return "none"
        good = sum(1 for v in recent if v == v) / len(recent)
        return "good" if good >= SIGNAL_GOOD_SHARE else "weak"


class SessionTracker:
    """Sessions of one device. Pure: times come in as arguments, results go out by callback.

    `on_end(record, active)` receives every finished session (at least MIN_SESSION_S long);
    `on_complete(record)` additionally when the prescribed duration was reached.
    """

    def __init__(self, device_id: str, prescribed_min: Callable[[], float | None] = lambda: None):
        self.device_id = device_id
        self.prescribed_min = prescribed_min
        self.active: Active | None = None
        self.on_skin: bool | None = None
        self.on_end: Callable[[dict, Active], None] | None = None
        self.on_complete: Callable[[dict], None] | None = None
        # after a complete session, the next one starts only once the probe was taken off,
        # the device restarted or the link was gone: keeping the probe on records no more
        self.resting_boot: int | None = None
        self.last_fed = 0.0

    def feed(self, boot: int, first_point: int, fhr, quality, on_skin: bool | None,
             t_first: float, now: float | None = None) -> None:  # fmt: skip
        """One FHR batch: points `first_point...` of `boot` (NaN = no fetal rate), the first
        at wall time `t_first`; `on_skin` from the device (None: unknown, taken as on)."""
        now = time.time() if now is None else now
        fhr = [float(v) for v in np.asarray(fhr, dtype=float)]
        quality = [float(q) for q in np.asarray(quality, dtype=float)]
        self.on_skin = on_skin
        if self.resting_boot is not None and (
            on_skin is False or boot != self.resting_boot or now - self.last_fed >= LINK_LOST_S
        ):
            self.resting_boot = None
        self.last_fed = now
        if self.resting_boot is not None:
            return
        a = self.active
        if a is not None and (boot != a.boot or first_point < a.next_point):
            self._end("device_restarted", now)
            a = None
        if a is None:
            has_rate = any(v == v for v in fhr)
            if on_skin is False or not has_rate:
                return
            mins = self.prescribed_min()
            a = self.active = Active(self.device_id, boot, first_point, t_first,
                                     mins * 60.0 if mins else None, next_point=first_point)  # fmt: skip
        if first_point > a.next_point:  # points never published (lost): gaps of their length
            missing = first_point - a.next_point
            a.fhr.extend([math.nan] * missing)
            a.quality.extend([0.0] * missing)
        a.fhr.extend(fhr)
        a.quality.extend(quality)
        a.next_point = first_point + len(fhr)
        a.end = t_first + len(fhr) * POINT_S
        a.last_fed = now
        a.off_skin_since = None if on_skin is not False else (a.off_skin_since or now)
        if a.prescribed_s is not None and a.recorded_s >= a.prescribed_s:
            # exactly the prescribed length: later points belong to no session
            keep = int(a.prescribed_s / POINT_S)
            del a.fhr[keep:], a.quality[keep:]
            a.end = a.start + keep * POINT_S
            self.resting_boot = boot
            self._end("duration_reached", now)
        else:
            self.tick(now)

    def tick(self, now: float) -> None:
        a = self.active
        if a is None:
            return
        if a.off_skin_since is not None and now - a.off_skin_since >= OFF_SKIN_GRACE_S:
            self._end("probe_off", now)
        elif now - a.last_fed >= LINK_LOST_S:
            self._end("link_lost", now)

    def end(self, reason: str, now: float | None = None) -> None:
        """End the session being recorded (the gateway stops, for example)."""
        if self.active is not None:
            self._end(reason, time.time() if now is None else now)

    def _end(self, reason: str, now: float) -> None:
        a, self.active = self.active, None
        if a is None or a.recorded_s < MIN_SESSION_S:
            return
        rec = session_record(a, reason, now)
        if self.on_end is not None:
            self.on_end(rec, a)
        if reason == "duration_reached" and self.on_complete is not None:
            self.on_complete(rec)

    def progress(self) -> dict | None:
        a = self.active
        if a is None:
            return None
        return {"session_id": a.session_id, "start": iso_time_or_none(a.start),
                "recorded_min": round(a.recorded_s / 60, 1), "good_signal_min": round(a.good_s / 60, 1),
                "prescribed_min": a.prescribed_s / 60 if a.prescribed_s else None,
                "signal": "off_skin" if self.on_skin is False else a.signal()}  # fmt: skip


def session_record(a: Active, reason: str, now: float) -> dict:
    """The published record of a finished session (docs/mqtt.md, "Sessions")."""
    prescribed = a.prescribed_s / 60 if a.prescribed_s else None
    status = "short" if prescribed else "ended"  # "short": stopped before the prescription
    return {
        "msg_id": f"{a.device_id}:{a.boot}:session:{a.first_point}",
        "session_id": a.session_id,
        "device_id": a.device_id,
        "status": "complete" if reason == "duration_reached" else status,
        "end_reason": reason,
        "boot": a.boot,
        "first_point": a.first_point,
        "last_point": a.first_point + len(a.fhr) - 1,
        "start": iso_time_or_none(a.start),
        "end": iso_time_or_none(a.end),
        "due": None,
        "recorded_min": round(a.recorded_s / 60, 2),
        "good_signal_min": round(a.good_s / 60, 2),
        "prescribed_min": prescribed,
        "t": iso_time_or_none(now),
    }


def missed_record(device_id: str, slot: Slot, schedule: dict, now: float) -> dict:
    due_ms = int(round(slot.due * 1000))
    return {
        "msg_id": f"{device_id}:missed:{due_ms}",
        "session_id": f"{device_id}:missed:{due_ms}",
        "device_id": device_id,
        "status": "missed",
        "end_reason": "not_recorded",
        "start": None,
        "end": None,
        "due": iso_time_or_none(slot.due),
        "recorded_min": 0.0,
        "good_signal_min": 0.0,
        "prescribed_min": schedule["duration_min"],
        "risk_colour": schedule["risk_colour"],
        "t": iso_time_or_none(now),
    }


# ---------------------------------------------------------------- storage

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

    def add(self, rec: dict, *, end_row: int = 0, drops: int = 0) -> bool:
        """Store a finished or missed session; False if it was already there."""
        start = _unix(rec.get("start")) if rec.get("start") else None
        due = _unix(rec.get("due")) if rec.get("due") else None
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

    def sessions(self, device: str, limit: int = 50) -> list[dict]:
        """Newest first: the record plus `delivered` and `report` (a file name or None)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record, delivered, report FROM session WHERE device = ?"
                " ORDER BY start DESC LIMIT ?",
                (device, limit),
            ).fetchall()
        return [{**json.loads(r), "delivered": bool(d), "report": rep} for r, d, rep in rows]

    def get(self, session_id: str) -> dict | None:
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

    def set_schedule(self, device: str, schedule: dict | None) -> None:
        with self._lock:
            if schedule is None:
                self._db.execute("DELETE FROM schedule WHERE device = ?", (device,))
            else:
                self._db.execute(
                    "INSERT INTO schedule (device, body) VALUES (?, ?) ON CONFLICT (device)"
                    " DO UPDATE SET body = excluded.body",
                    (device, json.dumps(schedule)),
                )

    def schedule(self, device: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM schedule WHERE device = ?",
                                   (device,)).fetchone()  # fmt: skip
        return json.loads(row[0]) if row else None

    def schedules(self) -> dict[str, dict]:
        with self._lock:
            rows = self._db.execute("SELECT device, body FROM schedule").fetchall()
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


def _unix(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------- on a running gateway

_reports = ThreadPoolExecutor(max_workers=1, thread_name_prefix="report")


class Recordings:
    """Sessions, schedules and reports of every fetal monitor on one gateway."""

    def __init__(self, data_dir: Path, outbox: Outbox, history: History,
                 publish: Callable[..., None]) -> None:  # fmt: skip
        self.outbox = outbox  # delivery of each session is checked against it
        self.history = history  # the maternal rate drawn in reports, as published
        self.publish = publish
        self.store = SessionStore(data_dir / "sessions.sqlite")
        self.report_dir = data_dir / "reports"
        self.trackers: dict[str, SessionTracker] = {}
        self.on_session_complete: Callable[[str, dict], None] | None = None  # device feedback
        self._task: asyncio.Task | None = None
        self.pending_reports: set[str] = set()

    def tracker(self, device_id: str) -> SessionTracker:
        t = self.trackers.get(device_id)
        if t is None:
            t = self.trackers[device_id] = SessionTracker(
                device_id, lambda d=device_id: (self.store.schedule(d) or {}).get("duration_min")
            )
            t.on_end = self._ended
            t.on_complete = lambda rec: self._complete(device_id, rec)
        return t

    def start(self) -> None:
        """Tick sessions, missed slots and delivery checks on the running loop until `stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._ticker())

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.tick(time.time())
            except Exception:  # the gateway must keep publishing whatever happens here
                log.exception("recording sessions")

    def tick(self, now: float) -> None:
        for t in list(self.trackers.values()):
            t.tick(now)
        self.check_missed(now)
        self.check_delivered()

    def _complete(self, device_id: str, rec: dict) -> None:
        log.info("%s: session %s complete", device_id, rec["session_id"])
        if self.on_session_complete is not None:
            self.on_session_complete(device_id, rec)

    def _drops(self) -> int:
        s = self.outbox.stats()
        return s["dropped_trace"] + s["dropped_status"] + s["dropped_readings"]

    def _ended(self, rec: dict, active: Active) -> None:
        drops = self._drops()
        self.publish(("device", rec["device_id"], "session"), rec)
        self.store.add(rec, end_row=self.outbox.last_id(), drops=drops)
        log.info("%s: session %s %s (%s), %.1f min, %.1f min with signal", rec["device_id"],
                 rec["session_id"], rec["status"], rec["end_reason"], rec["recorded_min"],
                 rec["good_signal_min"])  # fmt: skip
        mhr = self._mhr(active)
        self.pending_reports.add(rec["session_id"])
        _reports.submit(self._render, rec, np.array(active.fhr), np.array(active.quality), mhr)

    def _mhr(self, a: Active) -> np.ndarray | None:
        """The maternal rate on the session's point grid, from what the gateway published."""
        d = self.history.devices.get(a.device_id)
        if d is None or not d.mhr:
            return None
        out = np.full(len(a.fhr), np.nan)
        for m in list(d.mhr):
            if m.get("boot") != a.boot:
                continue
            for i, v in enumerate(m.get("mhr_bpm", [])):
                k = m["seq"] + i - a.first_point
                if 0 <= k < len(out) and v is not None:
                    out[k] = v
        return out if np.isfinite(out).any() else None

    def _render(self, rec: dict, fhr: np.ndarray, quality: np.ndarray, mhr) -> None:
        from dsp.ctg import analyse_ctg
        from gateway.processing.report import SessionReport, render_session_report

        try:
            t_s = (np.arange(len(fhr)) + 1) * POINT_S
            findings = analyse_ctg(t_s, fhr).to_dict()
            report = SessionReport(rec["session_id"], rec["device_id"], rec["start"], rec["end"],
                                   fhr, quality, mhr, findings, rec["prescribed_min"])  # fmt: skip
            pdf = render_session_report(report)
            self.report_dir.mkdir(parents=True, exist_ok=True)
            name = rec["session_id"].replace(":", "_") + ".pdf"
            tmp = self.report_dir / (name + ".tmp")
            tmp.write_bytes(pdf)
            tmp.replace(self.report_dir / name)
            self.store.set_report(rec["session_id"], name)
        except Exception:
            log.exception("%s: session report failed", rec["session_id"])
        finally:
            self.pending_reports.discard(rec["session_id"])

    def report_pdf(self, session_id: str) -> bytes | None:
        rec = self.store.get(session_id)
        if rec is None or not rec.get("report"):
            return None
        try:
            return (self.report_dir / rec["report"]).read_bytes()
        except OSError:
            return None

    def check_delivered(self) -> None:
        drops = self._drops()
        for sid, prefix, end_row, drops_at_start in self.store.undelivered():
            if drops != drops_at_start:
                continue  # the outbox dropped something meanwhile: it may have been this session's
            if self.outbox.unacked(prefix, end_row) == 0:
                self.store.set_delivered(sid)

    def check_missed(self, now: float) -> None:
        for device, schedule in self.store.schedules().items():
            set_at = _unix(schedule["set_at"])
            since = max(set_at, now - MISSED_LOOKBACK_S)
            done = self._kept(device, since - 86400.0)
            for slot in slots(schedule, since, now):
                if slot.closes > now or slot.due < set_at:
                    continue
                if any(slot.opens <= s < slot.closes for s in done):
                    continue
                rec = missed_record(device, slot, schedule, now)
                if self.store.add(rec, end_row=0, drops=self._drops()):
                    self.publish(("device", device, "session"), rec)
                    log.warning("%s: prescribed session due %s was missed", device, rec["due"])

    def _kept(self, device: str, since: float) -> list[float]:
        """Start times of complete sessions (those that keep a slot)."""
        return [_unix(s["start"]) for s in self.store.sessions(device, 500)
                if s["status"] == "complete" and _unix(s["start"]) >= since]  # fmt: skip

    def plan(self, device: str, now: float | None = None) -> dict:
        """For the mother's page: the schedule, the next slot, and a reminder if any."""
        now = time.time() if now is None else now
        schedule = self.store.schedule(device)
        if schedule is None:
            return {"schedule": None, "next_due": None, "reminder": None}
        done = self._kept(device, now - 2 * 86400.0)
        reminder = None
        next_due = None
        for slot in slots(schedule, now - 86400.0, now + 8 * 86400.0):
            kept = any(slot.opens <= s < slot.closes for s in done)
            if kept:
                continue
            if slot.due <= now < slot.closes:
                reminder = {"kind": "due", "due": iso_time_or_none(slot.due)}
            elif slot.closes <= now and slot.due >= _unix(schedule["set_at"]):
                reminder = reminder or {"kind": "missed", "due": iso_time_or_none(slot.due)}
            if slot.due > now and next_due is None:
                next_due = iso_time_or_none(slot.due)
        public = {k: schedule[k] for k in ("sessions_per_day", "sessions_per_week",
                                           "duration_min", "times", "starts_on") if k in schedule}  # fmt: skip
        return {"schedule": public, "next_due": next_due, "reminder": reminder}

    def stop(self, wait_s: float = 15.0) -> None:
        """The gateway stops: sessions being recorded end, their reports are written."""
        for t in list(self.trackers.values()):
            t.end("gateway_stopped")
        deadline = time.monotonic() + wait_s
        while self.pending_reports and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            self._task = None
