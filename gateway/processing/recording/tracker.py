"""`SessionTracker`: one device's recording sessions as a pure state machine.

Fed once per FHR batch by the fetal processor (`feed`) and ticked by the clock (`tick`); time
is always passed in. A session starts when the probe is on the skin and FHR points with a rate
flow; it ends when the probe has been off the skin for `OFF_SKIN_GRACE_S`, when no points
arrived for `LINK_LOST_S`, when the device restarts, or when the prescribed duration is reached.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
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

    def progress(self) -> dict[str, Any] | None:
        a = self.active
        if a is None:
            return None
        return {"session_id": a.session_id, "start": iso_time_or_none(a.start),
                "recorded_min": round(a.recorded_s / 60, 1), "good_signal_min": round(a.good_s / 60, 1),
                "prescribed_min": a.prescribed_s / 60 if a.prescribed_s else None,
                "signal": "off_skin" if self.on_skin is False else a.signal()}  # fmt: skip


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
        "prescribed_min": prescribed,
        "t": iso_time_or_none(now),
    }
