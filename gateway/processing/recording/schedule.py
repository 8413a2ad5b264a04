"""The hospital's prescribed schedule: what `set_schedule` may say, and the slots it opens.

The gateway applies a schedule as given and invents no cut-off (docs/home.md).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from gateway.state.settings import RISK_COLOURS
from gateway.times import iso_time_or_none

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

MISSED_LOOKBACK_S = 7 * 86400.0  # missed slots are looked for this far back
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DEFAULT_TIMES = {1: ["09:00"], 2: ["09:00", "18:00"], 3: ["08:00", "14:00", "20:00"]}


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
