"""The mother's page as a tired mother meets it (issue: ward-ready screens), in headless
Chromium on a phone (390x844) and a tablet (1024x768):

* the gateway stops (or stops answering): within 20 s the page says it cannot reach the home
  box and that recording may have stopped, in English and Chinese, with the time of the last
  update, and no longer says "Recording", "signal good" or "connected";
* no help number configured: no dead "call" button, but who to call;
* a session due, then recorded (no "due" while she records; minutes count only with a heart
  rate, and the session completes only once the prescribed minutes had one), then complete
  ("today's session done");
* an unknown link: a page in both languages (status 404), with the hospital's number;
* the nurse's QR code of the mother's link reads back as the link, on an address her phone can
  reach (never 127.0.0.1: then an image says why there is no code);
* no help number: one warning in the gateway's log, and the nurse view's /api/me lists it.

Every state is checked by axe-core (no serious or critical violation, contrast included) and
its touch targets measured (44 x 44 px at least). Screenshots in test-artifacts/."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Browser, Page, async_playwright

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.processing import recording
from gateway.times import iso_time
from gateway.web.mother import (
    MOTHER_STATIC,
    SIGNAL_STALE_S,
    is_loopback,
    mother_reminder,
    mother_state,
    phone_base_url,
    sessions_today,
)
from gateway.web.nurses import NurseAccounts
from gateway.web.server import WebServer
from gateway.web.tls import web_url
from simulators.fleet import DeviceSpec, Fleet
from tests.harness.axe import describe, run_axe, serious
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, served_to_chromium
from tests.harness.chain import gateway_config
from tests.harness.paths import ARTIFACTS
from tests.harness.web import api, login, opener

PHONE = {"width": 390, "height": 844}
TABLET = {"width": 1024, "height": 768}
VIEWPORTS = {"phone": PHONE, "tablet": TABLET}
HELP = "+86 10 6515 0000"
MIN_TARGET_PX = 44  # WCAG 2.1 2.5.5 (target size, enhanced); Apple's HIG asks the same
STALE_EN = "Can't reach the home box: recording may have stopped"
STALE_ZH = "无法连接家中的网关盒：记录可能已停止"
INVALID_EN = "This link does not work"
INVALID_ZH = "此链接无效"
NEXT_POLL_MS = 20_000  # the page asks every 5 s; on a busy machine, give it a few


# -- in the browser ---------------------------------------------------------------------------


@asynccontextmanager
async def mother_pages(gw: Gateway) -> AsyncIterator[tuple[WebServer, Browser]]:
    """The gateway's web server and Debian's Chromium (served_to_chromium); after the test's
    pages the gateway's recordings stop too, whatever happened."""
    try:
        async with served_to_chromium(gw) as (web, browser):
            yield web, browser
    finally:
        gw.recordings.stop()


async def new_page(browser, viewport: dict, lang: str = "en") -> tuple[Page, list[str]]:
    accept = "zh-CN,zh;q=0.9" if lang == "zh" else "en-GB,en;q=0.9"
    ctx = await browser.new_context(viewport=viewport, device_scale_factor=2,
                                    is_mobile=viewport is PHONE, has_touch=True,
                                    locale="zh-CN" if lang == "zh" else "en-GB",
                                    extra_http_headers={"Accept-Language": accept})  # fmt: skip
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


async def targets(page: Page) -> list[dict[str, Any]]:
    """Every control she can touch on the page as it is drawn, with its size in CSS px."""
    return await page.evaluate("""() => [...document.querySelectorAll(
        "a[href], button, input, select, textarea, [role=button], [tabindex]")]
      .filter((e) => e.getClientRects().length > 0)
      .map((e) => { const r = e.getBoundingClientRect();
                    return {id: e.id || e.tagName, w: r.width, h: r.height}; })""")


async def check_page(page: Page, name: str, viewport: dict) -> dict[str, Any]:
    """What every state of the page must be: accessible (axe-core), touchable, no sideways
    scrolling; a full-page screenshot kept."""
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    found = serious(await run_axe(page))
    assert found == [], f"{name}:\n{describe(found)}"
    controls = await targets(page)
    assert controls, name  # at least the language button
    small = [c for c in controls if c["w"] < MIN_TARGET_PX or c["h"] < MIN_TARGET_PX]
    assert small == [], (name, small)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], (name, width)
    return {"controls": controls}


async def text(page: Page, selector: str) -> str:
    return (await page.text_content(selector) or "").strip()


async def shown(page: Page, selector: str) -> bool:
    return await page.is_visible(selector)


# -- the gateway's side -----------------------------------------------------------------------


def feed(tracker, minutes: float, t0: float, first: int, rate: bool = True) -> int:
    """`minutes` of FHR points (with a rate, or none) as the fetal processor feeds them, in
    batches of a second; returns the next point number."""
    n = int(minutes * 240)
    value = 141.0 if rate else np.nan
    for i in range(0, n, 4):
        tracker.feed(1, first + i, np.full(4, value), np.full(4, 0.9 if rate else 0.0), True,
                     t0 + i / 4, now=time.time())  # fmt: skip
    return first + n


def home_gateway(tmp_path, help_phone: str = HELP, **web: Any) -> Gateway:
    raw = gateway_config(tmp_path, "gw-home", web=True)
    raw["web"].update(help_phone=help_phone, **web)
    return Gateway(config_from_dict(raw))


# -- the gateway stops ------------------------------------------------------------------------


@pytest.mark.system
def test_the_page_says_so_when_the_gateway_stops(tmp_path):
    """A real gateway with a real (simulated) fetal monitor recording a prescribed session;
    the mother's page on a phone. The gateway stops: the page must say so within 20 s. It
    comes back: the page goes on by itself. The box stops answering without closing anything
    (Wi-Fi gone, requests hang): the same within 20 s."""
    ARTIFACTS.mkdir(exist_ok=True)
    raw = gateway_config(tmp_path, "gw-home", web=True)
    raw["web"]["help_phone"] = HELP
    cfg = config_from_dict(raw)
    cfg.data_dir.mkdir(parents=True)
    store = recording.SessionStore(cfg.data_dir / "sessions.sqlite")
    later = (datetime.now() + timedelta(hours=3)).strftime("%H:%M")
    store.set_schedule("fh-01", recording.check_schedule(
        {"sessions_per_day": 1, "duration_min": 20, "risk_colour": "orange",
         "times": [later]}))  # fmt: skip
    token = store.mother_token("fh-01")
    store.close()
    spec = DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0, snr_db=15)
    seen: dict[str, Any] = {}

    async def main() -> None:
        fleet = Fleet([spec], cfg.radio.listen, tmp_path / "devices", gateway=cfg)
        gw, stop = Gateway(cfg), asyncio.Event()
        run = asyncio.create_task(gw.run(stop))
        await asyncio.wait_for(gw.ready.wait(), 10)
        assert gw.web is not None
        url = gw.web.url
        await fleet.start()
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page, errors = await new_page(browser, PHONE)
                await page.goto(f"{url}/m/{token}")
                # live: what the issue saw the page keep saying after the gateway had stopped
                await page.wait_for_selector("#today[data-state='recording']", timeout=90_000)
                await page.wait_for_selector("#signal[data-signal='good']", timeout=60_000)
                await page.wait_for_selector("#link-state:has-text('is connected')",
                                             timeout=30_000)  # fmt: skip
                seen["live"] = await today(page)
                await check_page(page, "mother-page-live-phone", PHONE)

                stop.set()  # the gateway stops (as systemd stops it)
                stopping = time.monotonic()
                await run
                stopped = time.monotonic()
                seen["minutes"] = {(datetime.now() - timedelta(seconds=s)).strftime("%H:%M")
                                   for s in range(0, 91, 15)}  # fmt: skip
                await page.wait_for_selector("#stale:not([hidden])", timeout=25_000)
                seen["stale_s"] = time.monotonic() - stopped
                seen["stale_after_stop_s"] = time.monotonic() - stopping
                seen["stale"] = await today(page)
                await check_page(page, "mother-page-unreachable-en", PHONE)
                await page.click("#lang-toggle")
                await page.wait_for_selector("html[lang='zh-CN']")
                seen["stale_zh"] = await today(page)
                await check_page(page, "mother-page-unreachable-zh", PHONE)
                await page.click("#lang-toggle")

                gw, stop = Gateway(cfg), asyncio.Event()  # started again, on the same files
                run = asyncio.create_task(gw.run(stop))
                await asyncio.wait_for(gw.ready.wait(), 10)
                ready = time.monotonic()
                await page.wait_for_selector("#stale[hidden]", state="attached", timeout=30_000)
                seen["back_s"] = time.monotonic() - ready
                seen["back"] = await today(page)

                # the box is there but answers nothing: each request hangs until the page's
                # own timeout
                await page.route("**/state*", lambda route: None)
                hung = time.monotonic()
                await page.wait_for_selector("#stale:not([hidden])", timeout=25_000)
                seen["hung_s"] = time.monotonic() - hung
                seen["hung"] = await today(page)
                await page.unroute("**/state*")
                seen["errors"] = errors
                await browser.close()
        finally:
            stop.set()
            await run
            await fleet.stop()

    asyncio.run(main())
    live, stale, zh = seen["live"], seen["stale"], seen["stale_zh"]
    print({k: v for k, v in seen.items() if k.endswith("_s")})
    assert live["state"] == "Recording" and live["signal"].startswith("Signal good")
    assert live["link"] == "The monitor is connected" and not live["stale"]
    assert live["updated"].startswith("Updated ")
    # within 20 s of the gateway stopping, and not before the page could know (15 s without
    # an answer, the last answer at most one 5 s poll before the end)
    assert 8.0 < seen["stale_s"] <= 20.0, seen
    assert stale["stale"] and stale["stale_title"] == STALE_EN
    # "updated hh:mm": the last answer, just before the gateway stopped
    assert stale["updated"].startswith("Updated ")
    assert stale["updated"][len("Updated ") :] in seen["minutes"], (stale, seen["minutes"])
    assert stale["updated"][len("Updated ") :] in stale["stale_text"]  # "last heard ... at hh:mm"
    assert stale["state"] != "Recording" and "home box" in stale["state"]
    assert stale["signal"] == "" and stale["link"] == "" and not stale["bar"]
    assert zh["stale_title"] == STALE_ZH and zh["updated"].startswith("更新于 ")
    assert zh["state"] != "正在记录"
    back = seen["back"]
    assert not back["stale"] and back["updated"].startswith("Updated ")
    assert 8.0 < seen["hung_s"] <= 20.0, seen
    assert seen["hung"]["stale"] and seen["hung"]["signal"] == ""
    assert seen["errors"] == []


async def today(page: Page) -> dict[str, Any]:
    return {
        "state": await text(page, "#rec-state"),
        "progress": await text(page, "#rec-progress"),
        "signal": await text(page, "#signal"),
        "link": await text(page, "#link-state"),
        "updated": await text(page, "#updated"),
        "stale": await shown(page, "#stale"),
        "stale_title": await text(page, "#stale h2"),
        "stale_text": await text(page, "#stale-text"),
        "bar": await shown(page, "#bar"),
        "reminder": await shown(page, "#reminder"),
        "reminder_text": await text(page, "#reminder-text"),
        "hint": await text(page, "#rec-hint"),
        "history": await page.locator("#history-list li").all_inner_texts(),
    }


# -- a prescribed session: due, recording, done -----------------------------------------------


@pytest.mark.system
@pytest.mark.parametrize("viewport", ["phone", "tablet"])
def test_session_due_then_recorded_then_done(tmp_path, viewport):
    ARTIFACTS.mkdir(exist_ok=True)
    vp = VIEWPORTS[viewport]
    gw = home_gateway(tmp_path)
    rec = gw.recordings
    now = time.time()
    # a slot due a few minutes ago today (local time), 6 minutes prescribed
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    due = datetime.fromtimestamp(max(now - 600, midnight)).strftime("%H:%M")
    rec.store.set_schedule("fh-01", recording.check_schedule(
        {"sessions_per_day": 1, "duration_min": 6, "risk_colour": "yellow", "times": [due]},
        now - 86400))  # fmt: skip
    token = rec.store.mother_token("fh-01")
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with mother_pages(gw) as (web, browser):
            page, errors = await new_page(browser, vp)
            await page.goto(f"{web.url}/m/{token}")
            await page.wait_for_selector("body[data-ready='1']")
            seen["due"] = await today(page)
            await check_page(page, f"mother-page-due-{viewport}", vp)

            # she starts: 1 minute with the baby's heart, 2 without, 2 with again
            tr = rec.tracker("fh-01")
            t0 = time.time() - 5 * 60
            nxt = feed(tr, 1, t0, 1)
            nxt = feed(tr, 2, t0 + 60, nxt, rate=False)
            nxt = feed(tr, 2, t0 + 180, nxt)
            await page.wait_for_selector("#today[data-state='recording']", timeout=NEXT_POLL_MS)
            seen["recording"] = await today(page)
            seen["state"] = await asyncio.to_thread(state_json, f"{web.url}/m/{token}/state")
            await check_page(page, f"mother-page-recording-{viewport}", vp)

            # six minutes recorded, four with a heart rate: not yet complete
            nxt = feed(tr, 1, t0 + 300, nxt)
            await page.wait_for_selector("#rec-progress:has-text('4 of 6 minutes')",
                                         timeout=NEXT_POLL_MS)  # fmt: skip
            seen["six_recorded"] = await today(page)
            feed(tr, 2, t0 + 360, nxt)  # the sixth minute with a heart rate: complete
            await page.wait_for_selector("#today[data-state='done']", timeout=NEXT_POLL_MS)
            seen["done"] = await today(page)
            await check_page(page, f"mother-page-done-{viewport}", vp)
            await page.click("#lang-toggle")
            await page.wait_for_selector("html[lang='zh-CN']")
            seen["done_zh"] = await today(page)
            await check_page(page, f"mother-page-done-zh-{viewport}", vp)
            seen["errors"] = errors

    asyncio.run(main())
    d = seen["due"]
    assert d["reminder"] and d["reminder_text"].startswith("A session is due now")
    assert d["state"] == "Not recording" and d["updated"].startswith("Updated ")
    r = seen["recording"]
    assert r["state"] == "Recording" and not r["reminder"]  # no "due" while she records
    # 5 minutes recorded, 3 of them with the baby's heart: the page counts the 3
    assert r["progress"] == "3 of 6 minutes" and r["bar"], r
    assert r["hint"] == "Only minutes in which the baby's heart is picked up count."
    rj = seen["state"]["recording"]
    assert rj["heart_rate_min"] == 3.0 and rj["recorded_min"] == 5.0
    assert seen["state"]["plan"]["reminder"] is None
    # the session completes on minutes with a heart rate, as the page counts them: no jump
    # from "3 of 6 minutes" to "done" after 6 minutes recorded
    six = seen["six_recorded"]
    assert six["state"] == "Recording" and six["progress"] == "4 of 6 minutes", six
    done = seen["done"]
    assert done["state"] == "Today's session done" and not done["reminder"]
    assert done["signal"] == "" and done["progress"] == ""
    assert len(done["history"]) == 1 and "complete" in done["history"][0]
    assert "6 min" in done["history"][0]  # minutes with a heart rate: 1 + 2 + 1 + 2
    assert seen["done_zh"]["state"] == "今天的监护已完成"
    assert seen["errors"] == []


def state_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


# -- no help number; an unknown link ----------------------------------------------------------


@pytest.mark.system
def test_no_help_number_no_dead_button_but_who_to_call(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    gw = home_gateway(tmp_path, help_phone="")
    token = gw.recordings.store.mother_token("fh-01")
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with mother_pages(gw) as (web, browser):
            for lang in ("en", "zh"):
                page, errors = await new_page(browser, PHONE, lang)
                await page.goto(f"{web.url}/m/{token}")
                await page.wait_for_selector("body[data-ready='1']")
                seen[lang] = {
                    "call": await shown(page, "#call"),
                    "who": await text(page, "#who-to-call"),
                    "who_shown": await shown(page, "#who-to-call"),
                    "help": await text(page, "#help"),
                    "errors": errors,
                }
                await check_page(page, f"mother-page-no-help-number-{lang}", PHONE)

    asyncio.run(main())
    en, zh = seen["en"], seen["zh"]
    assert not en["call"] and not zh["call"]  # no button that calls nobody
    assert en["who_shown"] and "maternity unit" in en["who"] and "emergency" in en["who"]
    assert zh["who_shown"] and "急救电话" in zh["who"] and "胎动减少" in zh["help"]
    assert en["errors"] == zh["errors"] == []


@pytest.mark.system
def test_an_unknown_link_says_so_in_both_languages(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    gw = home_gateway(tmp_path)
    token = gw.recordings.store.mother_token("fh-01")
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with mother_pages(gw) as (web, browser):
            for name, vp in VIEWPORTS.items():
                page, errors = await new_page(browser, vp, "zh" if name == "tablet" else "en")
                resp = await page.goto(f"{web.url}/m/not-a-token")
                await page.wait_for_selector("#invalid:not([hidden])")
                seen[name] = {
                    "status": resp.status if resp else None,
                    "en": await text(page, "#invalid [lang='en']"),
                    "zh": await text(page, "#invalid [lang='zh-CN']"),
                    "call": await text(page, "#call"),
                    "today": await shown(page, "#today"),
                    "updated": await shown(page, "#updated"),
                    "stale": await shown(page, "#stale"),
                    "errors": errors,
                }
                await check_page(page, f"mother-page-invalid-link-{name}", vp)
            # a link renewed while her page is open: the old one stops working there too
            page, errors = await new_page(browser, PHONE)
            await page.goto(f"{web.url}/m/{token}")
            await page.wait_for_selector("#today[data-state='idle']")
            gw.recordings.store.renew_mother_token("fh-01")
            await page.wait_for_selector("#invalid:not([hidden])", timeout=NEXT_POLL_MS)
            seen["renewed"] = {"today": await shown(page, "#today"), "errors": errors}

    asyncio.run(main())
    for name in VIEWPORTS:
        s = seen[name]
        assert s["status"] == 404
        assert s["en"].startswith(INVALID_EN) and "Ask the hospital for a new link" in s["en"]
        assert s["zh"].startswith(INVALID_ZH) and "请向医院索取新的链接" in s["zh"]
        assert HELP in s["call"]  # her hospital's number, all the same
        assert not s["today"] and not s["updated"] and not s["stale"]
        assert s["errors"] == []
    assert seen["tablet"]["call"].startswith("拨打")  # the help in her language
    assert not seen["renewed"]["today"] and seen["renewed"]["errors"] == []


# -- the nurse's QR code ----------------------------------------------------------------------


@pytest.mark.system
def test_the_nurse_shows_the_mothers_link_as_a_qr_code(tmp_path):
    """GET /api/devices/{device}/mother-link.svg: nurse login only; drawn by Chromium as the
    nurse view draws an image, photographed, and read back by zbarimg as a phone camera reads
    it: the mother's link on the address the nurse's tablet used (a name on the home network).
    Opened at 127.0.0.1 on a gateway that listens there only, no phone could open it: an image
    saying so instead of a useless code."""
    ARTIFACTS.mkdir(exist_ok=True)
    gw = home_gateway(tmp_path)
    gw.history.settings.update("fh-01", {"label": "Home 12"})
    NurseAccounts(gw.cfg.data_dir / "nurses.json").add("amy", "a long enough password")
    seen: dict[str, Any] = {}

    def get(o, url: str, host: str | None = None) -> tuple[int, str, str, bytes]:
        req = urllib.request.Request(url)
        if host:  # the name the nurse's browser used for the gateway
            req.add_header("Host", host)
        try:
            with o.open(req, None, 10) as r:
                return r.status, r.headers["Content-Type"], r.headers["Cache-Control"], r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers["Content-Type"], e.headers["Cache-Control"], e.read()

    async def main() -> None:
        web = WebServer(gw)
        await web.start()
        url = web.url
        lan = f"gw-home.lan:{web.port}"
        try:
            seen["anonymous"] = await asyncio.to_thread(
                status_of, f"{url}/api/devices/fh-01/mother-link.svg"
            )
            o, _ = opener()
            await asyncio.to_thread(login, o, url)
            _, sessions = await asyncio.to_thread(api, o, url, "/api/devices/fh-01/sessions")
            seen["sessions"] = sessions
            seen["lan_sessions"] = await asyncio.to_thread(
                get, o, url + "/api/devices/fh-01/sessions", lan
            )
            seen["lan"] = await asyncio.to_thread(get, o, url + sessions["mother_link_qr"], lan)
            seen["loopback"] = await asyncio.to_thread(get, o, url + sessions["mother_link_qr"])
            seen["unknown"] = (
                await asyncio.to_thread(api, o, url, "/api/devices/nope/mother-link.svg")
            )[0]
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page, _ = await new_page(browser, TABLET)
                for name, (_, _, _, svg) in (("qr", seen["lan"]), ("refused", seen["loopback"])):
                    data = base64.b64encode(svg).decode()
                    await page.set_content(f'<img id="qr" src="data:image/svg+xml;base64,{data}">')
                    await page.wait_for_function("document.getElementById('qr').complete")
                    shot = ARTIFACTS / f"mother-link-{name}.png"
                    await page.locator("#qr").screenshot(path=str(shot))
                    seen[f"size_{name}"] = await page.locator("#qr").bounding_box()
                await browser.close()
            seen["lan_base"] = f"http://{lan}"
        finally:
            await web.stop()
            gw.recordings.stop()

    asyncio.run(main())
    assert seen["anonymous"] == 401
    assert seen["unknown"] == 404
    status, ctype, cache, _ = seen["lan"]
    assert status == 200 and ctype.startswith("image/svg+xml") and cache == "no-store"
    assert seen["size_qr"]["width"] >= 150  # big enough to aim a phone at
    read = subprocess.run(["zbarimg", "--raw", "-q", str(ARTIFACTS / "mother-link-qr.png")],
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert read.stdout.strip() == seen["lan_base"] + seen["sessions"]["mother_link"]
    # the link as text for the nurse view: the same, or none where no phone reaches it
    assert json.loads(seen["lan_sessions"][3])["mother_link_url"] == read.stdout.strip()
    assert seen["sessions"]["mother_link_url"] is None
    # at 127.0.0.1, listening on 127.0.0.1: no code, but why and what to do, in its place
    status, ctype, cache, svg = seen["loopback"]
    assert status == 409 and ctype.startswith("image/svg+xml") and cache == "no-store"
    words = svg.decode()
    assert "No QR code" in words and "perimon.local" in words and "0.0.0.0" in words
    assert "没有二维码" in words
    assert seen["sessions"]["mother_link"].removeprefix("/m/") not in words
    assert seen["size_refused"]["width"] >= 150
    unreadable = subprocess.run(["zbarimg", "--raw", "-q", str(ARTIFACTS / "mother-link-refused.png")],
                                capture_output=True, text=True, timeout=30)  # fmt: skip
    assert unreadable.returncode != 0 and unreadable.stdout == ""  # nothing for a camera to open


@pytest.mark.unit
def test_the_qr_code_address_is_one_a_phone_can_reach():
    """docs/home.md, "The QR code's address"."""
    wildcard = web_url(config_from_dict({"web": {"listen": "0.0.0.0:8443", "cert_file": "c.pem",
                                                 "key_file": "k.pem"}}))  # fmt: skip
    assert wildcard == "https://perimon.local:8443/"
    loop = "http://127.0.0.1:8080/"
    # the nurse's tablet on the network: her address works on the phone too
    assert phone_base_url("https://192.168.1.20:8443/", wildcard) == "https://192.168.1.20:8443"
    assert phone_base_url("https://gw-home.lan:8443/", loop) == "https://gw-home.lan:8443"
    # opened on the gateway itself: the gateway's own address
    for nurse in ("https://127.0.0.1:8443/", "https://localhost:8443/", "https://[::1]:8443/",
                  "https://127.1.2.3:8443/", "https://app.localhost:8443/"):  # fmt: skip
        assert phone_base_url(nurse, wildcard) == "https://perimon.local:8443", nurse
        assert phone_base_url(nurse, "https://10.0.0.7:8443/") == "https://10.0.0.7:8443"
        assert phone_base_url(nurse, loop) is None, nurse  # no phone reaches it
    assert is_loopback("") and is_loopback("LOCALHOST") and not is_loopback("perimon.local")


@pytest.mark.system
def test_a_gateway_without_a_help_number_warns_once_and_tells_the_nurse_view(tmp_path, caplog):
    """`[web] help_phone` missing: one warning in the log when the nurse view starts, and the
    nurse view's /api/me lists it; with a number, neither."""
    seen: dict[str, Any] = {}

    async def me(gw: Gateway) -> dict[str, Any]:
        web = WebServer(gw)
        await web.start()
        try:
            o, _ = opener()
            await asyncio.to_thread(login, o, web.url)
            answer = (await asyncio.to_thread(api, o, web.url, "/api/me"))[1]
            # the page's data, asked for again: nothing more in the log
            await asyncio.to_thread(api, o, web.url, "/api/me")
            return answer
        finally:
            await web.stop()
            gw.recordings.stop()

    for name, phone in (("none", ""), ("set", HELP)):
        gw = home_gateway(tmp_path / name, help_phone=phone)
        NurseAccounts(gw.cfg.data_dir / "nurses.json").add("amy", "a long enough password")
        caplog.clear()
        with caplog.at_level("WARNING", logger="gateway"):
            seen[name] = asyncio.run(me(gw))
        said = [r.getMessage() for r in caplog.records]
        seen[f"log_{name}"] = [m for m in said if "help_phone" in m]
    assert len(seen["log_none"]) == 1 and "[web] help_phone is not set" in seen["log_none"][0]
    assert seen["none"]["help_phone"] == ""
    assert seen["none"]["warnings"] == seen["log_none"]
    assert seen["log_set"] == [] and seen["set"]["warnings"] == []
    assert seen["set"]["help_phone"] == HELP


def status_of(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


# -- the rules, without a browser -------------------------------------------------------------


SCHEDULE = recording.check_schedule({"sessions_per_day": 2, "duration_min": 20,
                                     "risk_colour": "orange", "times": ["09:00", "18:00"]},
                                    datetime(2026, 3, 1, 8).timestamp())  # fmt: skip


def session(start: datetime, status: str = "complete") -> dict[str, Any]:
    return {"start": start.astimezone().isoformat(), "status": status, "good_signal_min": 20.0}


@pytest.mark.unit
def test_today_counts_the_slots_kept_by_complete_sessions():
    day = datetime(2026, 3, 2)
    at = lambda h, m=0: day.replace(hour=h, minute=m)  # noqa: E731
    noon = at(12).timestamp()
    assert sessions_today(None, [], noon) is None  # no prescription, nothing to be done
    assert sessions_today(SCHEDULE, [], noon) == {"prescribed": 2, "done": 0}
    # complete in the 09:00 window (it opens an hour before); stopped early does not keep it
    assert sessions_today(SCHEDULE, [session(at(8, 30))], noon) == {"prescribed": 2, "done": 1}
    assert sessions_today(SCHEDULE, [session(at(9, 5), "short")], noon) == {
        "prescribed": 2,
        "done": 0,
    }
    both = [session(at(9, 5)), session(at(18, 10))]
    assert sessions_today(SCHEDULE, both, at(19).timestamp()) == {"prescribed": 2, "done": 2}
    # yesterday's sessions count for yesterday
    assert sessions_today(SCHEDULE, [session(at(9) - timedelta(days=1))], noon)["done"] == 0
    weekly = recording.check_schedule({"sessions_per_week": 1, "duration_min": 20,
                                       "risk_colour": "green", "times": ["10:00"]},
                                      datetime(2026, 3, 2, 8).timestamp())  # fmt: skip
    assert sessions_today(weekly, [], datetime(2026, 3, 3, 12).timestamp()) == {
        "prescribed": 0,
        "done": 0,
    }


@pytest.mark.unit
def test_no_reminder_while_recording_nor_a_missed_one_made_up_since():
    due = {"kind": "due", "due": "2026-03-02T09:00:00+00:00"}
    missed = {"kind": "missed", "due": "2026-03-02T09:00:00+00:00"}
    assert mother_reminder(due, False, []) == due
    assert mother_reminder(due, True, []) is None  # she is recording it
    assert mother_reminder(missed, True, []) is None
    assert mother_reminder(missed, False, []) == missed
    earlier = {"start": "2026-03-02T08:00:00+00:00", "status": "complete"}
    later = {"start": "2026-03-02T21:00:00+00:00", "status": "complete"}
    short = {"start": "2026-03-02T21:00:00+00:00", "status": "short"}
    assert mother_reminder(missed, False, [earlier, short]) == missed
    assert mother_reminder(missed, False, [later]) is None  # recorded one since, as it asked
    assert mother_reminder(None, False, [later]) is None


@pytest.mark.unit
def test_no_signal_from_old_news_and_minutes_with_a_heart_rate(tmp_path):
    """The page's data says 'no_data' rather than a signal once no FHR batch came for
    SIGNAL_STALE_S (the session itself lasts until the link is declared lost), and counts the
    minutes with a heart rate, not the minutes recorded."""
    gw = home_gateway(tmp_path)
    rec = gw.recordings
    rec.store.set_schedule("fh-01", recording.check_schedule(
        {"sessions_per_day": 1, "duration_min": 20, "risk_colour": "green"}))  # fmt: skip
    tr = rec.tracker("fh-01")
    t0 = time.time() - 4 * 60
    nxt = feed(tr, 1, t0, 1)
    nxt = feed(tr, 1, t0 + 60, nxt, rate=False)
    feed(tr, 2, t0 + 120, nxt)
    fed = tr.last_fed
    fresh = mother_state(gw, "fh-01", "en", now=fed + 1)["recording"]
    assert fresh["signal"] == "good"
    assert fresh["heart_rate_min"] == 3.0 and fresh["recorded_min"] == 4.0
    assert fresh["prescribed_min"] == 20
    old = mother_state(gw, "fh-01", "en", now=fed + SIGNAL_STALE_S + 1)
    assert old["recording"]["signal"] == "no_data" and old["recording"]["heart_rate_min"] == 3.0
    assert old["today"] == {"prescribed": 1, "done": 0}
    rec.stop()
    (ended,) = mother_state(gw, "fh-01", "en")["history"]
    assert ended["heart_rate_min"] == 3 and ended["status"] == "short"


@pytest.mark.system
def test_her_movement_marks_of_the_session_are_counted_for_her(tmp_path):
    """The page tells her what the button is for and counts the movements she marked in the
    session she is recording (marks from before it are not hers to count now)."""
    gw = home_gateway(tmp_path)
    tr = gw.recordings.tracker("fh-01")
    t0 = time.time() - 3 * 60
    feed(tr, 2, t0, 1)

    def mark(n: int, t: float) -> None:
        gw.history.record(("device", "fh-01", "movement"),
                          {"msg_id": f"fh-01:1:movement:{n}", "device_id": "fh-01", "boot": 1,
                           "seq": n, "t": iso_time(t), "t_device_ms": int(t * 1000)})  # fmt: skip

    assert mother_state(gw, "fh-01", "en")["recording"]["movements"] == 0
    mark(1, t0 - 600)  # before the session
    mark(2, t0 + 30)
    mark(3, t0 + 90)
    mark(3, t0 + 90)  # the same mark sent again after a restart: once
    assert mother_state(gw, "fh-01", "en")["recording"]["movements"] == 2
    page = (MOTHER_STATIC / "mother.js").read_text()
    assert page.count("movements: (n)") == 2, "said in English and in Chinese"
    gw.recordings.stop()
