"""The nurse view as a ward uses it, in Debian's Chromium: a fetal monitor with a prescribed
schedule and a jaundice meter whose reading raises a high alert, seen on a desktop (1280x900),
a tablet (1024x768) and a phone (390x844). The alert banner is on screen without scrolling
(and stays there when the page is scrolled), the tab's title carries the count, the tone can be
silenced, the monitor's card shows its schedule and session, the device shown first is loaded
as a chosen one is, keyboard focus survives the page's refreshes, axe-core finds nothing serious
in either language, and the page switches to Chinese and back. Stopping the gateway with a page
open logs no error. Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from gateway.config import config_from_dict
from gateway.processing.alerts import AlertTracker
from gateway.processing.recording.schedule import check_schedule
from gateway.web.nurses import NurseAccounts
from gateway.web.server import WebServer
from simulators.fleet import DeviceSpec
from tests.harness.axe import describe, run_axe, serious
from tests.harness.browser import chromium, log_in_as
from tests.harness.chain import gateway_config, run_chain
from tests.harness.paths import ARTIFACTS, REPO
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.system

USER, PASSWORD = "nurse.amy", "correct horse battery"
VIEWPORTS = {"desktop": (1280, 900), "tablet": (1024, 768), "phone": (390, 844)}
SPECS = [
    DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0, snr_db=15),
    # 17 mg/dL at 40 h, 38 weeks: above the AAP 2022 phototherapy line, a high alert
    DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=17.0,
               press_every_s=4.0),
]  # fmt: skip
CARD = "li.dev[data-device='fh-01']"
# the page's Web Audio, counted: each beep of the tone is one oscillator
COUNT_BEEPS = """window.beeps = 0; const RealAudio = window.AudioContext;
window.AudioContext = class extends RealAudio {
  createOscillator() { window.beeps++; return super.createOscillator(); } };"""
# a browser that refuses sound until the page is touched, and still refuses it after
# every string the page has, and every data-i18n key of index.html, in both languages
UNTRANSLATED = """async () => (await import('/static/js/i18n.js')).untranslated(
  [...document.querySelectorAll('[data-i18n],[data-i18n-label],[data-i18n-title]')]
    .flatMap((e) => [e.dataset.i18n, e.dataset.i18nLabel, e.dataset.i18nTitle]).filter(Boolean))"""
# keys of each module that draws the detail: their strings are in the table checked above
MODULE_KEYS = {
    "fetal.js": "ctg_not_yet",
    "strip.js": "strip_waiting",
    "nomogram.js": "zone_high",
    "jaundice.js": "th_next",
    "format.js": "day_tomorrow",
    "devices.js": "tflag_no_contact",
}
KEYS_ZH = "async () => Object.keys((await import('/static/js/i18n.js')).strings('zh'))"
REFUSE_SOUND = """window.AudioContext = class { constructor() { this.state = 'suspended'; }
  resume() { return Promise.reject(new DOMException('not allowed', 'NotAllowedError')); } };"""
PHOTOTHERAPY = "li.alert[data-alert^='tcb-01:alert:tcb_above_phototherapy']"
CLEARED = "li.alert[data-alert^='fh-01:alert:sample_rate']"


def refused(response: Any) -> bool:
    """An answer the page should not have had. On 127.0.0.1 no phone can reach the gateway:
    the QR code of the mother's link is then an image saying so, with status 409 (mother.py)."""
    qr_notice = response.status == 409 and response.url.endswith("/mother-link.svg")
    return bool(response.status >= 400 and not qr_notice)


async def log_in(page: Page, url: str) -> None:
    await log_in_as(page, url, USER, PASSWORD)
    await page.wait_for_selector(CARD, timeout=30000)


async def banner_on_screen(page: Page) -> dict[str, Any]:
    """Where the banner is against the viewport, and how far the page is scrolled."""
    result: dict[str, Any] = await page.evaluate(
        """() => { const r = document.getElementById('alert-banner').getBoundingClientRect();
                   return {top: r.top, bottom: r.bottom, left: r.left, right: r.right,
                           width: innerWidth, height: innerHeight, scrollY: scrollY}; }"""
    )
    return result


def inside(box: dict[str, Any]) -> bool:
    return bool(box["top"] >= 0 and box["left"] >= 0 and box["bottom"] <= box["height"]
                and box["right"] <= box["width"] + 0.5)  # fmt: skip


async def focused(page: Page) -> str:
    """The focused element: its data-device, data-alert of its item, or tag."""
    result: str = await page.evaluate(
        """() => { const e = document.activeElement;
                   const li = e && e.closest('li');
                   return e === document.body ? 'body'
                     : (li && (li.dataset.device || li.dataset.alert) || '') + ':' + e.tagName; }"""
    )
    return result


async def rendered_after(page: Page, seconds: float) -> None:
    """Let the page's 5-second refresh and a few live statuses pass (a user who reads on)."""
    await asyncio.sleep(seconds)


def test_nurse_view_on_ward_screens(broker, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    NurseAccounts(tmp_path / "gw" / "nurses.json").add(USER, PASSWORD)
    seen: dict[str, Any] = {}

    async def during(gw, fleet):
        # prescribed an hour ago, three times a day: 20 minutes each
        now = time.time()
        slot = datetime.fromtimestamp(now - 600).strftime("%H:%M")
        later = (datetime.fromtimestamp(now) + timedelta(hours=6)).strftime("%H:%M")
        early = (datetime.fromtimestamp(now) - timedelta(hours=6)).strftime("%H:%M")
        schedule = check_schedule({"sessions_per_day": 3, "duration_min": 20, "risk_colour":
                                   "yellow", "times": [early, slot, later]}, now - 3600)  # fmt: skip
        gw.recordings.store.set_schedule("fh-01", schedule)
        # an alert raised and cleared before anyone looked: shown, asking for nothing
        fault = AlertTracker("fh-01", gw.publish)
        fault.set("sample_rate", True, "sampling at 3.9 kHz", severity="high")
        fault.set("sample_rate", False, "sampling at 4.0 kHz again", severity="high")
        web = WebServer(gw, listen="127.0.0.1:0")
        await web.start()
        gw.web = web  # stopped with the gateway
        async with chromium() as browser:
            context = await browser.new_context(viewport={"width": 1280, "height": 900},
                                                locale="en-GB")  # fmt: skip
            errors: list[str] = []
            context.on("weberror", lambda e: errors.append(str(e.error)))
            await context.add_init_script(COUNT_BEEPS)
            page = await context.new_page()
            page.on("response", lambda r: refused(r) and errors.append(f"{r.status} {r.url}"))
            await log_in(page, web.url)
            # the first device is shown as a chosen one: its strip, sessions and link
            await page.wait_for_selector("#mother-link:not(:empty)", state="attached")
            await page.wait_for_selector("#strip:not([data-points='0'])", state="attached")
            seen["selected"] = await page.get_attribute(CARD, "aria-current")
            seen["mother_link"] = await page.text_content("#mother-link")
            seen["untranslated"] = await page.evaluate(UNTRANSLATED)
            seen["keys_zh"] = await page.evaluate(KEYS_ZH)
            await page.wait_for_selector("#mother-qr:not([hidden])")  # its QR code too
            seen["qr_width"] = await page.evaluate(
                "() => document.getElementById('mother-qr').naturalWidth"
            )

            # the alert: banner, title, tone
            await page.wait_for_selector(PHOTOTHERAPY + " button.ack", timeout=30000)
            await page.wait_for_selector("#alert-banner.high")
            seen["title"] = await page.title()
            seen["count"] = await page.text_content("#alert-count")
            seen["count_attr"] = await page.get_attribute("#alert-banner", "data-count")
            seen["asking"] = len(await page.query_selector_all("li.alert.raised.unacked"))
            seen["cleared"] = await page.get_attribute(CLEARED, "class")
            seen["cleared_asks"] = await page.query_selector(CLEARED + " button.ack")
            # this Chromium lets a page sound without a touch: the tone starts at once
            await page.wait_for_selector("#alert-banner[data-tone='sounding']")
            seen["beeps"] = await page.evaluate("() => window.beeps")
            await page.click("#tone-mute")
            seen["tone_muted"] = await page.get_attribute("#alert-banner", "data-tone")
            seen["mute_pressed"] = await page.get_attribute("#tone-mute", "aria-pressed")
            seen["tone_state"] = await page.text_content("#tone-state")
            muted_at = await page.evaluate("() => window.beeps")

            # a browser that refuses sound: the banner says so, nothing breaks
            refusing = await browser.new_context(viewport={"width": 1024, "height": 768})
            refusing.on("weberror", lambda e: errors.append(str(e.error)))
            await refusing.add_init_script(REFUSE_SOUND)
            other = await refusing.new_page()
            await log_in(other, web.url)
            await other.wait_for_selector("#alert-banner.high[data-tone='blocked']")
            await other.click("#alert-newest")  # a touch, and sound still refused
            await other.wait_for_selector("#alert-banner.high[data-tone='blocked']")
            seen["refused_state"] = await other.text_content("#tone-state")
            await refusing.close()

            # the monitor's card: its schedule and the session being recorded
            await page.wait_for_selector(CARD + " .schedule progress", timeout=30000)
            seen["schedule"] = await page.text_content(CARD + " .schedule")
            seen["schedule_status"] = await page.get_attribute(
                CARD + " .schedule .badge", "data-status"
            )

            # keyboard focus on a card, then on an alert's button, through refreshes
            await page.focus("li.dev[data-device='tcb-01']")
            await rendered_after(page, 6.5)
            seen["focus_card"] = await focused(page)
            await page.focus(PHOTOTHERAPY + " button.ack")
            await rendered_after(page, 6.5)
            seen["focus_ack"] = await focused(page)
            seen["beeps_muted"] = await page.evaluate("() => window.beeps") - muted_at

            # every viewport: the banner on screen without scrolling, and after scrolling
            for name, (w, h) in VIEWPORTS.items():
                await page.set_viewport_size({"width": w, "height": h})
                await page.evaluate("() => window.scrollTo(0, 0)")
                seen[f"banner_{name}"] = await banner_on_screen(page)
                await page.screenshot(path=str(ARTIFACTS / f"ward-{name}-ctg.png"))
                await page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
                seen[f"banner_{name}_scrolled"] = await banner_on_screen(page)
                await page.evaluate("() => window.scrollTo(0, 0)")
            seen["axe_phone"] = serious(await run_axe(page))  # the one-column layout
            await page.set_viewport_size({"width": 1024, "height": 768})
            await page.locator("#sessions").screenshot(path=str(ARTIFACTS / "ward-mother-link.png"))
            seen["axe_fetal"] = serious(await run_axe(page))
            # by keyboard: the alert's own button shows its device
            await page.focus(PHOTOTHERAPY + " button.open")
            await page.keyboard.press("Enter")
            await page.wait_for_selector("#nomogram[data-readings]:not([data-readings='0'])",
                                         state="attached")  # fmt: skip
            seen["nomogram_label"] = await page.get_attribute("#nomogram", "aria-label")
            seen["axe_jaundice"] = serious(await run_axe(page))
            await page.screenshot(path=str(ARTIFACTS / "ward-tablet-jaundice.png"))
            await page.focus(CARD)  # and a device's card, with Enter
            await page.keyboard.press("Enter")
            await page.wait_for_selector(CARD + "[aria-current='true']")
            await page.wait_for_selector("#strip:not([data-points='0'])", state="attached")
            seen["strip_label"] = await page.get_attribute("#strip", "aria-label")

            # Chinese, kept across a reload, and back
            await page.click("#lang-toggle")
            await page.wait_for_selector("html[lang='zh-CN']", state="attached")
            seen["zh"] = {k: await page.text_content(s) for k, s in (
                ("devices", "#devices-h"), ("count", "#alert-count"),
                ("alert", PHOTOTHERAPY + " .what"), ("card", CARD))}  # fmt: skip
            seen["zh_title"] = await page.title()
            await page.reload()
            await page.wait_for_selector(PHOTOTHERAPY, timeout=20000)
            seen["zh_after_reload"] = await page.text_content("#devices-h")
            seen["axe_zh"] = serious(await run_axe(page))
            await page.screenshot(path=str(ARTIFACTS / "ward-tablet-zh.png"))
            await page.click("#lang-toggle")
            await page.wait_for_selector("html[lang='en']", state="attached")
            seen["en_again"] = await page.text_content("#devices-h")

            # acknowledged: the count and the title go down
            before = int(await page.get_attribute("#alert-banner", "data-count") or 0)
            await page.click(PHOTOTHERAPY + " button.ack")
            await page.wait_for_selector(PHOTOTHERAPY + " .acked")
            seen["count_drop"] = (before, int(await page.get_attribute(
                "#alert-banner", "data-count") or 0))  # fmt: skip
            seen["errors"] = errors

    run_chain(broker, tmp_path, SPECS, seconds=0, during=during)

    assert seen["selected"] == "true" and "/m/" in seen["mother_link"]
    assert seen["qr_width"] > 100  # the QR code of the link, drawn
    assert seen["count_attr"] and int(seen["count_attr"]) == seen["asking"] >= 1
    assert "cleared" in seen["cleared"].split() and seen["cleared_asks"] is None
    assert seen["title"].startswith(f"({seen['count_attr']}) "), seen["title"]
    assert "to acknowledge" in seen["count"]
    assert seen["beeps"] >= 5  # a burst of 3 + 2
    assert seen["tone_muted"] == "muted" and seen["mute_pressed"] == "true"
    assert "silenced until" in seen["tone_state"]
    assert seen["beeps_muted"] == 0  # 13 s silenced, more than one repeat (10 s)
    assert "touch the page" in seen["refused_state"]
    assert "3× a day, 20 min" in seen["schedule"] and seen["schedule_status"] == "recording"
    assert re.search(r"\d+ of 20 minutes with a heart rate", seen["schedule"]), seen["schedule"]
    assert seen["focus_card"] == "tcb-01:LI", seen["focus_card"]
    assert seen["focus_ack"].endswith(":BUTTON") and "tcb_above_phototherapy" in seen["focus_ack"]
    for name in VIEWPORTS:
        box = seen[f"banner_{name}"]
        assert box["scrollY"] == 0 and inside(box), (name, box)
        assert inside(seen[f"banner_{name}_scrolled"]), (name, seen[f"banner_{name}_scrolled"])
    assert seen["axe_fetal"] == [], describe(seen["axe_fetal"])
    assert seen["axe_phone"] == [], describe(seen["axe_phone"])
    assert seen["axe_jaundice"] == [], describe(seen["axe_jaundice"])
    assert seen["axe_zh"] == [], describe(seen["axe_zh"])
    assert "mg/dL" in seen["nomogram_label"] and "reading" in seen["nomogram_label"]
    assert "CTG strip" in seen["strip_label"] and "bpm" in seen["strip_label"]
    assert seen["zh"]["devices"] == "设备" and "条警报待确认" in seen["zh"]["count"]
    assert seen["zh"]["alert"] == "经皮胆红素超过光疗线"
    assert "胎心监护仪" in seen["zh"]["card"] and "每天 3 次" in seen["zh"]["card"]
    assert "护士站" in seen["zh_title"] and seen["zh_after_reload"] == "设备"
    assert seen["en_again"] == "Devices"
    assert seen["untranslated"] == []
    assert {k for k in MODULE_KEYS.values() if k not in seen["keys_zh"]} == set()
    assert seen["count_drop"][1] == seen["count_drop"][0] - 1
    assert seen["errors"] == []
    for name in [*(f"ward-{v}-ctg.png" for v in VIEWPORTS), "ward-tablet-jaundice.png",
                 "ward-tablet-zh.png", "ward-mother-link.png"]:  # fmt: skip
        assert (ARTIFACTS / name).stat().st_size > 5_000


def _toml(d: dict[str, Any]) -> str:
    lines = []
    for section, values in d.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def test_stopping_the_gateway_with_a_page_open_logs_no_error(tmp_path: Path):
    """`perimon gateway` as its own process, a nurse's page open on its live stream; SIGTERM:
    the stream ends cleanly (the page says the gateway stopped), the process exits 0 and its log
    has no traceback and no ERROR (before: uvicorn cancelled the stream after its 2 s grace and
    logged 'Exception in ASGI application')."""
    raw = gateway_config(tmp_path, "gw-stop", web=True)
    cfg = config_from_dict(raw)
    cfg_path, log = tmp_path / "gw.toml", tmp_path / "gateway.log"
    cfg_path.write_text(_toml(raw))
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    url = f"http://{cfg.web.listen}"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "gateway", "-c",
                                 str(cfg_path), "-v"], cwd=REPO, stdout=out, stderr=out)  # fmt: skip
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with chromium() as browser:
            page = await browser.new_page()

            async def served() -> bool:
                try:
                    return (await page.request.get(url + "/login", timeout=2000)).ok
                except Exception:  # Playwright's own error while nothing listens yet
                    return False

            await eventually_async(served, 30, "the nurse view did not start")
            await log_in_as(page, url, USER, PASSWORD)
            await page.wait_for_selector("#live-state.on")
            proc.send_signal(signal.SIGTERM)
            seen["rc"] = await asyncio.to_thread(proc.wait, 30)
            await page.wait_for_selector("#live-state.off")
            seen["live_state"] = await page.get_attribute("#live-state", "data-state")

    try:
        asyncio.run(main())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert seen["rc"] == 0, text
    assert "Traceback" not in text and "ERROR" not in text, text
    assert seen["live_state"] == "gateway_stopping"
