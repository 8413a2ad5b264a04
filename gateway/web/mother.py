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

import html
import io
import ipaddress
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import segno
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.processing.recording.schedule import complete_starts, kept, slots_due_on_day
from gateway.processing.recording.store import unix_seconds
from gateway.times import iso_time_or_none
from gateway.web.auth import nurse_only
from gateway.web.tls import web_url

if TYPE_CHECKING:
    from gateway.context import GatewayContext
    from gateway.device.session import DeviceSession

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


def help_phone_warning(help_phone: str) -> str | None:
    """The warning for a gateway without `[web] help_phone` (None with one): logged once when the
    nurse view starts and listed in the nurse view's /api/me `warnings`."""
    if help_phone.strip():
        return None
    return ("[web] help_phone is not set: the mother's page has no number to call the hospital"
            " (it only says to call the maternity unit or the emergency number)")  # fmt: skip


def mother_state(
    gw: GatewayContext, device: str, lang: str, now: float | None = None
) -> dict[str, Any]:
    """Everything the mother's page shows, and nothing clinical.

    Minutes are minutes with a fetal heart rate (`heart_rate_min`, the session tracker's count:
    what she can do something about, and what completes the session); `recorded_min` is the
    session's length."""
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
                        "heart_rate_min": session_heart_rate_min(s),
                        "delivered": s["delivered"]})  # fmt: skip
    recording = None
    if progress is not None and tracker is not None:
        signal = progress["signal"]
        if now - tracker.last_fed > SIGNAL_STALE_S:
            signal = "no_data"  # still a session (until LINK_LOST_S), but nothing is coming in
        elif signal != "off_skin" and _pulse_unmonitored(session):
            signal = "no_finger"  # the baby's rate is withheld until her finger sensor reads
        recording = {"start": progress["start"], "heart_rate_min": progress["heart_rate_min"],
                     "recorded_min": progress["recorded_min"],
                     "prescribed_min": progress["prescribed_min"], "signal": signal,
                     "movements": movements_marked(gw, device, progress["start"], now)}  # fmt: skip
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


def movements_marked(gw: GatewayContext, device: str, start: str | None, now: float) -> int:
    """How many fetal movements she has marked with the monitor's button in the session she is
    recording: the page shows the count, so she sees that her presses arrive."""
    if start is None:
        return 0
    return len(gw.recordings.history.messages(device, "movement", unix_seconds(start), now))


def _pulse_unmonitored(session: DeviceSession | None) -> bool:
    """Whether the monitor's finger sensor gives no pulse (the `maternal_unmonitored` alert,
    docs/mqtt.md): the page asks her to put her finger back, not to move the probe."""
    if session is None or session.processor is None:
        return False
    return "maternal_unmonitored" in session.processor.status_fields().get("alerts", [])


def session_heart_rate_min(rec: dict[str, Any]) -> int:
    """A finished session's minutes with a heart rate; a record stored before sessions counted
    them has only `good_signal_min` (time with a rate), whose whole minutes stand in for it."""
    if "heart_rate_min" in rec:
        return int(rec["heart_rate_min"])
    return int(rec.get("good_signal_min") or 0)


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
    kept by a complete session, by the schedule's own rule (`schedule.kept`)."""
    if schedule is None:
        return None
    due = slots_due_on_day(schedule, now)
    done_starts = complete_starts(sessions)
    return {"prescribed": len(due), "done": sum(1 for s in due if kept(s, done_starts))}


def mother_link_qr(link: str) -> bytes:
    """The mother's link as a QR code, SVG: what the nurse shows her to open on her phone."""
    qr = segno.make_qr(link, error="m")
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=_QR_SCALE, border=_QR_BORDER, xmldecl=False,
            title="QR code of the mother's page link", dark="#000", light="#fff")  # fmt: skip
    return out.getvalue()


def is_loopback(host: str) -> bool:
    """A host only this machine reaches: localhost, 127.0.0.0/8, ::1 (or no host at all)."""
    host = host.strip("[]").lower()
    if not host or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: the network's to resolve


def phone_base_url(request_base: str, configured: str) -> str | None:
    """The gateway's address for the mother's phone, without a trailing slash: the one the
    nurse's browser used, unless that is a loopback address (a nurse view opened on the gateway
    itself); then the gateway's own web address (`gateway.web.tls.web_url`: the `[web] listen`
    host, `perimon.local` when it listens on every interface, as install-pi.sh sets up); None
    when that is loopback too: the gateway serves this machine only, no phone can open it."""
    for url in (request_base, configured):
        if not is_loopback(urlsplit(url).hostname or ""):
            return url.rstrip("/")
    return None


def no_phone_address_svg() -> bytes:
    """What stands in the QR code's place when no phone could open the link: the reason and
    what to do, in the nurse view's two languages (an image the size of the code)."""
    lines = [
        ("No QR code: the gateway is reached", 22),
        ("only on this machine (127.0.0.1).", 44),
        ("Open the nurse view by the gateway's", 70),
        ("network name, e.g. perimon.local, or", 92),
        ("set [web] listen = 0.0.0.0:8443.", 114),
        ("没有二维码：网关只能在本机访问。", 146),
        ("请用网关的网络名称打开护士页面。", 170),
    ]
    text = "".join(f'<text x="8" y="{y}">{html.escape(t)}</text>' for t, y in lines)
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="270" height="186" viewBox="0 0 270 186"'
        ' role="img"><title>No QR code: the gateway is reached only on this machine</title>'
        '<rect width="270" height="186" fill="#fff" stroke="#b00020" stroke-width="2"/>'
        '<g font-family="sans-serif" font-size="12.5" fill="#000">' + text + "</g></svg>"
    )
    return svg.encode()


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

    def phone_base(request: Request) -> str | None:
        configured = web_url(gw.cfg)
        if configured.endswith(":0/"):  # listening on a port the system chose: the one in use
            configured = f"{configured[:-3]}:{request.url.port}/"
        return phone_base_url(str(request.base_url), configured)

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
            s["heart_rate_min"] = session_heart_rate_min(s)
            s["report_url"] = f"/api/sessions/{s['session_id']}/report.pdf" if s["report"] else None
        tracker = rec.trackers.get(dev)
        base = phone_base(request)
        path = f"/m/{rec.store.mother_token(dev)}"
        return JSONResponse({
            "sessions": sessions,
            "recording": tracker.progress() if tracker else None,
            "schedule": rec.store.schedule(dev),
            "mother_link": path,
            # the whole link on an address her phone can reach (None: there is none), as the
            # QR code holds it
            "mother_link_url": None if base is None else base + path,
            "mother_link_qr": f"/api/devices/{quote(dev, safe='')}/mother-link.svg",
        })  # fmt: skip

    @nurse_only()
    async def mother_qr(request: Request) -> Response:
        """GET /api/devices/{device}/mother-link.svg (nurse login): the mother's page link of
        the device as a QR code (SVG, about 200 px), for the nurse view to show beside the link;
        creating the link if the device has none yet. The address is one her phone can reach
        (`phone_base_url`); when there is none (the gateway is reached on this machine only),
        an SVG of the same size that says so, with status 409."""
        dev = request.path_params["device"]
        if not known(dev):
            return JSONResponse({"error": "unknown device"}, status_code=404)
        base = phone_base(request)
        if base is None:
            resp = Response(no_phone_address_svg(), status_code=409, media_type="image/svg+xml")
        else:
            link = f"{base}/m/{gw.recordings.store.mother_token(dev)}"
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
