"""The jaundice meter's processing on the gateway: raw counts in, a TcB reading (or a flagged
non-reading, with its reason) and the clinical assessment out, with an alert raised (and
cleared) for each guideline condition: at/above the exchange or phototherapy threshold,
within 2 mg/dL of exchange (escalation of care), serum bilirubin advised, rapid rise.

Counts become reflectance with the device's factory calibration (from its device info), checked
against its start-up self-check and carried to the nominal LED bands (dsp/tcb_counts.py,
calibrated_reflectance: a unit without a per-unit calibration or that has drifted gives
`needs_calibration`, never a number; a press on the check phantom is the weekly check), then
bilirubin with the shipped estimator. The factory's estimate of how far the unit's band
correction may leave it off (dsp/tcb_unit.py) is shown in the device status, never used to
withhold a reading: it is not validated (docs/jaundice.md, Limits). The assessment needs the
baby's age and gestation, which the nurse or hospital sets per device (never sent to MQTT as
identifiers); a reading that has a number but cannot be assessed says why (`assessment_error`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dsp.bilirubin_units import (
    MG_DL,
    MG_DL_TO_UMOL_L,
    UMOL_L,
    format_bilirubin,
    threshold_phrase,
)
from dsp.bilirubin_zones import (
    ESCALATION_BELOW_EXCHANGE_MG_DL,
    RAPID_RISE_FIRST_DAY_MG_DL_PER_H,
    RAPID_RISE_LATER_MG_DL_PER_H,
    BilirubinAssessment,
    assess_bilirubin,
)
from dsp.tcb import estimate_tcb
from dsp.tcb_counts import NEEDS_CALIBRATION, CalibratedReading, calibrated_reflectance
from dsp.tcb_unit import unit_correction_uncertainty, unit_from_calibration
from gateway import protocol as p
from gateway.processing.alerts import AlertTracker, Publish
from gateway.processing.fhir import publish_tcb_observations
from gateway.state.settings import escalates
from gateway.times import iso_time, parse_time

if TYPE_CHECKING:
    from gateway.device.session import DeviceSession

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 7 * 24 * 3600.0  # the check phantom, weekly (docs/jaundice.md, "Self-check")
ASSESSED_WITH = ("birth_time", "ga_weeks", "risk_factors")  # the baby's details it reads
AGE_SAME_H = 0.05  # the same age: older gateways published ages rounded to 0.1 h
# A reading that arrives before the meter's device info (its factory calibration) waits for it
# this long: after a reconnection both are in flight, on separate streams, and under load the
# info can come second. Then the reading is published flagged `no_calibration`.
INFO_WAIT_S = 60.0
MAX_WAITING = 64  # readings held for the info; beyond this the oldest is published flagged
FLUSH_WAIT_S = 10.0  # at stop, for the band corrections still running (0.1-0.2 s each)


# the flags of a record given before its counts reach the calibration (_reading)
_BEFORE_CALIBRATION = ("malformed_record", "no_calibration", "bad_calibration")
# a press's decoded counts and the factory calibration they were carried with
_Press = tuple[p.TcbCounts, dict[str, Any]]
# (its band correction, the reading, its unix time, its press; None: flagged before one)
_InFlight = tuple["Future[CalibratedReading | None]", dict[str, Any], float, _Press | None]


class JaundiceProcessor:
    def __init__(self, session: DeviceSession, publish: Publish, baby: dict[str, Any],
                 gateway_id: str = "") -> None:  # fmt: skip
        self.session = session
        self.gateway_id = gateway_id  # FHIR Observations name the gateway as their device
        self.publish = publish
        self.baby = baby  # birth_time, ga_weeks, risk_factors (from the gateway's config)
        self.alerts = AlertTracker(session.state.device_id, publish)
        # (unix time, tcb_mg_dl) of every reading with a number: ages are worked out from the
        # birth time as set now, so a corrected birth time corrects the rate of rise too
        self.previous: list[tuple[float, float]] = []
        self.last_reading: dict[str, Any] | None = None
        self._assess_error = ""  # logged once per distinct reason
        self.last_check: dict[str, Any] | None = None  # the latest press on the check phantom
        self._latest_at = 0.0  # unix time of the latest reading
        self._uncertainty_said = ""  # the latest above-the-limit estimate logged
        # TCB records (monotonic arrival, seq, t_ms, payload) waiting for the device info
        self._waiting: list[tuple[float, int, int, bytes]] = []
        # readings in arrival order, each with its band correction (done or on the worker)
        self._in_flight: deque[_InFlight] = deque()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"tcb-{self.device_id}")

    @property
    def device_id(self) -> str:
        return self.session.state.device_id

    def on_boot(self, boot: int) -> None:
        pass

    def restore(self, published: list[dict[str, Any]], status: dict[str, Any] | None) -> None:
        """Carry on from what this gateway published for the meter before it restarted (its
        history): the readings with numbers, so the next reading's rate of rise (and its rapid
        rise alert) still compares with the one before the restart, and the latest weekly check
        (a press on the check phantom, or else the last status's `tcb_check`), so a check that
        passed is not due again, and one that failed still withholds numbers."""
        for r in in_time_order(published):
            at, tcb = parse_time(r.get("t")), r.get("tcb_mg_dl")
            if at is None:
                continue
            if isinstance(tcb, int | float) and not r.get("flag") and math.isfinite(tcb):
                self.previous.append((at, float(tcb)))
            if isinstance(r.get("check"), dict):
                self.last_check = {**r["check"], "t": r["t"], "at": at}
            self.last_reading = r
            if not str(r.get("flag", "")).startswith(_BEFORE_CALIBRATION):
                self._latest_at = max(self._latest_at, at)  # as _finish sets it
        shown = (status or {}).get("tcb_check")
        when = parse_time(shown.get("t")) if isinstance(shown, dict) else None
        if isinstance(shown, dict) and when is not None:
            if self.last_check is None or when > self.last_check["at"]:
                self.last_check = {"t": shown["t"], "at": when, "passed": bool(shown.get("passed")),
                                   "max_deviation": shown.get("max_deviation")}  # fmt: skip

    def resume(self, marks: dict[str, int], recent: dict[str, list[dict[str, Any]]]) -> None:
        pass  # the session resumes its TcB records from the outbox's mark; nothing held here

    def flush(self) -> None:
        """The gateway stops: the readings still on the worker are finished and published.
        One not done within FLUSH_WAIT_S is left: it never reached the outbox, so the meter
        resends it to the next gateway (docs/protocol.md, "Resend")."""
        wait([done for done, *_ in self._in_flight], timeout=FLUSH_WAIT_S)
        self._finish_ready()

    def apply_settings(self, settings: dict[str, Any], baby: dict[str, Any]) -> None:
        """A new birth time, gestation or risk factors re-assess the latest reading at once, so
        its alerts say what the corrected details mean (its message stays as published; the
        nurse view re-assesses every reading it shows: `readings_for_view`)."""
        changed = any(self.baby.get(k) != baby.get(k) for k in ASSESSED_WITH)
        self.baby = baby
        self.alerts.escalate = escalates(settings)
        if changed and self.previous:
            at, tcb = self.previous[-1]
            try:
                a = assess_at(tcb, at, baby, self.previous[:-1])
            except (TypeError, ValueError) as exc:
                log.warning("%s: no TcB assessment: %s", self.device_id, exc)
                return
            if a is not None:
                self._set_alerts(a)

    def on_samples(self, stream: int, seq: int, t_ms: int, samples: NDArray[np.int16]) -> None:
        pass

    def on_lost(self, stream: int, seq: int, count: int) -> None:
        pass

    def tick(self, now: float) -> None:
        """Readings that waited INFO_WAIT_S for the device info are published flagged."""
        while self._waiting and now - self._waiting[0][0] >= INFO_WAIT_S:
            _, seq, t_ms, payload = self._waiting.pop(0)
            self._reading(seq, t_ms, payload)

    def on_record(self, stream: int, seq: int, t_ms: int, payload: bytes) -> None:
        if stream == p.Stream.INFO:  # the calibration is here: what waited for it goes first
            waiting, self._waiting = self._waiting, []
            for _, w_seq, w_t_ms, w_payload in waiting:
                self._reading(w_seq, w_t_ms, w_payload)
            return
        if stream != p.Stream.TCB:
            return
        if not self.session.state.info:  # no device info yet this run: wait for it
            self._waiting.append((time.monotonic(), seq, t_ms, payload))
            if len(self._waiting) > MAX_WAITING:
                _, seq, t_ms, payload = self._waiting.pop(0)
                self._reading(seq, t_ms, payload)
            return
        self._reading(seq, t_ms, payload)

    def _reading(self, seq: int, t_ms: int, payload: bytes) -> None:
        """One TCB record: flagged at once when it cannot be read, else carried to reflectance
        at the nominal bands (`calibrated_reflectance`, the band correction's fit: 0.1-0.2 s of
        CPU, more on a Raspberry Pi) on the processor's worker thread, so the event loop goes on
        serving the other devices; readings are finished and published in arrival order."""
        st = self.session.state
        at = self.session.unix_time(t_ms)
        reading: dict[str, Any] = {
            "msg_id": f"{self.device_id}:{st.boot}:tcb:{seq}",
            "device_id": self.device_id,
            "boot": st.boot,
            "seq": seq,
            "t": iso_time(at),
            "t_device_ms": t_ms,
            "tcb_mg_dl": None,
            "tcb_umol_l": None,
            "ci_low_mg_dl": None,
            "ci_high_mg_dl": None,
            "flag": "",
            "assessment": None,
        }
        calibration = st.info.get("calibration")
        try:
            counts = p.decode_tcb(payload)
        except p.FrameError as exc:
            reading["flag"] = f"malformed_record: {exc}"
            self._queue(reading, at, None, None)
            return
        if not calibration:
            reading["flag"] = "no_calibration"
            self._queue(reading, at, None, None)
            return
        job = functools.partial(
            calibrated_reflectance,
            counts.dark_before,
            counts.dark_after,
            counts.flashes.tolist(),
            counts.temperature_c,
            counts.contact,
            calibration,
            counts.led_drive,
            st.info.get("self_check"),
        )
        self._queue(reading, at, (counts, calibration), job)

    def _queue(self, reading: dict[str, Any], at: float, press: _Press | None,
               job: Callable[[], CalibratedReading] | None) -> None:  # fmt: skip
        """Run `job` on the worker (at once without an event loop, as in a script), then
        finish every reading whose turn has come: a quick one never overtakes a slow one."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        done: Future[CalibratedReading | None]
        if job is not None and loop is not None:
            done = self._worker.submit(job)
            done.add_done_callback(lambda _: self._wake(loop))
        else:
            done = Future()
            try:
                done.set_result(job() if job is not None else None)
            except Exception as exc:  # raised again where it is finished
                done.set_exception(exc)
        self._in_flight.append((done, reading, at, press))
        self._finish_ready()

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """From the worker: a correction is done, the loop publishes what is ready."""
        try:
            loop.call_soon_threadsafe(self._finish_ready)
        except RuntimeError:  # the loop has closed: flush() or the device's resend finishes it
            pass

    def _finish_ready(self) -> None:
        """Publish every reading at the head of the queue whose band correction is done. One
        reading's fault is logged and never holds up those behind it."""
        while self._in_flight and self._in_flight[0][0].done():
            done, reading, at, press = self._in_flight.popleft()
            try:
                self._finish(reading, at, press, done)
            except Exception:
                log.exception("%s: TcB reading %s failed", self.device_id, reading["seq"])
                if reading["tcb_mg_dl"] is None:  # a number found stays; an alert may be lost
                    reading["flag"] = reading["flag"] or "processing_error"
            try:
                self._emit(reading)
            except Exception:
                log.exception("%s: TcB reading %s not published", self.device_id, reading["seq"])

    def _finish(self, reading: dict[str, Any], at: float, press: _Press | None,
                done: Future[CalibratedReading | None]) -> None:  # fmt: skip
        """Fill in `reading` (its number and assessment, or the flag that withholds one) and
        raise or clear its alerts; _finish_ready publishes it."""
        if press is None:  # flagged before any calibration
            return
        counts, calibration = press
        try:
            cal_reading = done.result()
        except (ValueError, KeyError, TypeError) as exc:
            reading["flag"] = f"bad_calibration: {exc}"
            return
        assert cal_reading is not None
        near, far, flag = cal_reading.near, cal_reading.far, cal_reading.flag
        self._latest_at = at
        if cal_reading.check is not None:  # a press on the check phantom: the weekly check
            reading["check"] = cal_reading.check
            self.last_check = {"t": reading["t"], "at": at, **cal_reading.check}
        elif not flag and self.last_check is not None and not self.last_check["passed"]:
            flag = NEEDS_CALIBRATION  # the last weekly check failed: no number until one passes
        if not flag:
            self._note_uncertainty(calibration)
        device_flags = [
            name
            for name, bit in (
                ("no_contact", not counts.contact),
                ("ambient_light", counts.ambient_high),
                ("saturated", counts.saturated),
                ("flashes_disagree", counts.flashes_disagree),
            )
            if bit
        ]
        flag = flag or ",".join(device_flags)
        if flag:
            reading["flag"] = flag
            return
        est = estimate_tcb(near, far)
        reading["flag"] = est.flag
        tcb, ci_low, ci_high = est.tcb_mg_dl, est.ci_low_mg_dl, est.ci_high_mg_dl
        if est.flag or tcb is None or ci_low is None or ci_high is None or not math.isfinite(tcb):
            reading["flag"] = est.flag or "no_estimate"
            return
        reading.update(
            tcb_mg_dl=round(tcb, 2),
            tcb_umol_l=round(tcb * MG_DL_TO_UMOL_L, 1),
            ci_low_mg_dl=round(ci_low, 2),
            ci_high_mg_dl=round(ci_high, 2),
        )
        try:
            a = assess_at(tcb, at, self.baby, self.previous)
        except (TypeError, ValueError) as exc:  # e.g. a gestation below 35 weeks, an earlier time
            a = None
            reading["assessment_error"] = str(exc)
            if str(exc) != self._assess_error:
                log.warning("%s: no TcB assessment: %s", self.device_id, exc)
                self._assess_error = str(exc)
        else:
            self._assess_error = ""
        self.previous.append((at, tcb))  # the next reading's rate of rise, whatever comes next
        if a is not None:
            reading["assessment"] = a.to_dict()
            self._set_alerts(a)

    def _note_uncertainty(self, calibration: dict[str, Any]) -> None:
        """Log once when the band correction's estimated uncertainty (the factory's, or for a
        calibration made before the factory estimated it, the gateway's own) is above the limit.
        Information only: readings stay numbers (docs/jaundice.md, Limits)."""
        unit = unit_from_calibration(calibration)  # parsed already by calibrated_reflectance
        if unit is None:
            return
        found = unit_correction_uncertainty(unit)
        if not found.accepted and self._uncertainty_said != found.message():
            self._uncertainty_said = found.message()
            log.warning(
                "%s: %s (estimated, not validated on an independent skin model; readings are "
                "not withheld for it)",
                self.device_id,
                found.message(),
            )

    def _set_alerts(self, a: BilirubinAssessment) -> None:
        """Raise (or clear) one alert per guideline condition of the latest usable reading.

        Its text gives every amount in both units, with the unit: alerts go to the hospital
        and to wards reading either."""
        tcb = amount(a.tcb_mg_dl)
        rise = a.rate_of_rise_mg_dl_per_h or 0.0
        limit = (
            RAPID_RISE_FIRST_DAY_MG_DL_PER_H if a.age_hours <= 24 else RAPID_RISE_LATER_MG_DL_PER_H
        )
        rapid = a.rate_of_rise_mg_dl_per_h is not None and rise >= limit
        rate = f"{rise:.2f} mg/dL/h ({rise * MG_DL_TO_UMOL_L:.1f} µmol/L/h)"
        for kind, active, detail, severity in (
            ("tcb_above_exchange", a.above_exchange,
             f"TcB {tcb} is at or above the AAP 2022 exchange-transfusion threshold "
             f"({amount(a.exchange_threshold_mg_dl)}): urgent serum bilirubin", "high"),
            ("tcb_escalation_of_care", a.escalation_of_care and not a.above_exchange,
             f"TcB {tcb} is within {amount(ESCALATION_BELOW_EXCHANGE_MG_DL)} of the exchange "
             f"threshold ({amount(a.exchange_threshold_mg_dl)}): escalation of care", "high"),
            ("tcb_above_phototherapy", a.above_phototherapy,
             f"TcB {tcb} is at or above the AAP 2022 phototherapy threshold "
             f"({amount(a.phototherapy_threshold_mg_dl)})", "high"),
            ("serum_bilirubin_advised", a.serum_test_advised,
             f"TcB {tcb}: confirm with a serum bilirubin", "medium"),
            ("tcb_rapid_rise", rapid,
             f"TcB rising {rate} (limit {limit} mg/dL/h): consider haemolysis", "medium"),
        ):  # fmt: skip
            self.alerts.set(kind, active, detail, severity)

    def _emit(self, reading: dict[str, Any]) -> None:
        self.last_reading = reading
        self.publish(("device", self.device_id, "tcb"), reading)
        publish_tcb_observations(self, reading)

    def status_fields(self) -> dict[str, Any]:
        last = self.last_reading
        check = self.last_check
        shown = None if check is None else {k: check[k] for k in ("t", "passed", "max_deviation")}
        return {
            # a meter touches skin only while pressed: its contact switch between presses is
            # the probe at rest, not a fault; each reading's flag says whether its press had
            # contact (no_contact)
            "on_skin": None,
            "last_tcb_mg_dl": last["tcb_mg_dl"] if last else None,
            "alerts": self.alerts.active(),
            "tcb_check": shown,
            "tcb_check_due": check is None or self._latest_at - check["at"] > CHECK_INTERVAL_S,
            "tcb_correction_uncertainty_mg_dl": self._stored_uncertainty(),
        }

    def _stored_uncertainty(self) -> float | None:
        """The factory's estimate of the unit's band-correction uncertainty (mg/dL), as stored
        in its calibration; None without one. Information for the status: nothing depends on
        it (docs/jaundice.md, Limits)."""
        calibration = self.session.state.info.get("calibration")
        try:
            unit = unit_from_calibration(calibration) if isinstance(calibration, dict) else None
        except ValueError:
            return None  # its readings are flagged bad_calibration, which says why
        return None if unit is None else unit.correction_uncertainty_mg_dl


def amount(mg_dl: float) -> str:
    """An amount in both units, "14.7 mg/dL (251 µmol/L)": for text that goes everywhere."""
    return f"{format_bilirubin(mg_dl, MG_DL)} ({format_bilirubin(mg_dl, UMOL_L)})"


def assess_at(
    tcb_mg_dl: float,
    at: float,
    baby: dict[str, Any],
    earlier: list[tuple[float, float]],
    unit: str = MG_DL,
) -> BilirubinAssessment | None:
    """A reading taken at unix time `at`, assessed for `baby` (birth_time, ga_weeks,
    risk_factors) with `earlier` readings as (unix time, tcb_mg_dl) for the rate of rise.

    None while the birth time or gestation is unset (the nurse view asks for them); ValueError
    saying why when they are set but the reading cannot be assessed: a birth time that is not an
    ISO 8601 time with a time zone, a reading taken before the birth time, a gestation outside
    the guideline's 35-45 weeks.
    """
    birth_time, ga = baby.get("birth_time"), baby.get("ga_weeks")
    if not birth_time or ga is None:
        return None  # not set yet: the nurse view asks for them
    born = parse_time(str(birth_time))
    if born is None:
        raise ValueError(f"birth_time: not an ISO 8601 time with a time zone: {birth_time!r}")
    if at < born:
        raise ValueError(f"taken before the birth time ({iso_time(born)})")
    previous = [((t - born) / 3600.0, v) for t, v in earlier if born <= t < at]
    risk = bool(baby.get("risk_factors", False))
    return assess_bilirubin(tcb_mg_dl, (at - born) / 3600.0, float(ga), risk, previous, unit)


def _assessed_differently(published: dict[str, Any] | None, now: dict[str, Any] | None) -> bool:
    """Whether a reading's assessment as published was made with other baby details than now
    (another birth time moves its age; gestation and risk factors move its thresholds)."""
    if published is None:
        return False
    if now is None:
        return True
    return (
        abs(float(published.get("age_hours", -1.0)) - float(now["age_hours"])) > AGE_SAME_H
        or published.get("ga_weeks") != now["ga_weeks"]
        or bool(published.get("risk_factors")) != now["risk_factors"]
    )


def in_time_order(readings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Published TcB readings once per msg_id (one the device resent after a restart is the
    same reading; the last copy kept), in time order (no time: first)."""
    unique = {str(r.get("msg_id", id(r))): r for r in readings}
    return sorted(unique.values(), key=lambda r: parse_time(r.get("t")) or 0.0)


def readings_for_view(
    readings: list[dict[str, Any]], baby: dict[str, Any], unit: str
) -> list[dict[str, Any]]:
    """The TcB readings the gateway published, as the nurse view shows them.

    One per msg_id (a reading the device resent after a restart is the same reading, never a
    second point), in time order, each assessed anew for the baby's details as set now: a
    corrected birth time or gestation moves every past reading, and a reading whose published
    assessment was made with other details says so (`reassessed`, with what was published in
    `published_assessment`). `shown` holds each amount as the ward reads it (`unit`, every
    amount with its unit; dsp/bilirubin_units.py); `next_from`/`next_by` the AAP 2022 follow-up
    as clock times (dsp/bilirubin_followup.py)."""
    earlier: list[tuple[float, float]] = []
    out = []
    for r in in_time_order(readings):
        view = dict(r)
        view["assessment"] = None
        view.pop("assessment_error", None)  # as published: assessed anew below
        tcb, at = r.get("tcb_mg_dl"), parse_time(r.get("t"))
        if isinstance(tcb, int | float) and not r.get("flag") and at is not None:
            try:
                a = assess_at(float(tcb), at, baby, earlier, unit)
            except (TypeError, ValueError) as exc:
                view["assessment_error"] = str(exc)
                a = None
            earlier.append((at, float(tcb)))
            view["shown"] = _shown(r, a, at, unit)
            if a is not None:
                view["assessment"] = a.to_dict()
        published = r.get("assessment")
        view["reassessed"] = _assessed_differently(published, view["assessment"])
        if view["reassessed"]:
            view["published_assessment"] = published
        out.append(view)
    return out


def _shown(
    r: dict[str, Any], a: BilirubinAssessment | None, at: float, unit: str
) -> dict[str, Any]:
    """A reading's amounts in the ward's unit, and where it stands against the lines."""
    tcb = float(r["tcb_mg_dl"])
    shown: dict[str, Any] = {"tcb": format_bilirubin(tcb, unit)}
    lo, hi = r.get("ci_low_mg_dl"), r.get("ci_high_mg_dl")
    if isinstance(lo, int | float) and isinstance(hi, int | float):
        shown["ci"] = f"{format_bilirubin(lo, unit).split(' ')[0]}–{format_bilirubin(hi, unit)}"
    if a is None:
        return shown
    photo, exchange = a.phototherapy_threshold_mg_dl, a.exchange_threshold_mg_dl
    follow = a.follow_up
    earliest, latest = follow.get("earliest_h"), follow.get("latest_h")
    shown.update(
        phototherapy=threshold_phrase(tcb, photo, "phototherapy", unit),
        phototherapy_line=format_bilirubin(photo, unit),
        exchange=threshold_phrase(tcb, exchange, "exchange", unit),
        exchange_line=format_bilirubin(exchange, unit),
        next_from=iso_time(at + float(earliest) * 3600) if isinstance(earliest, float) else None,
        next_by=iso_time(at + float(latest) * 3600) if isinstance(latest, float) else None,
    )
    return shown
