"""The nurse view's server side without a browser: HTTPS with a configured certificate, login,
session expiry, CSRF header, settings validation, the nurse accounts and their CLI."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from dsp.bilirubin_zones import phototherapy_threshold_mg_dl
from gateway.cli import main as cli_main
from gateway.config import ConfigError, config_from_dict
from gateway.state.history import History
from gateway.web.nurses import NurseAccounts, hash_password, verify_password
from gateway.web.server import WebServer

pytestmark = pytest.mark.system

USER, PASSWORD = "amy", "a long enough password"


class FakeGateway:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.sessions: dict = {}
        self.history = History(cfg.data_dir)


def _cert(tmp_path):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return "c.pem", "k.pem"


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _serve(tmp_path, web: dict, body, clock=time.monotonic):
    cfg = config_from_dict({"gateway": {"data_dir": "gw"}, "web": web}, base_dir=tmp_path)
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    gw = FakeGateway(cfg)
    gw.history.record(("device", "tcb-01", "status"), {"device_id": "tcb-01",
                      "device_type": "jaundice", "link": "connected", "battery_pct": 80})  # fmt: skip

    async def main():
        server = WebServer(gw, listen="127.0.0.1:0", clock=clock)
        await server.start()
        try:
            return await asyncio.to_thread(body, server.url, gw)
        finally:
            await server.stop()

    return asyncio.run(main())


def _opener(https: bool):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    jar = http.cookiejar.CookieJar()
    handlers = [urllib.request.HTTPCookieProcessor(jar)]
    if https:
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    return urllib.request.build_opener(*handlers), jar


def _login(opener, url, password=PASSWORD):
    data = f"user={USER}&password={password.replace(' ', '+')}".encode()
    return opener.open(url + "/login", data=data, timeout=10)


def _json(opener, url, path, body=None, header=True):
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


def test_https_login_settings_and_csrf(tmp_path):
    cert, key = _cert(tmp_path)

    def body(url, gw):
        assert url.startswith("https://")
        opener, jar = _opener(True)
        assert _json(opener, url, "/api/devices")[0] == 401
        r = _login(opener, url, "wrong password")
        assert r.url.endswith("/login?error=1")
        r = _login(opener, url)
        assert r.url == url + "/"
        cookies = {c.name: c for c in jar}
        assert set(cookies) == {"perimon_session", "perimon_browser"}  # the login, her browser
        for cookie in cookies.values():
            assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly")
        status, devices = _json(opener, url, "/api/devices")
        assert status == 200 and devices[0]["device_id"] == "tcb-01"
        # no X-Perimon header: refused (a cross-site form cannot set it)
        assert _json(opener, url, "/api/devices/tcb-01/settings", {"label": "x"}, False)[0] == 403
        status, err = _json(opener, url, "/api/devices/tcb-01/settings", {"ga_weeks": 30})
        assert status == 400 and "35 to 45" in err["error"]
        status, err = _json(opener, url, "/api/devices/tcb-01/settings",
                            {"birth_time": "2026-01-01T00:00"})  # fmt: skip
        assert status == 400 and "time zone" in err["error"]
        status, s = _json(opener, url, "/api/devices/tcb-01/settings",
                          {"label": "Bed 4", "birth_time": "2026-11-20T08:00:00+00:00",
                           "ga_weeks": 38, "risk_factors": False})  # fmt: skip
        assert status == 200 and s["label"] == "Bed 4"
        assert gw.cfg.devices["tcb-01"]["ga_weeks"] == 38.0  # applied to the assessment
        status, nomo = _json(opener, url, "/api/nomogram?ga=38&risk=false")
        assert status == 200 and nomo["phototherapy"][40] == phototherapy_threshold_mg_dl(
            40, 38, False
        )
        assert nomo["phototherapy"][40] < nomo["exchange"][40]
        return True

    assert _serve(tmp_path, {"cert_file": cert, "key_file": key}, body)
    saved = json.loads((tmp_path / "gw" / "devices.json").read_text())
    assert saved["tcb-01"]["label"] == "Bed 4"
    assert "settings" in (tmp_path / "gw" / "audit.jsonl").read_text()


def test_session_expires_and_logins_lock_out(tmp_path):
    clock = FakeClock()

    def body(url, gw):
        opener, _ = _opener(False)
        _login(opener, url)
        assert _json(opener, url, "/api/me")[1]["user"] == USER
        clock.now += 2.9  # session_minutes = 0.05: 3 s without activity
        assert _json(opener, url, "/api/me")[0] == 200  # activity: the session lives on
        clock.now += 2.9
        assert _json(opener, url, "/api/me")[0] == 200
        clock.now += 3.0
        assert _json(opener, url, "/api/me")[0] == 401
        other, _ = _opener(False)
        for _ in range(5):
            assert _login(other, url, "nope nope nope").url.endswith("error=1")
        assert _login(other, url).url.endswith("error=locked")  # even the right password
        clock.now += 299.0
        assert _login(other, url).url.endswith("error=locked")
        clock.now += 1.0  # 5 minutes after the failures
        assert _login(other, url).url == url + "/"
        return True

    assert _serve(tmp_path, {"session_minutes": 0.05}, body, clock) is True


def test_every_answer_carries_the_security_headers(tmp_path):
    def body(url, gw):
        opener, _ = _opener(False)
        answers = {}
        for path in ("/", "/login", "/api/devices", "/static/style.css", "/pairing", "/pair.js",
                     "/api/no-such-route"):  # fmt: skip
            req = urllib.request.Request(url + path)
            try:
                r = urllib.request.build_opener(_NoRedirect).open(req, timeout=10)
            except urllib.error.HTTPError as e:
                r = e
            answers[path] = (r.status, r.headers)  # read case-insensitively
        assert answers["/"][0] == 303 and answers["/pairing"][0] == 303  # to the login
        assert answers["/api/devices"][0] == 401 and answers["/api/no-such-route"][0] == 404
        for path, (_, headers) in answers.items():
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
            assert headers["X-Content-Type-Options"] == "nosniff", path
            assert headers["Referrer-Policy"] == "no-referrer", path
            assert headers["Cache-Control"] == "no-store", path
        _login(opener, url)
        with opener.open(url + "/api/me", timeout=10) as r:
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        return True

    assert _serve(tmp_path, {}, body) is True


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_password_hashes_and_accounts(tmp_path):
    h = hash_password("secret password")
    assert h.startswith("scrypt$65536$8$2$") and "secret" not in h
    assert verify_password("secret password", h) and not verify_password("secret passwore", h)
    assert hash_password("secret password") != h  # salted
    accounts = NurseAccounts(tmp_path / "n.json")
    with pytest.raises(ValueError):
        accounts.add("amy", "short")
    with pytest.raises(ValueError):
        accounts.add("amy smith", PASSWORD)
    accounts.add(USER, PASSWORD)
    assert accounts.check(USER, PASSWORD) and not accounts.check(USER, "x" * 12)
    assert not accounts.check("bob", PASSWORD)
    assert (tmp_path / "n.json").stat().st_mode & 0o077 == 0


def test_nurse_cli(tmp_path, monkeypatch, capsys):
    conf = tmp_path / "perimon.toml"
    conf.write_text('[gateway]\ndata_dir = "gw"\n')
    monkeypatch.setattr("sys.stdin", SimpleNamespace(readline=lambda: PASSWORD + "\n"))
    assert cli_main(["nurse", "-c", str(conf), "add", USER, "--password-stdin"]) == 0
    assert NurseAccounts(tmp_path / "gw" / "nurses.json").check(USER, PASSWORD)
    assert cli_main(["nurse", "-c", str(conf), "list"]) == 0
    assert USER in capsys.readouterr().out
    assert cli_main(["nurse", "-c", str(conf), "remove", "nobody"]) == 2


@pytest.mark.parametrize(
    "web,message",
    [({"listen": "8080"}, "HOST:PORT"), ({"cert_file": "c.pem"}, "set both"),
     ({"session_minutes": 0}, "greater than 0"), ({"enabled": "yes"}, "true or false")],
)  # fmt: skip
def test_web_config_errors(web, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"web": web})
