"""Attacks on the nurse view's logins, in process: the Starlette app driven over ASGI with many
requests at once, a fake clock, and bodies that are never wholly built.

Parallel guesses against one name, guesses from one address at many names and from many
addresses, a stranger locking a nurse out, an endless failure table, a huge body, and a nurse
who was removed (or whose password was set again) keeping her session through the live
stream or by staying active."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest

from gateway.config import config_from_dict
from gateway.state.history import History
from gateway.web import logins, nurses
from gateway.web.auth import MAX_BODY_BYTES, MAX_SESSION_H
from gateway.web.nurses import NurseAccounts
from gateway.web.server import create_app

pytestmark = pytest.mark.unit

USER, PASSWORD = "amy", "a long enough password"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeGateway:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.sessions: dict = {}
        self.history = History(None)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    cookies: dict[str, str]
    body: bytes = b""
    pulled: int = 0  # request body bytes the app took


@dataclass
class Browser:
    """Cookies kept between requests, from one address."""

    client: str = "10.0.0.2"
    cookies: dict[str, str] = field(default_factory=dict)


async def call(app, method: str, path: str, browser: Browser, body: Iterable[bytes] = (b"",),
               headers: dict[str, str] | None = None, until=None) -> Answer:  # fmt: skip
    """One request over ASGI; `body` as chunks (pulled lazily), `until(answer)` ends a
    streamed answer early (the client goes away)."""
    hdrs = {"host": "gw", **(headers or {})}
    if browser.cookies:
        hdrs["cookie"] = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "server": ("gw", 80), "client": (browser.client, 40000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in hdrs.items()],
    }  # fmt: skip
    chunks: Iterator[bytes] = iter(body)
    answer = Answer(0, {}, {})
    pending = next(chunks, None)
    gone = asyncio.Event()

    async def receive():
        nonlocal pending
        if pending is None:
            await gone.wait()
            return {"type": "http.disconnect"}
        chunk, pending = pending, next(chunks, None)
        answer.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pending is not None}

    async def send(message):
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            for k, v in message["headers"]:
                if k == b"set-cookie":
                    name, _, rest = v.decode().partition("=")
                    answer.cookies[name] = rest.split(";")[0]
                else:
                    answer.headers[k.decode()] = v.decode()
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")
            if until is not None and until(answer):
                gone.set()

    await app(scope, receive, send)
    browser.cookies.update({k: v for k, v in answer.cookies.items() if v and v != '""'})
    return answer


def login_form(user: str = USER, password: str = PASSWORD) -> tuple[bytes]:
    return (urlencode({"user": user, "password": password}).encode(),)


FORM = {"content-type": "application/x-www-form-urlencoded"}


async def login(app, browser: Browser, user: str = USER, password: str = PASSWORD) -> str:
    """Where the login sends the browser: "/" in, or /login?error=..."""
    a = await call(app, "POST", "/login", browser, login_form(user, password), FORM)
    assert a.status == 303
    return a.headers["location"]


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The nurse view of a gateway with one nurse; counts the passwords it hashes (at a
    low cost: what is counted here is how many, not how long each takes)."""
    monkeypatch.setattr(nurses, "SCRYPT", nurses.Scrypt(2**10, 8, 1))
    cfg = config_from_dict({"gateway": {"data_dir": "gw"}}, base_dir=tmp_path)
    accounts = NurseAccounts(cfg.data_dir / "nurses.json")
    accounts.add(USER, PASSWORD)
    hashed = []
    check = NurseAccounts.check

    def counting(self, user, password):
        hashed.append(user)
        return check(self, user, password)

    monkeypatch.setattr(NurseAccounts, "check", counting)
    clock = FakeClock()
    gw = FakeGateway(cfg)
    app = create_app(gw, gw.history, accounts, 30.0, False, clock)
    return app, accounts, hashed, clock, gw


def test_parallel_guesses_are_counted_before_the_password_is_hashed(site):
    app, _, hashed, _, _ = site

    async def main():
        attacker = Browser("10.0.0.66")
        return await asyncio.gather(
            *(login(app, attacker, USER, f"guess number {i}") for i in range(120))
        )

    outcomes = asyncio.run(main())
    # Before: each guess read the count, awaited scrypt, then wrote it: all 120 were checked.
    assert len(hashed) == logins.MAX_PER_NAME
    assert outcomes.count("/login?error=1") == logins.MAX_PER_NAME
    assert outcomes.count("/login?error=locked") == 120 - logins.MAX_PER_NAME


def test_one_address_is_limited_whatever_the_names_and_the_failure_table_is_bounded(site):
    app, _, hashed, clock, _ = site

    async def main():
        attacker = Browser("10.0.0.66")
        first = [await login(app, attacker, f"name{i}", "wrong password") for i in range(30)]
        # then many addresses: the gateway as a whole takes MAX_GLOBAL failures
        spread = [await login(app, Browser(f"10.1.{i // 250}.{i % 250}"), f"n{i}", "wrong pass")
                  for i in range(3 * logins.MAX_GLOBAL)]  # fmt: skip
        return first, spread

    first, spread = asyncio.run(main())
    assert first.count("/login?error=1") == logins.MAX_PER_CLIENT
    assert first[logins.MAX_PER_CLIENT :] == ["/login?error=locked"] * 10
    failed = logins.MAX_GLOBAL - logins.MAX_PER_CLIENT
    assert spread.count("/login?error=1") == failed
    assert spread.count("/login?error=busy") == 3 * logins.MAX_GLOBAL - failed
    assert len(hashed) == logins.MAX_GLOBAL
    # and the table of failures holds the names and addresses of those 100 at most
    limits = logins.LoginLimits()
    for i in range(10 * logins.MAX_KEYS):
        limits.admit(f"user{i}", f"addr{i}", None, clock.now + i * 0.01)
    assert len(limits) <= 2 * logins.MAX_GLOBAL <= logins.MAX_KEYS


def test_a_stranger_cannot_lock_a_nurse_out_of_her_own_browser(site):
    app, _, hashed, clock, _ = site

    async def main():
        amy = Browser("10.0.0.2")
        assert await login(app, amy) == "/"  # her browser is recognised from now on
        await call(app, "POST", "/logout", amy)
        # a stranger fails her name from 40 addresses, and fills the gateway's limit
        for i in range(logins.MAX_GLOBAL + 5):
            await login(app, Browser(f"10.9.0.{i}"), USER if i < 40 else f"x{i}", "not hers!")
        locked_elsewhere = await login(app, Browser("10.0.0.3"))  # amy on a new browser
        at_home = await login(app, amy)
        # her own browser's guesses are limited too, by themselves
        await call(app, "POST", "/logout", amy)
        mine = [await login(app, amy, USER, "my typo here") for _ in range(6)]
        clock.now += logins.LOCKOUT_S
        return locked_elsewhere, at_home, mine, await login(app, amy)

    locked_elsewhere, at_home, mine, later = asyncio.run(main())
    assert locked_elsewhere == "/login?error=locked"
    assert at_home == "/"
    assert mine == ["/login?error=1"] * 5 + ["/login?error=locked"]
    assert later == "/"


def test_a_forged_or_borrowed_browser_cookie_is_not_recognised(site):
    app, accounts, _, _, _ = site
    accounts.add("bob", "bob's long password")

    async def main():
        bob = Browser("10.0.0.5")
        assert await login(app, bob, "bob", "bob's long password") == "/"
        stranger = Browser("10.0.0.66", {"perimon_browser": bob.cookies["perimon_browser"]})
        # bob's cookie does not make a stranger amy's browser; a made-up one neither
        forged = Browser("10.0.0.67", {"perimon_browser": "amy.0123456789abcdef." + "0" * 32})
        out = []
        for b in (stranger, forged):
            out.append([await login(app, b, USER, "wrong guess!") for _ in range(6)])
        return out

    for outcomes in asyncio.run(main()):
        assert outcomes[-1] == "/login?error=locked"


def test_a_huge_body_is_refused_before_it_is_read(site):
    app, _, hashed, _, _ = site
    mib = b"x" * (1 << 20)

    async def main():
        b = Browser()
        endless = (mib for _ in range(300))  # 300 MiB, made only as far as it is read
        streamed = await call(app, "POST", "/login", b, endless, FORM)
        declared = await call(app, "POST", "/login", b, (mib,),
                              {**FORM, "content-length": str(300 << 20)})  # fmt: skip
        settings = await call(app, "POST", "/api/devices/x/settings", b, (mib for _ in range(8)),
                              {"x-perimon": "1"})  # fmt: skip
        small = await call(app, "POST", "/login", b, login_form(), FORM)
        return streamed, declared, settings, small

    streamed, declared, settings, small = asyncio.run(main())
    # Before: the login read all 300 MiB into memory before looking at any of it.
    assert streamed.status == 413 and streamed.pulled <= MAX_BODY_BYTES + len(mib)
    assert declared.status == 413 and declared.pulled == 0
    assert settings.status == 413 and settings.pulled <= MAX_BODY_BYTES + len(mib)
    assert streamed.headers["x-content-type-options"] == "nosniff"  # refusals carry the headers
    assert small.status == 303 and small.headers["location"] == "/"
    assert hashed == [USER]


def test_a_removed_nurse_loses_the_live_stream_and_every_request(site):
    app, accounts, _, clock, gw = site

    async def main():
        amy = Browser()
        assert await login(app, amy) == "/"
        assert (await call(app, "GET", "/api/me", amy)).status == 200

        async def feed():  # events keep flowing: the stream never waits for a heartbeat
            for i in range(400):
                await asyncio.sleep(0.005)
                clock.now += 1.0
                gw.history.record(("device", "fh-01", "status"), {"device_id": "fh-01", "n": i})
                if i == 20:
                    accounts.remove(USER)

        feeder = asyncio.create_task(feed())
        # (before the fix the stream never ends: given up after 20 s)
        stream = await asyncio.wait_for(call(app, "GET", "/api/events", amy,
                                             until=lambda a: b"event: logout" in a.body), 20)  # fmt: skip
        feeder.cancel()
        return stream, await call(app, "GET", "/api/me", amy)

    stream, me = asyncio.run(main())
    # Before: the stream ran on as long as events came, and renewed the session.
    assert b"event: logout" in stream.body
    assert stream.body.count(b"data: {") < 40
    assert me.status == 401


def test_a_new_password_ends_old_sessions_and_a_session_has_an_absolute_end(site):
    app, accounts, _, clock, _ = site

    async def main():
        amy, other = Browser(), Browser("10.0.0.3")
        await login(app, amy)
        await login(app, other)
        accounts.add(USER, "her new password here")
        after_reset = (await call(app, "GET", "/api/me", amy)).status
        await login(app, amy, USER, "her new password here")
        statuses = []
        for _ in range(int(MAX_SESSION_H * 4) + 1):  # active every 15 minutes, all day
            clock.now += 900
            statuses.append((await call(app, "GET", "/api/me", amy)).status)
        return after_reset, statuses

    after_reset, statuses = asyncio.run(main())
    assert after_reset == 401
    assert statuses[: int(MAX_SESSION_H * 4) - 1] == [200] * (int(MAX_SESSION_H * 4) - 1)
    assert statuses[-1] == 401  # 12 hours after the login, however active


@pytest.mark.unit
def test_two_logins_at_once_that_both_rehash_keep_the_accounts_file_whole(tmp_path, monkeypatch):
    """After a cost upgrade two nurses log in at the same moment (the nurse view checks
    passwords on two worker threads): each hash is made again, neither write undoes the
    other, and a reader never meets a half-written file."""
    import json
    import threading

    old, new = nurses.Scrypt(2**10, 8, 1), nurses.Scrypt(2**11, 8, 1)
    monkeypatch.setattr(nurses, "SCRYPT", new)
    path = tmp_path / "nurses.json"

    def login(accounts: NurseAccounts, start: threading.Barrier, results: list, user: str) -> None:
        start.wait()
        try:
            results.append(accounts.check(user, PASSWORD))
        except Exception as exc:  # what the nurse view would answer 500 for
            results.append(exc)

    for _ in range(20):
        path.write_text(json.dumps({u: {"password": nurses.hash_password(PASSWORD, old)}
                                    for u in ("amina", "beatriz")}))  # fmt: skip
        accounts, start, results = NurseAccounts(path), threading.Barrier(2), []
        threads = [threading.Thread(target=login, args=(accounts, start, results, u))
                   for u in ("amina", "beatriz")]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [True, True]
        saved = json.loads(path.read_text())
        assert all(nurses.cost_of(saved[u]["password"]) == new for u in ("amina", "beatriz"))
    assert [p.name for p in tmp_path.iterdir()] == ["nurses.json"]  # no temporary file left
