"""The hospital's prescribed schedule: what `set_schedule` may say, and the slots it opens.

The gateway applies a schedule as given and invents no cut-off (docs/home.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from gateway.processing.recording.store import unix_seconds
from gateway.schemas import SchemaCheck
from gateway.times import iso_time_or_none

log = logging.getLogger(__name__)

MISSED_LOOKBACK_S = 7 * 86400.0  # missed slots are looked for this far back
_DEFAULT_TIMES = {1: ["09:00"], 2: ["09:00", "18:00"], 3: ["08:00", "14:00", "20:00"]}
_SCHEDULE = SchemaCheck("command", "schedule")  # compiled once


def check_schedule(cmd: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A validated schedule from a `set_schedule` command body (ValueError with a message).

    What a schedule may say is `$defs/schedule` of docs/schemas/command.schema.json; here it
    is completed: default times, the day it starts on, when it was set."""
    _SCHEDULE.check(cmd)
    now = time.time() if now is None else now
    out: dict[str, Any] = {}
    if "sessions_per_day" in cmd:
        n = out["sessions_per_day"] = int(cmd["sessions_per_day"])
    else:
        out["sessions_per_week"] = int(cmd["sessions_per_week"])
        n = 1
    out["duration_min"] = float(cmd["duration_min"])
    out["risk_colour"] = cmd["risk_colour"]
    times = cmd.get("times")
    if times is None:
        times = _DEFAULT_TIMES.get(n) or [f"{8 + round(12 * i / (n - 1)):02d}:00" for i in range(n)]
    out["times"] = sorted(times)
    today = datetime.fromtimestamp(now).date()
    start = today
    if "from_ga_weeks" in cmd:
        from_ga, ga = float(cmd["from_ga_weeks"]), float(cmd["ga_weeks"])
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


def slots(schedule: dict[str, Any], since: float, until: float) -> list[Slot]:
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


def slots_due_on_day(schedule: dict[str, Any], now: float) -> list[Slot]:
    """The schedule's slots due on the local day of `now` (what "today's sessions" are)."""
    day = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = day.timestamp(), (day + timedelta(days=1)).timestamp()
    return [s for s in slots(schedule, start, end) if start <= s.due < end]


def complete_starts(sessions: Iterable[dict[str, Any]], since: float = -math.inf) -> list[float]:
    """Start times (unix) of the complete sessions among session records, from `since` on:
    the sessions that can keep a slot."""
    out = []
    for rec in sessions:
        if rec.get("status") == "complete" and rec.get("start"):
            start = unix_seconds(rec["start"])
            if start >= since:
                out.append(start)
    return out


def kept(slot: Slot, starts: Iterable[float]) -> bool:
    """Whether a complete session started at one of `starts` keeps the slot: one started in
    its window [opens, closes). The one rule for a slot done, missed or still due."""
    return any(slot.opens <= t < slot.closes for t in starts)


def missed_record(
    device_id: str, slot: Slot, schedule: dict[str, Any], now: float
) -> dict[str, Any]:
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
        "heart_rate_min": 0,
        "prescribed_min": schedule["duration_min"],
        "risk_colour": schedule["risk_colour"],
        "t": iso_time_or_none(now),
    }
