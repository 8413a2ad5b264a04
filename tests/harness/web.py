"""The nurse view over HTTP, as a browser without JavaScript uses it: a cookie jar, the login
form, and the JSON API with its X-Perimon header."""

from __future__ import annotations

import http.cookiejar
import json
import ssl
import urllib.error
import urllib.request

USER, PASSWORD = "amy", "a long enough password"


def opener(https: bool = False):
    """A URL opener with its own cookie jar (one browser); over HTTPS it trusts any certificate
    (the test's own, self-signed)."""
    jar = http.cookiejar.CookieJar()
    handlers: list = [urllib.request.HTTPCookieProcessor(jar)]
    if https:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    return urllib.request.build_opener(*handlers), jar


def login(opener, url: str, password: str = PASSWORD, user: str = USER):
    data = f"user={user}&password={password.replace(' ', '+')}".encode()
    return opener.open(url + "/login", data=data, timeout=10)


def api(opener, url: str, path: str, body=None, header: bool = True) -> tuple[int, dict]:
    """(status, JSON answer) of GET `path`, or POST `body` as JSON; `header`: the X-Perimon
    header the nurse view's script sends on every call (a write without it is refused)."""
    req = urllib.request.Request(
        url + path, data=None if body is None else json.dumps(body).encode()
    )
    if header:
        req.add_header("X-Perimon", "1")
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
