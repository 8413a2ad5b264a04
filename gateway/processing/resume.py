"""Continuing a device's boot after a gateway restart (docs/reliability.md, "Restarts").

The outbox knows the last point of each trace and the last TcB record of a boot that it
holds (`Outbox.marks`). When the device reconnects with the same boot, the session asks it to
resend from a little before there (`resume_plan`) and the processor withholds the points it
had already published, so the hospital sees every point once and in place. What the gateway's
own sample journal still holds from there (gateway/device/journal.py: the audio received and
not yet turned into published points when it died) is replayed first, so the device is asked
only for what came after.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from gateway import protocol as p

if TYPE_CHECKING:
    from gateway.device.session import DeviceSession
    from gateway.publish.outbox import Outbox

log = logging.getLogger(__name__)

FHR_WARMUP_POINTS = 8  # 2 s of audio before the first new point: FHR windows are +-1.875 s
MHR_WARMUP_POINTS = 16  # 4 s of PPG: the maternal-rate windows are +-4 s
TRACE_STREAMS = {"fhr": p.Stream.DOPPLER, "mhr": p.Stream.PPG}


def resume_plan(kind: str, last_point: int) -> int:
    """For a trace `kind` whose point `last_point` is in the outbox: the first sample to feed
    again, a few points early so the estimator's window is full for the next point, on a point
    boundary (PPG, 12.5 samples a point: on every second one)."""
    if kind == "fhr":
        return max(0, last_point - FHR_WARMUP_POINTS) * 1000
    return max(0, last_point - MHR_WARMUP_POINTS) // 2 * 25


def replay_journal(session: DeviceSession, boot: int) -> None:
    """Each resumed sample stream from the session's journal, as far as it goes on from its
    resume point without a gap, before any live frame of the boot: no gap opens behind the
    device's frames for the device to be asked (it may no longer hold it) or to be given up.
    Only with the boot's clock as the journal kept it, so the points carry their own time;
    without it (the last gateway died before its first sync) the device is asked for it all."""
    journal = session.journal
    device_id = session.state.device_id
    if journal is None or not session.resume_from:
        return
    offset_ms = journal.clock(device_id, boot)
    if offset_ms is None:
        log.info("%s: boot %d's clock was never synced: the journal is not replayed", device_id,
                 boot)  # fmt: skip
        return
    session.resume_clock(offset_ms)
    for kind, stream in TRACE_STREAMS.items():
        first = session.resume_from.get(stream)
        if first is None:
            continue
        n = session.replay(stream, journal.since(device_id, boot, stream, first))
        log.info("%s: %s resumed from sample %d, %d replayed from the journal", device_id,
                 kind, first, n)  # fmt: skip


def resume_boot(session: DeviceSession, outbox: Outbox, boot: int) -> dict[str, int]:
    """Set up `session` (and its processor) to continue `boot` after what the outbox holds;
    returns the marks it resumed from (empty: a boot this gateway never published)."""
    device_id = session.state.device_id
    marks = outbox.marks(device_id, boot)
    if session.state.device_type == p.DeviceType.FETAL_HEART:
        recent = {}
        for kind, stream in TRACE_STREAMS.items():
            if kind in marks:
                session.resume_from[stream] = resume_plan(kind, marks[kind])
                recent[kind] = [json.loads(m) for m in outbox.recent_trace(device_id, boot, kind)]
        if session.processor is not None:
            session.processor.resume(marks, recent)
        replay_journal(session, boot)
    elif "tcb" in marks:
        session.resume_from[p.Stream.TCB] = marks["tcb"] + 1
    if marks:
        log.info("%s: boot %d resumes after %s", device_id, boot, marks)
    return marks
