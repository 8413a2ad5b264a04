"""Wall-clock times as they appear on the wire: ISO 8601 UTC with milliseconds (docs/mqtt.md).

One home for the format, so a published time, a stored one and one shown to a nurse are the
same string and parse back to the same instant.
"""

from __future__ import annotations

import time
from datetime import datetime


def iso_time(t: float) -> str:
    """`2026-12-06T23:28:08.123Z` for Unix seconds `t` (truncated to the millisecond)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def iso_time_or_none(t: float | None) -> str | None:
    """`iso_time`, passing None through (a time not known yet)."""
    return None if t is None else iso_time(t)


def parse_time(s: str | None) -> float | None:
    """Unix seconds from the ISO 8601 times of docs/mqtt.md (None if absent or unreadable)."""
    if not s:
        return None
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return t.timestamp()
