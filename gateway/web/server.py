"""The nurse view: a Starlette app served by uvicorn inside the gateway's asyncio loop.

Pages and assets are static files under gateway/web/static (no CDN: the ward may have no
internet). Data comes from the gateway's History (what it published) as JSON, and live as
server-sent events. Nurses log in with accounts kept on the gateway (gateway/web/nurses.py);
sessions expire after `[web] session_minutes` without activity. See docs/nurse-view.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
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

from gateway.state.history import History
from gateway.state.settings import apply_settings
from gateway.web.mother import mother_routes
from gateway.web.nurses import NurseAccounts
from gateway.web.pairing import pairing_routes
from gateway.web.scan import scan_routes

if TYPE_CHECKING:
    from gateway.context import GatewayContext

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "perimon_session"
_HEARTBEAT_S = 15.0
_MAX_FAILURES = 5  # failed logins per user name before a lock-out
_LOCKOUT_S = 300.0
_LOCAL_PATH = re.compile(r"/(?!/)[A-Za-z0-9_/-]*")  # a page of this gateway (never //host)

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Sessions:
    """Login sessions in memory: a random token per login, sliding expiry."""

    def __init__(self, minutes: float) -> None:
        self.ttl_s = minutes * 60.0
        self._s: dict[str, dict] = {}

    def create(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        self._s[token] = {"user": user, "expires": time.monotonic() + self.ttl_s}
        return token

    def user(self, token: str | None) -> str | None:
        s = self._s.get(token or "")
        if s is None:
            return None
        now = time.monotonic()
        if now >= s["expires"]:
            del self._s[token]
            return None
        s["expires"] = now + self.ttl_s
        return s["user"]

    def drop(self, token: str | None) -> None:
        self._s.pop(token or "", None)


def _device_entry(gw: GatewayContext, history: History, dev_id: str) -> dict:
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
    return summary


def nomogram(ga_weeks: float, risk_factors: bool, max_hour: int = 168) -> dict:
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
               secure: bool) -> Starlette:  # fmt: skip
    sessions = Sessions(session_minutes)
    failures: dict[str, list[float]] = {}

    def current_user(request: Request) -> str | None:
        return sessions.user(request.cookies.get(COOKIE))

    def headers(resp: Response) -> Response:
        resp.headers.update(_SECURITY_HEADERS)
        return resp

    def api_auth(request: Request, write: bool = False) -> str | JSONResponse:
        user = current_user(request)
        if user is None:
            return headers(JSONResponse({"error": "login required"}, status_code=401))
        if write and request.headers.get("x-perimon") != "1":  # CSRF: a custom header
            return headers(JSONResponse({"error": "missing X-Perimon header"}, status_code=403))
        return user

    async def index(request: Request) -> Response:
        if current_user(request) is None:
            return RedirectResponse("/login", status_code=303)
        return headers(FileResponse(STATIC / "index.html"))

    async def login_page(request: Request) -> Response:
        return headers(FileResponse(STATIC / "login.html"))

    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        user = (form.get("user") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        nxt = (form.get("next") or ["/"])[0]  # back to the page that asked for the login
        nxt = nxt if _LOCAL_PATH.fullmatch(nxt) else "/"
        again = "" if nxt == "/" else f"&next={nxt}"
        now = time.monotonic()
        recent = [t for t in failures.get(user, []) if now - t < _LOCKOUT_S]
        if len(recent) >= _MAX_FAILURES:
            return headers(RedirectResponse("/login?error=locked" + again, status_code=303))
        ok = await asyncio.to_thread(accounts.check, user, password)
        if not ok:
            failures[user] = [*recent, now]
            log.warning("nurse view: failed login for %r", user)
            return headers(RedirectResponse("/login?error=1" + again, status_code=303))
        failures.pop(user, None)
        log.info("nurse view: %s logged in", user)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, sessions.create(user), httponly=True, samesite="strict",
                        secure=secure, path="/")  # fmt: skip
        return headers(resp)

    async def logout(request: Request) -> Response:
        sessions.drop(request.cookies.get(COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return headers(resp)

    async def me(request: Request) -> Response:
        user = api_auth(request)
        if isinstance(user, Response):
            return user
        return headers(JSONResponse({"user": user, "gateway_id": gw.cfg.gateway.id,
                                     "session_minutes": session_minutes}))  # fmt: skip

    def device_ids() -> list[str]:
        ids = set(gw.sessions) | set(history.devices) | set(history.settings.values)
        return sorted(ids)

    async def devices(request: Request) -> Response:
        user = api_auth(request)
        if isinstance(user, Response):
            return user
        return headers(JSONResponse([_device_entry(gw, history, d) for d in device_ids()]))

    async def window(request: Request) -> Response:
        user = api_auth(request)
        if isinstance(user, Response):
            return user
        dev = request.path_params["device"]
        if dev not in device_ids():
            return headers(JSONResponse({"error": "unknown device"}, status_code=404))
        now = time.time()
        try:
            until = float(request.query_params.get("until", now))
            since = float(request.query_params.get("since", until - 1800))
        except ValueError:
            return headers(JSONResponse({"error": "since/until: unix seconds"}, status_code=400))
        since = max(since, now - history.keep_s)
        return headers(JSONResponse(history.window(dev, since, until)))

    async def settings(request: Request) -> Response:
        user = api_auth(request, write=True)
        if isinstance(user, Response):
            return user
        dev = request.path_params["device"]
        if dev not in device_ids():
            return headers(JSONResponse({"error": "unknown device"}, status_code=404))
        try:
            changes = json.loads(await request.body())
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            result = apply_settings(gw, dev, changes)
        except ValueError as exc:
            return headers(JSONResponse({"error": str(exc)}, status_code=400))
        log.info("nurse view: %s set %s for %s", user, sorted(changes), dev)
        history.audit.append({"event": "settings", "device_id": dev, "by": user,
                        "keys": sorted(changes), "t": time.time()})  # fmt: skip
        return headers(JSONResponse(result))

    async def alerts(request: Request) -> Response:
        user = api_auth(request)
        if isinstance(user, Response):
            return user
        return headers(JSONResponse(sorted(history.alerts.values(),
                                           key=lambda a: a["raised_at"], reverse=True)))  # fmt: skip

    async def ack(request: Request) -> Response:
        user = api_auth(request, write=True)
        if isinstance(user, Response):
            return user
        rec = history.ack(request.path_params["alert"], user)
        if rec is None:
            return headers(JSONResponse({"error": "unknown alert"}, status_code=404))
        return headers(JSONResponse(rec))

    async def nomogram_api(request: Request) -> Response:
        user = api_auth(request)
        if isinstance(user, Response):
            return user
        try:
            ga = float(request.query_params["ga"])
            risk = request.query_params.get("risk", "false") == "true"
            return headers(JSONResponse(nomogram(ga, risk)))
        except (KeyError, ValueError) as exc:
            return headers(JSONResponse({"error": f"ga: {exc}"}, status_code=400))

    async def events(request: Request) -> Response:
        user = api_auth(request)
        if isinstance(user, Response):
            return user
        token = request.cookies.get(COOKIE)
        q = history.subscribe()

        async def stream():
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(q.get(), _HEARTBEAT_S)
                    except TimeoutError:
                        if q not in history.listeners:
                            return
                        if sessions.user(token) is None:
                            yield "event: logout\ndata: {}\n\n"
                            return
                        yield ": keep-alive\n\n"
                        continue
                    yield f"data: {json.dumps(event, separators=(',', ':'))}\n\n"
            finally:
                history.unsubscribe(q)

        resp = StreamingResponse(stream(), media_type="text/event-stream")
        resp.headers["X-Accel-Buffering"] = "no"
        return headers(resp)

    routes = [
        Route("/", index),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/me", me),
        Route("/api/devices", devices),
        Route("/api/devices/{device}/window", window),
        Route("/api/devices/{device}/settings", settings, methods=["POST"]),
        Route("/api/alerts", alerts),
        Route("/api/alerts/{alert:path}/ack", ack, methods=["POST"]),
        Route("/api/nomogram", nomogram_api),
        Route("/api/events", events),
        *mother_routes(gw, api_auth, headers),  # the mother's page, sessions, reports
        *pairing_routes(gw, api_auth, headers),  # pairing a new monitor (gateway/device/pairing.py)
        *scan_routes(gw, api_auth, headers),  # ... or by the code on its label
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield  # the gateway handles SIGINT/SIGTERM itself


class WebServer:
    def __init__(self, gw: GatewayContext, listen: str | None = None) -> None:
        self.gw = gw
        cfg = gw.cfg.web
        host, _, port = (listen or cfg.listen).rpartition(":")
        self.host = host
        self.secure = bool(cfg.cert_file)
        base = gw.cfg.base_dir
        app = create_app(gw, gw.history, NurseAccounts(gw.cfg.data_dir / "nurses.json"),
                         cfg.session_minutes, self.secure)  # fmt: skip
        self.server = _Server(
            uvicorn.Config(
                app,
                host=host.strip("[]"),
                port=int(port),
                log_level="warning",
                lifespan="off",
                access_log=False,
                ssl_certfile=str(base / cfg.cert_file) if cfg.cert_file else None,
                ssl_keyfile=str(base / cfg.key_file) if cfg.key_file else None,
                timeout_graceful_shutdown=2,
            )
        )
        self.task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        for s in self.server.servers:
            for sock in s.sockets:
                return sock.getsockname()[1]
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

    async def stop(self) -> None:
        if self.task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 5)
