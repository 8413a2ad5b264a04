"""Who is asking, and the headers every answer carries: the nurse view's middleware.

* `Sessions`: nurses' logins in memory, a random token per login, sliding expiry within an
  absolute lifetime; a login ends as soon as its nurse is removed or her password set again.
* `NurseAuth`: Starlette's authentication backend for the session cookie; with
  `AuthenticationMiddleware`, `request.user` is the nurse logged in (or nobody).
* `nurse_only`: the decorator a handler of nurse data carries: no login, 401 (or the login page
  for a page); a write without the `X-Perimon` header, 403 (CSRF: a cross-site form cannot set
  a custom header).
* `SecurityHeaders`: the CSP and friends on every response; a page that sets its own (the
  mother's page, gateway/web/mother.py) keeps them.
* `BodyLimit`: no request body larger than MAX_BODY_BYTES is read, whatever the route.

The mother's page (`/m/{token}`) needs no login: its link is its key, checked by its own routes.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
)
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "perimon_session"
NURSE = "nurse"  # the scope a logged-in nurse has
CSRF_HEADER = "x-perimon"  # set by the page's own scripts; a cross-site form cannot

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Over HTTPS: browsers that trust the certificate never use plain HTTP for this host again (a
# browser that was told to go on past a certificate warning ignores it, as it should).
HSTS = {"Strict-Transport-Security": "max-age=31536000"}

Handler = Callable[[Request], Awaitable[Response]]
MAX_SESSION_H = 12.0  # a login ends this long after it began, however active (one shift)
MAX_BODY_BYTES = 64 * 1024  # the largest request body: a form, a label code, settings


@dataclass
class _Login:
    user: str
    stamp: str  # the account's stamp at login (NurseAccounts.stamp)
    expires: float  # on the sessions' clock
    ends: float  # absolute: MAX_SESSION_H after the login


class Sessions:
    """Login sessions in memory: a random token per login, sliding expiry within an absolute
    lifetime, and the account checked at every use: `stamp(user)` is the account's current
    stamp (None: removed), which must be the one the login began with."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic,
                 stamp: Callable[[str], str | None] = lambda user: "") -> None:  # fmt: skip
        self.ttl_s = minutes * 60.0
        self.clock = clock  # seconds; a test passes its own instead of waiting
        self.stamp = stamp
        self._s: dict[str, _Login] = {}

    def create(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        self._s[token] = _Login(user, self.stamp(user) or "", now + self.ttl_s,
                                now + MAX_SESSION_H * 3600.0)  # fmt: skip
        return token

    def user(self, token: str | None) -> str | None:
        """The nurse logged in with `token`, if the session is alive and her account is
        unchanged; it lives on from now (up to its absolute end)."""
        login = self._s.get(token or "")
        if login is None:
            return None
        now = self.clock()
        if now >= login.expires or now >= login.ends or self.stamp(login.user) != login.stamp:
            del self._s[token or ""]
            return None
        login.expires = min(now + self.ttl_s, login.ends)
        return login.user

    def drop(self, token: str | None) -> None:
        self._s.pop(token or "", None)


class NurseAuth(AuthenticationBackend):
    """The session cookie, as Starlette's authentication: a live login is a nurse."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        user = self.sessions.user(conn.cookies.get(COOKIE))
        if user is None:
            return None
        return AuthCredentials([NURSE]), SimpleUser(user)


def nurse_only(*, write: bool = False, page: bool = False) -> Callable[[Handler], Handler]:
    """For a handler of nurse data: refuse anyone not logged in (401; a page sends them to the
    login instead), and with `write`, a request without the CSRF header (403)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: Request) -> Response:
            if NURSE not in request.auth.scopes:
                if page:
                    return RedirectResponse("/login", status_code=303)
                return JSONResponse({"error": "login required"}, status_code=401)
            if write and request.headers.get(CSRF_HEADER) != "1":
                return JSONResponse({"error": "missing X-Perimon header"}, status_code=403)
            return await handler(request)

        return checked

    return decorate


class SecurityHeaders:
    """ASGI middleware: `headers` on every HTTP response that does not set them itself.

    Plain ASGI rather than BaseHTTPMiddleware, so the server-sent events stream through it as
    they are written."""

    def __init__(self, app: ASGIApp, headers: Mapping[str, str] = SECURITY_HEADERS) -> None:
        self.app = app
        self.headers = dict(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:  # a page's own (the mother's CSP) wins
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """ASGI middleware: a request body is read here, up to `max_bytes`, before any route
    sees it; a larger one (by its Content-Length, or as it arrives) is answered 413 and never
    read further. Routes then read the body from memory as usual."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks),
                                   "more_body": False}]  # fmt: skip

        async def replay() -> Message:
            if pending:
                return pending.pop()
            return await receive()  # a disconnect, for a streamed answer

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = JSONResponse({"error": f"request body over {self.max_bytes} bytes"},
                            status_code=413, headers={"Connection": "close"})  # fmt: skip
        await resp(scope, receive, send)
