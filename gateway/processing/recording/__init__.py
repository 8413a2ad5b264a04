"""Recording sessions and the hospital's prescribed schedule (docs/home.md).

A session is a first-class record: start, end, device, minutes recorded, minutes with a fetal
rate ("good signal"), and whether every message of it reached the hospital's broker.

* schedule.py: what the hospital's `set_schedule` command may say (sessions per day or per week,
  their duration, from which gestational week, the pregnancy's risk colour) and the slots it
  opens; the gateway applies it as given and invents no cut-off.
* tracker.py: `SessionTracker`, a pure state machine per device, time passed in.
* store.py: `SessionStore`, sessions, schedules and the mother's page links in SQLite.
* service.py: `Recordings`, the above on a running gateway: publishing, reports, delivery.
"""

from gateway.processing.recording.schedule import Slot, check_schedule, missed_record, slots
from gateway.processing.recording.service import Recordings
from gateway.processing.recording.store import SessionStore
from gateway.processing.recording.tracker import (
    LINK_LOST_S,
    MIN_SESSION_S,
    OFF_SKIN_GRACE_S,
    Active,
    SessionTracker,
    session_record,
)

__all__ = [
    "LINK_LOST_S",
    "MIN_SESSION_S",
    "OFF_SKIN_GRACE_S",
    "Active",
    "Recordings",
    "SessionStore",
    "SessionTracker",
    "Slot",
    "check_schedule",
    "missed_record",
    "session_record",
    "slots",
]
