"""The nurse view: a Starlette app served by uvicorn inside the gateway's asyncio loop.

Pages and assets are static files under gateway/web/static (no CDN: the ward may have no
internet). Data comes from the gateway's History (what it published) as JSON, and live as
server-sent events. Nurses log in with accounts kept on the gateway (gateway/web/nurses.py);
sessions expire after `[web] session_minutes` without activity. Who is logged in, and the
security headers of every answer, are middleware (gateway/web/auth.py). See docs/nurse-view.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dsp.bilirubin_units import MG_DL_TO_UMOL_L
from dsp.ctg_reference import BASELINE_NORMAL_BPM
from gateway.processing.recording.schedule import kept, slots
from gateway.processing.recording.store import unix_seconds
from gateway.state.history import History
from gateway.state.settings import apply_settings
from gateway.times import iso_time_or_none
from gateway.web.artefacts import artefact_routes, rejected
from gateway.web.auth import (
    COOKIE,
    HSTS,
    SECURITY_HEADERS,
    BodyLimit,
    NurseAuth,
    SecurityHeaders,
    Sessions,
    nurse_only,
)
from gateway.web.gateway_warnings import read_warnings
from gateway.web.logins import BROWSER_COOKIE, BROWSER_DAYS, BrowserTokens, LoginLimits
from gateway.web.mother import help_phone_warning, mother_routes
from gateway.web.nurses import NurseAccounts
from gateway.web.pairing import pairing_routes
from gateway.web.scan import scan_routes
from gateway.web.tcb import tcb_routes

if TYPE_CHECKING:
    from gateway.context import GatewayContext

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
_HEARTBEAT_S = 15.0
_RECHECK_S = 5.0  # the live stream checks its login at least this often
_MAX_NAME = 64  # longer user names (never valid) are counted as one
_MAX_CONNECTIONS = 64  # uvicorn answers 503 beyond this many connections and requests at once
_LOCAL_PATH = re.compile(r"/(?!/)[A-Za-z0-9_/-]*")  # a page of this gateway (never //host)


def _device_entry(gw: GatewayContext, history: History, dev_id: str) -> dict[str, Any]:
    summary = history.device_summary(dev_id)
    summary["settings"] = {**gw.cfg.devices.get(dev_id, {}), **summary["settings"]}
    st = summary["status"] or {}
    session = gw.sessions.get(dev_id)
    if session is not None and not st:
        st = session.state.to_dict()
    summary["device_type"] = st.get("device_type")
    summary["link"] = st.get("link", "disconnected")
    summary["link_reason"] = st.get("link_reason", "")
    summary["battery_pct"] = st.get("battery_pct")
    summary["battery_low"] = st.get("battery_low", False)
    summary["signal_quality"] = st.get("signal_quality")
    summary["on_skin"] = st.get("on_skin")
    summary["last_seen"] = st.get("last_seen")
    fetal = summary["device_type"] == "fetal_heart"  # only fetal monitors record sessions
    summary["recording"] = _recording(gw, dev_id, time.time()) if fetal else None
    return summary


def _recording(gw: GatewayContext, dev_id: str, now: float) -> dict[str, Any] | None:
    """A fetal monitor's prescription as its card in the nurse view shows it: the schedule,
    where its latest slot stands (`status`: recording, due, done, missed; scheduled while none
    is due yet; unscheduled without a schedule), the next slot, the session in progress and the
    slots missed in the last week. None with neither a schedule nor a session in progress."""
    rec = gw.recordings
    tracker = rec.trackers.get(dev_id)
    progress = tracker.progress() if tracker is not None else None
    schedule = rec.store.schedule(dev_id)
    if schedule is None and progress is None:
        return None
    plan = rec.plan(dev_id, now)
    sessions = rec.store.sessions(dev_id, 50)
    status, slot_due, done_at = "unscheduled", None, None
    if schedule is not None:  # the slot most recently due, as Recordings.check_missed sees it
        set_at = unix_seconds(schedule["set_at"])
        due = [x for x in slots(schedule, now - 86400.0, now) if set_at <= x.due <= now]
        status = "scheduled"
        if due:
            slot = due[-1]
            slot_due = iso_time_or_none(slot.due)
            done = [x["start"] for x in sessions if x["status"] == "complete"
                    and kept(slot, [unix_seconds(x["start"])])]  # fmt: skip
            done_at = done[0] if done else None
            status = "done" if done else "due" if now < slot.closes else "missed"
    week = now - 7 * 86400.0
    missed = [x for x in sessions if x["status"] == "missed" and unix_seconds(x["due"]) >= week]
    return {
        "status": "recording" if progress is not None else status,
        "slot_due": slot_due,
        "done_at": done_at,
        "next_due": plan["next_due"],
        "schedule": plan["schedule"],
        "progress": progress,
        "missed_7d": len(missed),
    }


def nomogram(ga_weeks: float, risk_factors: bool, max_hour: int = 168) -> dict[str, Any]:
    """Bhutani percentile tracks and the AAP 2022 lines for one baby, for the page to draw."""
    from dsp import bilirubin_zones as bz

    hours = list(range(0, max_hour + 1))
    bh = [bz.BHUTANI_START_HOUR + bz.BHUTANI_STEP_HOURS * i for i in range(len(bz.BHUTANI_P95))]
    return {
        "ga_weeks": ga_weeks,
        "risk_factors": risk_factors,
        "bhutani_hours": bh,
        "bhutani_p40": list(bz.BHUTANI_P40),
        "bhutani_p75": list(bz.BHUTANI_P75),
        "bhutani_p95": list(bz.BHUTANI_P95),
        "hours": hours,
        "phototherapy": [bz.phototherapy_threshold_mg_dl(h, ga_weeks, risk_factors) for h in hours],
        "exchange": [bz.exchange_threshold_mg_dl(h, ga_weeks, risk_factors) for h in hours],
    }


def create_app(gw: GatewayContext, history: History, accounts: NurseAccounts, session_minutes: float,
               secure: bool, clock: Callable[[], float] = time.monotonic) -> Starlette:  # fmt: skip
    """The nurse view: every route below but the login, the mother's page and static files is
    for nurses (`nurse_only`); who is logged in is known from the middleware (gateway/web/auth.py).
    `clock` (seconds) times session expiry and login lock-outs."""
    sessions = Sessions(session_minutes, clock, accounts.stamp)
    limits = LoginLimits()  # counted before hashing (gateway/web/logins.py)
    browsers = BrowserTokens(accounts.path.with_name("browsers.key"))
    # one scrypt at a time for strangers, one for recognised browsers: guesses queue behind
    # each other, never in front of a nurse at her own browser
    hashing = {True: asyncio.Semaphore(1), False: asyncio.Semaphore(1)}
    # set when the gateway stops: each live stream ends its answer (WebServer.stop) rather than
    # have uvicorn cancel it mid-answer, which logged a traceback for every open page
    closing = asyncio.Event()

    @nurse_only(page=True)
    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def login_page(request: Request) -> Response:
        return FileResponse(STATIC / "login.html")

    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        user = (form.get("user") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        nxt = (form.get("next") or ["/"])[0]  # back to the page that asked for the login
        nxt = nxt if _LOCAL_PATH.fullmatch(nxt) else "/"
        again = "" if nxt == "/" else f"&next={nxt}"
        name = user if len(user) <= _MAX_NAME else "(too long)"
        client = request.client.host if request.client is not None else "?"
        browser = browsers.browser(request.cookies.get(BROWSER_COOKIE), user)
        attempt = limits.admit(name, client, browser, clock())  # counted before hashing
        if isinstance(attempt, str):
            log.warning("nurse view: login for %r from %s refused (%s)", name, client, attempt)
            return RedirectResponse(f"/login?error={attempt}" + again, status_code=303)
        async with hashing[browser is not None]:
            ok = await asyncio.to_thread(accounts.check, user, password)
        if not ok:
            log.warning("nurse view: failed login for %r from %s", name, client)
            return RedirectResponse("/login?error=1" + again, status_code=303)
        limits.succeeded(attempt)
        log.info("nurse view: %s logged in", user)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, sessions.create(user), httponly=True, samesite="strict",
                        secure=secure, path="/")  # fmt: skip
        if browser is None:  # from now on this browser is hers: no stranger can lock it out
            resp.set_cookie(BROWSER_COOKIE, browsers.issue(user), max_age=BROWSER_DAYS * 86400,
                            httponly=True, samesite="strict", secure=secure,
                            path="/login")  # fmt: skip
        return resp

    async def logout(request: Request) -> Response:
        sessions.drop(request.cookies.get(COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @nurse_only()
    async def me(request: Request) -> Response:
        return JSONResponse({"user": request.user.display_name, "gateway_id": gw.cfg.gateway.id,
                             "session_minutes": session_minutes,
                             # the strip shades the FIGO normal baseline from the one table
                             "fhr_normal_bpm": list(BASELINE_NORMAL_BPM),
                             # the ward's bilirubin unit ([web] bilirubin_unit)
                             "bilirubin_unit": gw.cfg.web.bilirubin_unit,
                             "umol_l_per_mg_dl": MG_DL_TO_UMOL_L,
                             # the mother's page's help line, and what the configuration lacks
                             "help_phone": gw.cfg.web.help_phone,
                             "warnings": [w for w in (help_phone_warning(gw.cfg.web.help_phone),)
                                          if w]})  # fmt: skip

    @nurse_only()
    async def gateway_warnings(request: Request) -> Response:
        # the outbox's queries hold its lock, which its sender thread takes too: off the loop
        return JSONResponse(await asyncio.to_thread(read_warnings, gw.publisher))

    def device_ids() -> list[str]:
        ids = set(gw.sessions) | set(history.devices) | set(history.settings.values)
        return sorted(ids)

    @nurse_only()
    async def devices(request: Request) -> Response:
        return JSONResponse([_device_entry(gw, history, d) for d in device_ids()])

    @nurse_only()
    async def window(request: Request) -> Response:
        dev = request.path_params["device"]
        if dev not in device_ids():
            return JSONResponse({"error": "unknown device"}, status_code=404)
        now = time.time()
        try:
            until = float(request.query_params.get("until", now))
            since = float(request.query_params.get("since", until - 1800))
        except ValueError:
            return JSONResponse({"error": "since/until: unix seconds"}, status_code=400)
        since = max(since, now - history.keep_s)
        w = history.window(dev, since, until)
        w["fhr_rejected"] = rejected(history, dev, since, until)  # the strip lifts its pen there
        return JSONResponse(w)

    @nurse_only(write=True)
    async def settings(request: Request) -> Response:
        user = request.user.display_name
        dev = request.path_params["device"]
        if dev not in device_ids():
            return JSONResponse({"error": "unknown device"}, status_code=404)
        try:
            changes = json.loads(await request.body())
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            result = apply_settings(gw, dev, changes)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        log.info("nurse view: %s set %s for %s", user, sorted(changes), dev)
        history.audit.append({"event": "settings", "device_id": dev, "by": user,
                        "keys": sorted(changes), "t": time.time()})  # fmt: skip
        return JSONResponse(result)

    @nurse_only()
    async def alerts(request: Request) -> Response:
        return JSONResponse(sorted(history.alerts.values(), key=lambda a: a["raised_at"],
                                   reverse=True))  # fmt: skip

    @nurse_only(write=True)
    async def ack(request: Request) -> Response:
        rec = history.ack(request.path_params["alert"], request.user.display_name)
        if rec is None:
            return JSONResponse({"error": "unknown alert"}, status_code=404)
        return JSONResponse(rec)

    @nurse_only()
    async def nomogram_api(request: Request) -> Response:
        try:
            ga = float(request.query_params["ga"])
            risk = request.query_params.get("risk", "false") == "true"
            return JSONResponse(nomogram(ga, risk))
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": f"ga: {exc}"}, status_code=400)

    @nurse_only()
    async def events(request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        q = history.subscribe()

        async def stream() -> AsyncIterator[str]:
            checked = clock()
            getter: asyncio.Future[Any] | None = None
            stopping: asyncio.Future[Any] = asyncio.ensure_future(closing.wait())
            try:
                yield "retry: 2000\n\n"
                while True:
                    event: dict[str, Any] | None = None
                    getter = getter or asyncio.ensure_future(q.get())
                    await asyncio.wait({getter, stopping}, timeout=_HEARTBEAT_S,
                                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                    if stopping.done():  # the gateway stops: end the answer, not cut it
                        yield "event: closing\ndata: {}\n\n"
                        return
                    if getter.done():
                        event, getter = getter.result(), None
                    elif q not in history.listeners:
                        return
                    # the login is checked while events flow too: a removed nurse, a new
                    # password or the session's end stops the stream
                    if event is None or clock() - checked >= _RECHECK_S:
                        checked = clock()
                        if sessions.user(token) is None:
                            yield "event: logout\ndata: {}\n\n"
                            return
                    if event is None:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"data: {json.dumps(event, separators=(',', ':'))}\n\n"
            finally:
                for waiting in (getter, stopping):
                    if waiting is not None:
                        waiting.cancel()
                history.unsubscribe(q)

        resp = StreamingResponse(stream(), media_type="text/event-stream")
        resp.headers["X-Accel-Buffering"] = "no"
        return resp

    routes = [
        Route("/", index),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/me", me),
        Route("/api/gateway/warnings", gateway_warnings),  # the gateway banner
        Route("/api/devices", devices),
        Route("/api/devices/{device}/window", window),
        Route("/api/devices/{device}/settings", settings, methods=["POST"]),
        Route("/api/alerts", alerts),
        Route("/api/alerts/{alert:path}/ack", ack, methods=["POST"]),
        Route("/api/nomogram", nomogram_api),
        Route("/api/events", events),
        *mother_routes(gw),  # the mother's page (its link is its key), sessions, reports
        *pairing_routes(gw),  # pairing a new monitor (gateway/device/pairing.py)
        *scan_routes(gw),  # ... or by the code on its label
        *artefact_routes(history),  # FHR points the CTG analyses reject, for the live strip
        *tcb_routes(gw, history),  # a jaundice meter's readings, assessed as the baby is now
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    headers = SECURITY_HEADERS | HSTS if secure else SECURITY_HEADERS  # HSTS over HTTPS
    middleware = [
        Middleware(SecurityHeaders, headers=headers),  # outermost: every answer, refusals too
        Middleware(BodyLimit),  # no route reads more than MAX_BODY_BYTES
        Middleware(AuthenticationMiddleware, backend=NurseAuth(sessions)),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.closing = closing
    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the gateway handles SIGINT/SIGTERM itself


class WebServer:
    def __init__(self, gw: GatewayContext, listen: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.gw = gw
        cfg = gw.cfg.web
        host, _, port = (listen or cfg.listen).rpartition(":")
        self.host = host
        self.secure = bool(cfg.cert_file)
        base = gw.cfg.base_dir
        self.app = create_app(gw, gw.history, NurseAccounts(gw.cfg.data_dir / "nurses.json"),
                              cfg.session_minutes, self.secure, clock)  # fmt: skip
        self.server = _Server(
            uvicorn.Config(
                self.app,
                host=host.strip("[]"),
                port=int(port),
                log_level="warning",
                lifespan="off",
                access_log=False,
                limit_concurrency=_MAX_CONNECTIONS,
                ssl_certfile=str(base / cfg.cert_file) if cfg.cert_file else None,
                ssl_keyfile=str(base / cfg.key_file) if cfg.key_file else None,
                timeout_graceful_shutdown=2,
            )
        )
        self.task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        for s in self.server.servers:
            for sock in s.sockets:
                return int(sock.getsockname()[1])
        return 0

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises the reason (port in use, bad certificate)
                raise OSError("the nurse view did not start")
            await asyncio.sleep(0.02)
        log.info("nurse view on %s", self.url)
        if (warning := help_phone_warning(self.gw.cfg.web.help_phone)) is not None:
            log.warning("%s", warning)

    async def stop(self) -> None:
        if self.task is None:
            return
        self.app.state.closing.set()  # live streams end first (they would hold the shutdown)
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 5)
