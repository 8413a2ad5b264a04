"""`Recordings`: the sessions, schedules and reports of every fetal monitor on a running gateway.

It publishes each finished session (and each missed one) to
`{prefix}/{gw}/device/{device}/session` through the outbox, renders the session report PDF
(gateway/processing/report.py) in a worker thread, and checks delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dsp.arrays import Floats
from dsp.ctg_reference import POINT_S
from gateway.processing.recording.schedule import (
    MISSED_LOOKBACK_S,
    check_schedule,
    complete_starts,
    kept,
    missed_record,
    slots,
)
from gateway.processing.recording.store import SessionStore, unix_seconds
from gateway.processing.recording.tracker import Active, SessionTracker
from gateway.state.history import span
from gateway.state.settings import ctg_mode
from gateway.times import iso_time_or_none, parse_time

if TYPE_CHECKING:
    from gateway.processing.alerts import Publish
    from gateway.publish.outbox import Outbox
    from gateway.state.history import History

log = logging.getLogger(__name__)

TICK_S = 5.0  # sessions, missed slots and deliveries are checked this often

_reports = ThreadPoolExecutor(max_workers=1, thread_name_prefix="report")


class Recordings:
    """Sessions, schedules and reports of every fetal monitor on one gateway."""

    def __init__(self, data_dir: Path, outbox: Outbox, history: History,
                 publish: Publish, hospital: str = "") -> None:  # fmt: skip
        self.outbox = outbox  # delivery of each session is checked against it
        self.hospital = hospital  # at the head of each report ([web] hospital)
        self.history = history  # the maternal rate drawn in reports, as published
        self.publish = publish
        self.store = SessionStore(data_dir / "sessions.sqlite")
        self.report_dir = data_dir / "reports"
        self.trackers: dict[str, SessionTracker] = {}
        self.on_session_complete: Callable[[str, dict[str, Any]], None] | None = None  # feedback
        self._task: asyncio.Task[None] | None = None
        self.pending_reports: set[str] = set()
        self._saved: dict[str, dict[str, Any]] = {}  # progress as last stored, per device

    def tracker(self, device_id: str) -> SessionTracker:
        t = self.trackers.get(device_id)
        if t is None:

            def prescribed_min() -> float | None:
                minutes: float | None = (self.store.schedule(device_id) or {}).get("duration_min")
                return minutes

            t = self.trackers[device_id] = SessionTracker(device_id, prescribed_min)
            t.on_end = self._ended
            t.on_complete = lambda rec: self._complete(device_id, rec)
        return t

    def set_schedule(self, device_id: str, cmd: dict[str, Any] | None) -> dict[str, Any] | None:
        """Check and keep the hospital's `set_schedule` for a device (None clears it); the
        stored schedule, or ValueError naming what is wrong."""
        schedule = None if cmd is None else check_schedule(cmd)
        self.store.set_schedule(device_id, schedule)
        return schedule

    def start(self) -> None:
        """Resume the sessions a killed gateway left in progress, then tick sessions, missed
        slots and delivery checks on the running loop until `stop`."""
        if self._task is None:
            self.resume()
            self._task = asyncio.get_running_loop().create_task(self._ticker())

    def resume(self) -> None:
        """After a kill or a crash (a clean stop ends every session), each session in progress
        goes on where it was: who it is (device, boot, first point, start) is stored at every
        tick while it lasts, its points are the FHR trace the history holds, as published. A
        session whose monitor does not come back ends as if the gateway had run on: link lost
        (LINK_LOST_S after its last point), with its record and report."""
        for device, saved in self.store.progress().items():
            t = self.tracker(device)
            known = self.history.devices.get(device)
            if known is not None:  # as last published: the probe on the skin, the last point
                t.on_skin = (known.status or {}).get("on_skin")
                if "fhr" in known.last:
                    t.last_fed = span("fhr", known.last["fhr"])[1]
            t.resting_boot = saved.get("resting_boot")
            if saved.get("active") is not None:
                t.active = self._rebuilt(device, saved["active"])
                t.last_fed = max(t.last_fed, t.active.last_fed)
                log.info("%s: session %s resumes at %.1f min", device, t.active.session_id,
                         t.active.recorded_s / 60)  # fmt: skip
            self._saved[device] = saved

    def _rebuilt(self, device: str, saved: dict[str, Any]) -> Active:
        a = Active(device, saved["boot"], saved["first_point"], saved["start"],
                   saved["prescribed_s"], next_point=saved["first_point"])  # fmt: skip
        for m in self.history.messages(device, "fhr", a.start - 60.0, float("inf")):
            if m.get("boot") != a.boot or m["seq"] < a.next_point:
                continue
            if m["seq"] > a.next_point:  # points never published (lost): gaps, as when fed
                a.fhr.extend([math.nan] * (m["seq"] - a.next_point))
                a.quality.extend([0.0] * (m["seq"] - a.next_point))
            a.fhr.extend(math.nan if v is None else float(v) for v in m["fhr_bpm"])
            a.quality.extend(float(q) for q in m["quality"])
            a.next_point = m["seq"] + len(m["fhr_bpm"])
            a.end = a.last_fed = span("fhr", m)[1]
        return a

    def _save_progress(self) -> None:
        """Store what `resume` needs of each session in progress, when it changed."""
        for device, t in list(self.trackers.items()):
            a = t.active
            progress = {
                "active": None if a is None else {
                    "boot": a.boot, "first_point": a.first_point, "start": a.start,
                    "prescribed_s": a.prescribed_s},
                "resting_boot": t.resting_boot,
            }  # fmt: skip
            if progress == self._saved.get(device, {"active": None, "resting_boot": None}):
                continue
            idle = a is None and t.resting_boot is None
            self.store.set_progress(device, None if idle else progress)
            self._saved[device] = progress

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
        self._save_progress()
        self.check_missed(now)
        self.check_delivered()

    def _complete(self, device_id: str, rec: dict[str, Any]) -> None:
        log.info("%s: session %s complete", device_id, rec["session_id"])
        if self.on_session_complete is not None:
            self.on_session_complete(device_id, rec)

    def _drops(self) -> int:
        s = self.outbox.stats()
        # a message the hospital rejected left the outbox undelivered too (docs/mqtt.md, Receipts)
        drops = s["dropped_trace"] + s["dropped_status"] + s["dropped_readings"] + s["rejected"]
        return int(drops)

    def _ended(self, rec: dict[str, Any], active: Active) -> None:
        drops = self._drops()
        self.publish(("device", rec["device_id"], "session"), rec)
        self.store.add(rec, end_row=self.outbox.last_id(), drops=drops)
        log.info("%s: session %s %s (%s), %.1f min, %.1f min with signal", rec["device_id"],
                 rec["session_id"], rec["status"], rec["end_reason"], rec["recorded_min"],
                 rec["good_signal_min"])  # fmt: skip
        mhr = self._mhr(active)
        self.pending_reports.add(rec["session_id"])
        _reports.submit(self._render, rec, np.array(active.fhr), np.array(active.quality), mhr,
                        self._alerts(active), self._movements(active))  # fmt: skip

    def _alerts(self, a: Active) -> list[tuple[float, str]]:
        """(time, kind) of the alerts the device raised during the session: marks on its
        report's strip (read here, on the loop, where the history is written)."""
        out = []
        for rec in list(self.history.alerts.values()):
            raised = parse_time(rec.get("raised_at"))
            if rec.get("device_id") == a.device_id and raised is not None:
                if a.start <= raised <= a.end:
                    out.append((raised, str(rec.get("alert", "alert")).replace("_", " ")))
        return sorted(out)

    def _movements(self, a: Active) -> list[float]:
        """When the mother marked a fetal movement during the session (from the history)."""
        msgs = self.history.messages(a.device_id, "movement", a.start, a.end)
        return sorted(t for m in msgs if (t := parse_time(m.get("t"))) is not None)

    def _mhr(self, a: Active) -> Floats | None:
        """The maternal rate on the session's point grid, from what the gateway published
        (read from the history; a minute either side of the session's wall-clock span, then
        placed by point number)."""
        msgs = self.history.messages(a.device_id, "mhr", a.start - 60.0, a.end + 60.0)
        if not msgs:
            return None
        out = np.full(len(a.fhr), np.nan)
        for m in msgs:
            if m.get("boot") != a.boot:
                continue
            for i, v in enumerate(m.get("mhr_bpm", [])):
                k = m["seq"] + i - a.first_point
                if 0 <= k < len(out) and v is not None:
                    out[k] = v
        return out if np.isfinite(out).any() else None

    def _render(self, rec: dict[str, Any], fhr: Floats, quality: Floats, mhr: Floats | None,
                alerts: list[tuple[float, str]], movements: list[float]) -> None:  # fmt: skip
        from dsp.ctg import analyse_ctg
        from dsp.dawes_redman import dawes_redman
        from gateway.processing.report import (
            MOVEMENT,
            ReportMark,
            SessionReport,
            gestation_at,
            render_session_report,
        )

        try:
            t_s = (np.arange(len(fhr)) + 1) * POINT_S
            findings = analyse_ctg(t_s, fhr).to_dict()
            antenatal = dawes_redman(t_s, fhr).to_dict()  # from the session's start
            settings = self.history.settings.get(rec["device_id"])
            mode = ctg_mode(settings)
            ga = gestation_at(self.store.schedule(rec["device_id"]), unix_seconds(rec["start"]))
            report = SessionReport(rec["session_id"], rec["device_id"], rec["start"], rec["end"],
                                   fhr, quality, mhr, findings, rec["prescribed_min"],
                                   antenatal, mode, hospital=self.hospital,
                                   bed_label=settings.get("label") or "",
                                   gestation=ga,
                                   marks=(*(ReportMark(t, k) for t, k in alerts),
                                          *(ReportMark(t, "", MOVEMENT) for t in movements)))  # fmt: skip
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
        name: str | None = None if rec is None else rec.get("report")
        if not name:
            return None
        try:
            return (self.report_dir / name).read_bytes()
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
            set_at = unix_seconds(schedule["set_at"])
            since = max(set_at, now - MISSED_LOOKBACK_S)
            done = self._kept(device, since - 86400.0)
            for slot in slots(schedule, since, now):
                if slot.closes > now or slot.due < set_at:
                    continue
                if kept(slot, done):
                    continue
                rec = missed_record(device, slot, schedule, now)
                if self.store.add(rec, end_row=0, drops=self._drops()):
                    self.publish(("device", device, "session"), rec)
                    log.warning("%s: prescribed session due %s was missed", device, rec["due"])

    def _kept(self, device: str, since: float) -> list[float]:
        """Start times of complete sessions (those that keep a slot)."""
        return complete_starts(self.store.sessions(device, 500), since)

    def plan(self, device: str, now: float | None = None) -> dict[str, Any]:
        """For the mother's page: the schedule, the next slot, and a reminder if any."""
        now = time.time() if now is None else now
        schedule = self.store.schedule(device)
        if schedule is None:
            return {"schedule": None, "next_due": None, "reminder": None}
        done = self._kept(device, now - 2 * 86400.0)
        reminder = None
        next_due = None
        for slot in slots(schedule, now - 86400.0, now + 8 * 86400.0):
            if kept(slot, done):
                continue
            if slot.due <= now < slot.closes:
                reminder = {"kind": "due", "due": iso_time_or_none(slot.due)}
            elif slot.closes <= now and slot.due >= unix_seconds(schedule["set_at"]):
                reminder = reminder or {"kind": "missed", "due": iso_time_or_none(slot.due)}
            if slot.due > now and next_due is None:
                next_due = iso_time_or_none(slot.due)
        public = {k: schedule[k] for k in ("sessions_per_day", "sessions_per_week",
                                           "duration_min", "times", "starts_on") if k in schedule}  # fmt: skip
        return {"schedule": public, "next_due": next_due, "reminder": reminder}

    def stop_ticking(self) -> None:
        """On the loop, before `stop` runs off it: no tick ends a session beside the stop."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def stop(self, wait_s: float = 15.0) -> None:
        """The gateway stops: sessions being recorded end, their reports are written."""
        for t in list(self.trackers.values()):
            t.end("gateway_stopped")
        self._save_progress()
        deadline = time.monotonic() + wait_s
        while self.pending_reports and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._task is not None:  # stop() runs off the loop (app.py): the cancel is the loop's
            with contextlib.suppress(RuntimeError):  # (a loop already closed: nothing to cancel)
                self._task.get_loop().call_soon_threadsafe(self._task.cancel)
            self._task = None
