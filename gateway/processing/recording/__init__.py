"""Recording sessions and the hospital's prescribed schedule (docs/home.md).

A session is a first-class record: start, end, device, minutes recorded, minutes with a fetal
rate ("good signal"), minutes with a heart rate (those that complete it), and whether every
message of it reached the hospital's broker.

* schedule.py: what the hospital's `set_schedule` command may say (sessions per day or per week,
  their duration, from which gestational week, the pregnancy's risk colour) and the slots it
  opens; the gateway applies it as given and invents no cut-off.
* tracker.py: `SessionTracker`, a pure state machine per device, time passed in.
* store.py: `SessionStore`, sessions, schedules and the mother's page links in SQLite.
* service.py: `Recordings`, the above on a running gateway: publishing, reports, delivery.
"""

from gateway.processing.recording.schedule import (
    Slot,
    check_schedule,
    complete_starts,
    kept,
    missed_record,
    slots,
    slots_due_on_day,
)
from gateway.processing.recording.service import Recordings
from gateway.processing.recording.store import SessionStore
from gateway.processing.recording.tracker import (
    HEART_RATE_MINUTE_SHARE,
    LINK_LOST_S,
    MIN_SESSION_S,
    OFF_SKIN_GRACE_S,
    Active,
    SessionTracker,
    heart_rate_minutes,
    session_record,
)

__all__ = [
    "HEART_RATE_MINUTE_SHARE",
    "LINK_LOST_S",
    "MIN_SESSION_S",
    "OFF_SKIN_GRACE_S",
    "Active",
    "Recordings",
    "SessionStore",
    "SessionTracker",
    "Slot",
    "check_schedule",
    "complete_starts",
    "heart_rate_minutes",
    "kept",
    "missed_record",
    "session_record",
    "slots",
    "slots_due_on_day",
]
