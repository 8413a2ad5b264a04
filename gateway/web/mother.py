"""The mother's page: phone-sized, served by the gateway at home (docs/home.md).

It shows today's recording (minutes with the baby's heart rate so far, of the prescribed
minutes; whether the heart is being picked up or the probe should be moved a little), whether
today's prescribed sessions are done, the next prescribed session, a plain history (recorded,
sent to the hospital: yes/no) and the hospital's help line. It shows no heart rate, no CTG
finding and no alert: those are for clinicians. What the page does when it hears nothing from
the gateway (it says so after STALE_S, mother.js) is the page's own.

Access: a per-device link `/m/{token}` with a random token (24 bytes, `secrets`), created when
the nurse opens the device in the nurse view, which shows the link to give to the mother;
renewing it makes the old link stop working. Anyone holding the link sees what the page shows
(no names, no readings), so it is meant for the home network or the mother's own phone. The
nurse view shows the link, and as a QR code (`/api/devices/{device}/mother-link.svg`).

Its routes need no login and check the link themselves; they set their own headers (a stricter
CSP, no referrer: the token is in the address). An unknown link gets the same page with status
404: its script finds the link refused and says so in both languages. Also here: the nurse
view's session list, report download and the mother's link as a QR code (nurse login required).
"""

from __future__ import annotations

import io
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import segno
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.processing.recording.schedule import Slot, slots
from gateway.processing.recording.store import unix_seconds
from gateway.times import iso_time_or_none
from gateway.web.auth import nurse_only

if TYPE_CHECKING:
    from gateway.context import GatewayContext

MOTHER_STATIC = Path(__file__).resolve().parent / "static" / "mother"
_HISTORY = 14
# No FHR batch for this long: the page no longer says "signal good" (the fetal processor feeds
# a batch every second or so while the monitor streams; docs/home.md)
SIGNAL_STALE_S = 15.0
_QR_SCALE = 6  # pixels a module: about 200 px for a link, read by a phone held at arm's length
_QR_BORDER = 4  # modules of quiet zone, as the QR standard asks
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; img-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the address: never leak it
    "Cache-Control": "no-store",
}


def language(accept: str | None) -> str:
    """ "zh" or "en" from an Accept-Language header (highest q wins; English otherwise)."""
    best, best_q = "en", -1.0
    for part in (accept or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        tag = tag.strip().lower()
        lang = "zh" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        if lang and q > best_q:
            best, best_q = lang, q
    return best


def mother_state(
    gw: GatewayContext, device: str, lang: str, now: float | None = None
) -> dict[str, Any]:
    """Everything the mother's page shows, and nothing clinical.

    Minutes are minutes with a fetal heart rate (`heart_rate_min`: what she can do something
    about); `recorded_min` is the session's length as the session tracker counts it."""
    now = time.time() if now is None else now
    rec = gw.recordings
    tracker = rec.trackers.get(device)
    progress = tracker.progress() if tracker is not None else None
    session = gw.sessions.get(device)
    connected = session is not None and session.state.link == "connected"
    sessions = rec.store.sessions(device, _HISTORY)
    history = []
    for s in sessions:
        history.append({"start": s["start"], "due": s["due"], "status": s["status"],
                        "heart_rate_min": round(s["good_signal_min"]),
                        "delivered": s["delivered"]})  # fmt: skip
    recording = None
    if progress is not None and tracker is not None:
        signal = progress["signal"]
        if now - tracker.last_fed > SIGNAL_STALE_S:
            signal = "no_data"  # still a session (until LINK_LOST_S), but nothing is coming in
        recording = {"start": progress["start"], "heart_rate_min": progress["good_signal_min"],
                     "recorded_min": progress["recorded_min"],
                     "prescribed_min": progress["prescribed_min"], "signal": signal}  # fmt: skip
    plan = rec.plan(device, now)
    plan["reminder"] = mother_reminder(plan["reminder"], recording is not None, sessions)
    return {
        "lang": lang,
        "now": iso_time_or_none(now),
        "connected": connected,
        "recording": recording,
        "today": sessions_today(rec.store.schedule(device), sessions, now),
        "plan": plan,
        "history": history,
        "all_delivered": all(h["delivered"] for h in history if h["status"] != "missed"),
        "help_phone": gw.cfg.web.help_phone,
    }


def complete_starts(sessions: list[dict[str, Any]]) -> list[float]:
    return [unix_seconds(s["start"]) for s in sessions if s["status"] == "complete"]


def mother_reminder(
    reminder: dict[str, Any] | None, recording: bool, sessions: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The plan's reminder as the mother should see it: none while she is recording (the due
    session is the one she is recording), and no "not recorded, record one when you can" once
    she has recorded a complete session since that slot."""
    if reminder is None or recording:
        return None
    if reminder["kind"] == "missed":
        due = unix_seconds(reminder["due"])
        if any(t > due for t in complete_starts(sessions)):
            return None
    return reminder


def sessions_today(
    schedule: dict[str, Any] | None, sessions: list[dict[str, Any]], now: float
) -> dict[str, int] | None:
    """Today's prescribed sessions (slots due today, local time) and how many of them are done:
    kept by a complete session started in the slot's window, as the schedule counts a slot kept
    (gateway/processing/recording/schedule.py)."""
    if schedule is None:
        return None
    day = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = day.timestamp(), (day + timedelta(days=1)).timestamp()
    due: list[Slot] = [s for s in slots(schedule, start, end) if start <= s.due < end]
    done_starts = complete_starts(sessions)
    done = sum(1 for s in due if any(s.opens <= t < s.closes for t in done_starts))
    return {"prescribed": len(due), "done": done}


def mother_link_qr(link: str) -> bytes:
    """The mother's link as a QR code, SVG: what the nurse shows her to open on her phone."""
    qr = segno.make_qr(link, error="m")
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=_QR_SCALE, border=_QR_BORDER, xmldecl=False,
            title="QR code of the mother's page link", dark="#000", light="#fff")  # fmt: skip
    return out.getvalue()


def mother_routes(gw: GatewayContext) -> list[BaseRoute]:
    """Routes of the mother's page, plus the nurse view's sessions and reports."""

    def device_of(request: Request) -> str | None:
        return gw.recordings.store.device_for_token(request.path_params["token"])

    def known(device: str) -> bool:
        return (
            device in gw.sessions
            or device in gw.history.devices
            or (device in gw.history.settings.values)
        )

    def secured(resp: Response) -> Response:
        resp.headers.update(_HEADERS)
        return resp

    async def page(request: Request) -> Response:
        # an unknown link: the same page, whose script says so in both languages
        status = 404 if device_of(request) is None else 200
        return secured(FileResponse(MOTHER_STATIC / "mother.html", status_code=status))

    async def state(request: Request) -> Response:
        lang = request.query_params.get("lang")
        if lang not in ("zh", "en"):
            lang = language(request.headers.get("accept-language"))
        device = device_of(request)
        if device is None:  # the hospital's number is no secret: she may need it all the same
            refused = {"error": "unknown link", "lang": lang, "help_phone": gw.cfg.web.help_phone}
            return secured(JSONResponse(refused, status_code=404))
        return secured(JSONResponse(mother_state(gw, device, lang)))

    @nurse_only()
    async def nurse_sessions(request: Request) -> Response:
        dev = request.path_params["device"]
        rec = gw.recordings
        if not known(dev):
            return JSONResponse({"error": "unknown device"}, status_code=404)
        sessions = rec.store.sessions(dev, 50)
        for s in sessions:
            s["report_url"] = f"/api/sessions/{s['session_id']}/report.pdf" if s["report"] else None
        tracker = rec.trackers.get(dev)
        return JSONResponse({
            "sessions": sessions,
            "recording": tracker.progress() if tracker else None,
            "schedule": rec.store.schedule(dev),
            "mother_link": f"/m/{rec.store.mother_token(dev)}",
            "mother_link_qr": f"/api/devices/{quote(dev, safe='')}/mother-link.svg",
        })  # fmt: skip

    @nurse_only()
    async def mother_qr(request: Request) -> Response:
        """GET /api/devices/{device}/mother-link.svg (nurse login): the mother's page link of
        the device as a QR code (SVG, about 200 px), for the nurse view to show beside the link.
        The link is on the address the nurse's browser uses for the gateway, as the link shown
        as text is; creating it if the device has none yet."""
        dev = request.path_params["device"]
        if not known(dev):
            return JSONResponse({"error": "unknown device"}, status_code=404)
        link = f"{str(request.base_url).rstrip('/')}/m/{gw.recordings.store.mother_token(dev)}"
        resp = Response(mother_link_qr(link), media_type="image/svg+xml")
        resp.headers["Cache-Control"] = "no-store"  # it carries the link's token
        return resp

    @nurse_only()
    async def report(request: Request) -> Response:
        pdf = gw.recordings.report_pdf(request.path_params["session"])
        if pdf is None:
            return JSONResponse({"error": "no report"}, status_code=404)
        resp = Response(pdf, media_type="application/pdf")
        name = request.path_params["session"].replace(":", "_")
        resp.headers["Content-Disposition"] = f'inline; filename="session-{name}.pdf"'
        return resp

    return [
        Route("/m/{token}", page),
        Route("/m/{token}/state", state),
        Route("/api/devices/{device}/sessions", nurse_sessions),
        Route("/api/devices/{device}/mother-link.svg", mother_qr),
        Route("/api/sessions/{session}/report.pdf", report),
        Mount("/mother-static", StaticFiles(directory=MOTHER_STATIC), name="mother-static"),
    ]
