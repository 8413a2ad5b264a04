"""The mother's page: phone-sized, served by the gateway at home (docs/home.md).

It shows today's recording (minutes so far of the prescribed minutes, whether the baby's heart
is being picked up or the probe should be moved a little), the next prescribed session, a plain
history (recorded, sent to the hospital: yes/no) and the hospital's help line. It shows no
heart rate, no CTG finding and no alert: those are for clinicians.

Access: a per-device link `/m/{token}` with a random token (24 bytes, `secrets`), created when
the nurse opens the device in the nurse view, which shows the link to give to the mother;
renewing it makes the old link stop working. Anyone holding the link sees what the page shows
(no names, no readings), so it is meant for the home network or the mother's own phone.

Its routes need no login and check the link themselves; they set their own headers (a stricter
CSP, no referrer: the token is in the address). Also here: the nurse view's session list and
report download (nurse login required).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.times import iso_time_or_none
from gateway.web.auth import nurse_only

if TYPE_CHECKING:
    from gateway.context import GatewayContext

MOTHER_STATIC = Path(__file__).resolve().parent / "static" / "mother"
_HISTORY = 14
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
    """Everything the mother's page shows, and nothing clinical."""
    now = time.time() if now is None else now
    rec = gw.recordings
    tracker = rec.trackers.get(device)
    progress = tracker.progress() if tracker is not None else None
    session = gw.sessions.get(device)
    connected = session is not None and session.state.link == "connected"
    history = []
    for s in rec.store.sessions(device, _HISTORY):
        history.append({"start": s["start"], "due": s["due"], "status": s["status"],
                        "recorded_min": round(s["recorded_min"]),
                        "delivered": s["delivered"]})  # fmt: skip
    if progress is not None:
        progress = {k: progress[k] for k in ("start", "recorded_min", "prescribed_min", "signal")}
    return {
        "lang": lang,
        "now": iso_time_or_none(now),
        "connected": connected,
        "recording": progress,
        "plan": rec.plan(device, now),
        "history": history,
        "all_delivered": all(h["delivered"] for h in history if h["status"] != "missed"),
        "help_phone": gw.cfg.web.help_phone,
    }


def mother_routes(gw: GatewayContext) -> list[BaseRoute]:
    """Routes of the mother's page, plus the nurse view's sessions and reports."""

    def device_of(request: Request) -> str | None:
        return gw.recordings.store.device_for_token(request.path_params["token"])

    def secured(resp: Response) -> Response:
        resp.headers.update(_HEADERS)
        return resp

    async def page(request: Request) -> Response:
        if device_of(request) is None:
            return secured(Response("This link is not valid. Ask the hospital for a new one.",
                                    status_code=404, media_type="text/plain"))  # fmt: skip
        return secured(FileResponse(MOTHER_STATIC / "mother.html"))

    async def state(request: Request) -> Response:
        device = device_of(request)
        if device is None:
            return secured(JSONResponse({"error": "unknown link"}, status_code=404))
        lang = request.query_params.get("lang")
        if lang not in ("zh", "en"):
            lang = language(request.headers.get("accept-language"))
        return secured(JSONResponse(mother_state(gw, device, lang)))

    @nurse_only()
    async def nurse_sessions(request: Request) -> Response:
        dev = request.path_params["device"]
        rec = gw.recordings
        known = set(gw.sessions) | set(gw.history.devices) | set(gw.history.settings.values)
        if dev not in known:
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
        })  # fmt: skip

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
        Route("/api/sessions/{session}/report.pdf", report),
        Mount("/mother-static", StaticFiles(directory=MOTHER_STATIC), name="mother-static"),
    ]
