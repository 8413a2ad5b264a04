"""The mother's page as she would use it: a phone-sized headless Chromium, in Chinese (from
Accept-Language) and in English (the toggle), while a prescribed session is being recorded,
checked by axe-core. The nurse side: the page link and the session report (PDF). Screenshots
in test-artifacts/. The page's other states (the gateway gone, a session due and done, no help
number, an unknown link, the tablet): tests/test_mother_page_ward.py."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta

import numpy as np
import pytest
from playwright.async_api import async_playwright

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.processing import recording
from gateway.web.mother import language
from gateway.web.nurses import NurseAccounts
from gateway.web.server import WebServer
from tests.harness.axe import describe, run_axe, serious
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.paths import ARTIFACTS

pytestmark = pytest.mark.system

PHONE = {"width": 390, "height": 844}
HELP = "+86 10 6515 0000"
USER, PASSWORD = "nurse.li", "correct horse battery"


def feed(tracker, minutes, t0, first, on_skin=True):
    n = int(minutes * 240)
    for i in range(0, n, 4):
        pts = np.full(4, 141.0)
        tracker.feed(1, first + i, pts, np.full(4, 0.9), on_skin, t0 + i / 4, now=time.time())
    return first + n


def test_accept_language_picks_chinese_or_english():
    assert language("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert language("en-GB,en;q=0.9,zh;q=0.5") == "en"
    assert language("fr-FR, zh-TW;q=0.4") == "zh"
    assert language(None) == "en" and language("de") == "en"


def test_mother_page_on_a_phone_in_both_languages(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    NurseAccounts(tmp_path / "gw" / "nurses.json").add(USER, PASSWORD)
    cfg = config_from_dict({"gateway": {"id": "gw-home", "data_dir": str(tmp_path / "gw")},
                            "web": {"help_phone": HELP}})  # fmt: skip
    gw = Gateway(cfg)
    seen: dict = {}

    async def main():
        rec = gw.recordings
        now = time.time()
        due = datetime.now() + timedelta(hours=3)
        rec.store.set_schedule("fh-01", recording.check_schedule(
            {"sessions_per_day": 1, "duration_min": 20, "risk_colour": "orange",
             "times": [due.strftime("%H:%M")]}, now - 3 * 86400))  # fmt: skip
        gw.history.settings.update("fh-01", {"label": "Home 12"})
        tr = rec.tracker("fh-01")
        nxt = feed(tr, 20, now - 5 * 3600, 1)  # yesterday's session, complete
        tr.feed(1, nxt, np.full(4, np.nan), np.zeros(4), False, now - 4 * 3600, now=time.time())
        feed(tr, 12, now - 12 * 60, nxt + 4)  # today's: 12 of 20 minutes so far
        for _ in range(300):
            if not rec.pending_reports:
                break
            await asyncio.sleep(0.1)
        gw.outbox.ack([r.id for r in gw.outbox.pending(0, 100_000)])  # the broker has it all
        rec.check_delivered()
        token = rec.store.mother_token("fh-01")
        web = WebServer(gw, listen="127.0.0.1:0")
        await web.start()
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    seen.update(await _browse(browser, web.url, token))
                finally:
                    await browser.close()
            seen["nurse"] = await asyncio.to_thread(_nurse, web.url)
            seen["bad_link"] = await asyncio.to_thread(_status, web.url + "/m/not-a-token")
            seen["headers"] = await asyncio.to_thread(_headers, f"{web.url}/m/{token}")
        finally:
            await web.stop()
            rec.stop()

    asyncio.run(main())

    zh, en = seen["zh"], seen["en"]
    assert zh["lang"] == "zh-CN" and en["lang"] == "en"
    assert "正在记录" in zh["state"] and "已记录 12 / 20 分钟" in zh["progress"]
    assert "信号良好" in zh["signal"] and "全部已送达医院：是" in zh["sent"]
    assert zh["updated"].startswith("更新于 ") and en["updated"].startswith("Updated ")
    assert HELP in zh["call"] and "拨打" in zh["call"] and "胎动减少" in zh["help"]
    assert en["state"] == "Recording" and en["progress"] == "12 of 20 minutes"
    assert en["signal"].startswith("Signal good") and en["sent"].endswith("yes")
    assert en["call"] == f"Call {HELP}" and en["href"] == "tel:+861065150000"
    assert en["history"] == 1 and "1 time a day, 20 minutes each" == en["schedule"]
    assert en["next"] not in ("", "—")
    for page in (zh, en):
        assert page["scroll_width"] <= PHONE["width"]  # no sideways scrolling on a phone
        assert "bpm" not in page["text"] and "141" not in page["text"]  # nothing clinical
        assert "Home 12" not in page["text"]
        assert page["errors"] == []
        assert page["axe"] == [], describe(page["axe"])  # no serious or critical violation
    nurse = seen["nurse"]
    assert nurse["mother_link"].startswith("/m/") and len(nurse["mother_link"]) > 30
    assert nurse["report"].startswith(b"%PDF") and nurse["statuses"][0] == "complete"
    assert seen["bad_link"] == 404
    # the page's own headers, not the nurse view's: no form-action (it has no form), no referrer
    assert "form-action" not in seen["headers"]["Content-Security-Policy"]
    assert seen["headers"]["Referrer-Policy"] == "no-referrer"


async def _browse(browser, url: str, token: str) -> dict:
    out = {}
    ctx = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                    has_touch=True, locale="zh-CN",
                                    extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})  # fmt: skip
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{url}/m/{token}")
    await page.wait_for_selector("body[data-ready='1']")
    out["zh"] = await _read(page, errors)
    await page.screenshot(path=str(ARTIFACTS / "mother-page-zh.png"), full_page=True)
    await page.click("#lang-toggle")
    await page.wait_for_selector("html[lang='en']")  # no eval: the page's CSP forbids it
    out["en"] = await _read(page, errors)
    await page.screenshot(path=str(ARTIFACTS / "mother-page-en.png"), full_page=True)
    await ctx.close()
    return out


async def _read(page, errors) -> dict:
    text = lambda sel: page.text_content(sel)  # noqa: E731
    return {
        "lang": await page.evaluate("document.documentElement.lang"),
        "state": await text("#rec-state"),
        "progress": await text("#rec-progress"),
        "signal": await text("#signal"),
        "sent": await text("#all-sent"),
        "call": await text("#call"),
        "href": await page.get_attribute("#call", "href"),
        "help": await text("#help"),
        "next": await text("#next-due"),
        "schedule": await text("#schedule"),
        "history": await page.locator("#history-list li").count(),
        "text": await page.inner_text("body"),
        "scroll_width": await page.evaluate("document.documentElement.scrollWidth"),
        "updated": await text("#updated"),
        "axe": serious(await run_axe(page)),
        "errors": list(errors),
    }


def _status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


def _headers(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return {k: r.headers[k] for k in ("Content-Security-Policy", "Referrer-Policy")}


def _nurse(url: str) -> dict:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = urllib.parse.urlencode({"user": USER, "password": PASSWORD}).encode()
    opener.open(url + "/login", data=form, timeout=10)
    s = json.loads(opener.open(url + "/api/devices/fh-01/sessions", timeout=10).read())
    report = opener.open(url + s["sessions"][0]["report_url"], timeout=10).read()
    return {"mother_link": s["mother_link"], "report": report,
            "statuses": [x["status"] for x in s["sessions"]]}  # fmt: skip
