"""`SessionTracker`: one device's recording sessions as a pure state machine.

Fed once per FHR batch by the fetal processor (`feed`) and ticked by the clock (`tick`); time
is always passed in. A session starts when the probe is on the skin and FHR points with a rate
flow; it ends when the probe has been off the skin for `OFF_SKIN_GRACE_S`, when no points
arrived for `LINK_LOST_S`, when the device restarts, or when the prescribed duration is reached
in minutes with a heart rate (`heart_rate_minutes`: what the mother's page counts), so a
session with gaps records for longer than its prescription (docs/home.md, "Sessions"), or when
it has recorded `MAX_SESSION_FACTOR` times its prescription without reaching it (a probe left
on with a poor signal must not record for ever).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from dsp.ctg_reference import POINT_S
from gateway.times import iso_time_or_none

log = logging.getLogger(__name__)

LINK_LOST_S = 120.0  # no points for this long: the link is gone, the session ends
OFF_SKIN_GRACE_S = 20.0  # a probe lifted briefly to move it does not end the session
MIN_SESSION_S = 60.0  # shorter recordings are not kept as sessions (a probe touched and removed)
SIGNAL_WINDOW_POINTS = 40  # the last 10 s decide "signal good" or "move the probe a little"
SIGNAL_GOOD_SHARE = 0.5
POINTS_PER_MIN = round(60.0 / POINT_S)  # 240: a session's minutes, counted from its first point
# A minute of a session is a "minute with a heart rate" when more than half of its points carry
# a fetal rate (docs/home.md, "Sessions"); a minute not yet fully recorded does not count.
HEART_RATE_MINUTE_SHARE = 0.5
# A prescribed session that has recorded this many times its prescription without enough
# minutes with a heart rate ends (`time_limit`, status `short`): the signal is not getting
# better on its own, and the mother is told to stop rather than wait on.
MAX_SESSION_FACTOR = 2.0


def heart_rate_minutes(fhr: Sequence[float]) -> int:
    """Whole minutes of `fhr` (from its first point, NaN = no fetal rate) in which more than
    HEART_RATE_MINUTE_SHARE of the points have a rate. Pure; the trailing part-minute is left
    out (it is still being recorded, or the session ended during it)."""
    n = 0
    for k in range(len(fhr) // POINTS_PER_MIN):
        minute = fhr[k * POINTS_PER_MIN : (k + 1) * POINTS_PER_MIN]
        if sum(1 for v in minute if v == v) > HEART_RATE_MINUTE_SHARE * POINTS_PER_MIN:
            n += 1
    return n


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
    # heart_rate_minutes of fhr[:_counted_to], kept so that each batch counts only new minutes
    _counted: int = field(default=0, repr=False)
    _counted_to: int = field(default=0, repr=False)

    @property
    def session_id(self) -> str:
        return f"{self.device_id}:{self.boot}:{self.first_point}"

    @property
    def recorded_s(self) -> float:
        return len(self.fhr) * POINT_S

    @property
    def good_s(self) -> float:
        return sum(1 for v in self.fhr if v == v) * POINT_S

    @property
    def heart_rate_min(self) -> int:
        """Minutes with a heart rate so far (`heart_rate_minutes`)."""
        whole = len(self.fhr) // POINTS_PER_MIN * POINTS_PER_MIN
        if whole < self._counted_to:  # points were taken away: count again
            self._counted = self._counted_to = 0
        if whole > self._counted_to:
            self._counted += heart_rate_minutes(self.fhr[self._counted_to : whole])
            self._counted_to = whole
        return self._counted

    def minute_reaching(self, minutes: int) -> int | None:
        """The number of points up to the end of the minute in which the count of minutes
        with a heart rate reached `minutes`; None while it has not."""
        if self.heart_rate_min < minutes:
            return None
        n = 0
        for k in range(len(self.fhr) // POINTS_PER_MIN):
            n += heart_rate_minutes(self.fhr[k * POINTS_PER_MIN : (k + 1) * POINTS_PER_MIN])
            if n >= minutes:
                return (k + 1) * POINTS_PER_MIN
        return None  # not reached (unreachable: heart_rate_min counts the same minutes)

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

    def __init__(
        self, device_id: str, prescribed_min: Callable[[], float | None] = lambda: None
    ) -> None:
        self.device_id = device_id
        self.prescribed_min = prescribed_min
        self.active: Active | None = None
        self.on_skin: bool | None = None
        self.on_end: Callable[[dict[str, Any], Active], None] | None = None
        self.on_complete: Callable[[dict[str, Any]], None] | None = None
        # after a complete session, the next one starts only once the probe was taken off,
        # the device restarted or the link was gone: keeping the probe on records no more
        self.resting_boot: int | None = None
        self.last_fed = 0.0

    def feed(self, boot: int, first_point: int, fhr: ArrayLike, quality: ArrayLike,
             on_skin: bool | None, t_first: float, now: float | None = None) -> None:  # fmt: skip
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
        keep = None if a.prescribed_s is None else a.minute_reaching(prescribed_minutes(a))
        if keep is not None:
            # up to the end of the minute that fulfilled the prescription: later points belong
            # to no session
            del a.fhr[keep:], a.quality[keep:]
            a.end = a.start + keep * POINT_S
            self.resting_boot = boot
            self._end("duration_reached", now)
        elif a.prescribed_s is not None and a.recorded_s >= MAX_SESSION_FACTOR * a.prescribed_s:
            self.resting_boot = boot  # as after a complete one: the next starts afresh
            self._end("time_limit", now)
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

    def progress(self) -> dict[str, Any] | None:
        a = self.active
        if a is None:
            return None
        return {"session_id": a.session_id, "start": iso_time_or_none(a.start),
                "recorded_min": round(a.recorded_s / 60, 1), "good_signal_min": round(a.good_s / 60, 1),
                "heart_rate_min": a.heart_rate_min,
                "prescribed_min": a.prescribed_s / 60 if a.prescribed_s else None,
                "signal": "off_skin" if self.on_skin is False else a.signal()}  # fmt: skip


def prescribed_minutes(a: Active) -> int:
    """Minutes with a heart rate that complete the session: the prescription in whole minutes
    (a fraction asks for one more minute)."""
    return math.ceil((a.prescribed_s or 0.0) / 60.0 - 1e-9)


def session_record(a: Active, reason: str, now: float) -> dict[str, Any]:
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
        "heart_rate_min": a.heart_rate_min,
        "prescribed_min": prescribed,
        "t": iso_time_or_none(now),
    }
