"""A jaundice meter's detail in Debian's Chromium (Playwright), with the real firmware pressed by
a simulated nurse every few seconds: the Bhutani zones and the AAP 2022 lines named on the
chart and every line inside it, amounts in the gateway's unit (mg/dL, or umol/L for a Chinese
ward) with words instead of signed numbers, the next measurement as a time, the readings table
a page at a time, no "no contact" badge between presses, and a corrected birth time moving the
readings instead of plotting them twice. Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from axe_playwright_python.base import AXE_SCRIPT
from PIL import Image
from playwright.async_api import Page, async_playwright

from devtools.broker import free_port
from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.web.nurses import NurseAccounts
from simulators.fleet import DeviceSpec, Fleet
from tests.harness.axe import DEFAULT_TAGS, describe, serious
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, log_in_as
from tests.harness.chain import gateway_config, running_fleet, running_gateway
from tests.harness.paths import ARTIFACTS
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.system

USER, PASSWORD = "nurse.li", "correct horse battery"
METER = "li.dev[data-device='tcb-01']"
BORN_H = 40.0  # the baby's age when the gateway starts
# 8 mg/dL at 40 h, 38 weeks: about 6.7 below the phototherapy line (no alert, a follow-up band)
SPEC = DeviceSpec("tcb-01", "jaundice", seed=7, skin_group="light", bilirubin_mg_dl=8.0,
                  press_every_s=3.0)  # fmt: skip
ZONE_NAMES = ("high risk (>95th)", "high-intermediate (75th–95th)",
              "low-intermediate (40th–75th)", "low risk (<40th)")  # fmt: skip
LINE_COLOURS = ((0x1F, 0x5F, 0xBF), (0x8B, 0x1A, 0x1A))  # phototherapy, exchange (nomogram.js)


def run(broker, tmp_path, unit: str, during) -> None:
    """A gateway showing bilirubin in `unit` with the nurse view, and the meter; `during(gw)`."""
    radio = f"127.0.0.1:{free_port()}"
    birth = (datetime.now(UTC) - timedelta(hours=BORN_H)).isoformat()
    raw = gateway_config(tmp_path, mqtt={"host": broker.host, "port": broker.port}, radio=radio,
                         web=True, processing={"status_interval_s": 1.0},
                         devices={"tcb-01": {"birth_time": birth, "ga_weeks": 38}})  # fmt: skip
    raw["web"]["bilirubin_unit"] = unit
    cfg = config_from_dict(raw)
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)

    async def main() -> None:
        fleet = Fleet([SPEC], radio, tmp_path / "devices", gateway=cfg)
        async with running_gateway(Gateway(cfg)) as gw, running_fleet(fleet):
            await during(gw)

    asyncio.run(main())


async def open_meter(pw, url: str, viewport: dict) -> tuple:
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    context = await browser.new_context(viewport=viewport, timezone_id="UTC")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await log_in_as(page, url, USER, PASSWORD)
    await page.wait_for_selector(METER, timeout=30000)
    # the list is drawn again at every status: a click event, not a pointer
    await page.dispatch_event(METER, "click")
    await page.wait_for_selector("#nomogram[data-readings]:not([data-readings='0'])",
                                 state="attached", timeout=60000)  # fmt: skip
    return browser, page, errors


async def text(page: Page, selector: str) -> str:
    return (await page.text_content(selector)) or ""


async def jaundice_violations(page: Page) -> list[dict]:
    """axe-core's violations inside the meter's detail (#jaundice) only: the rest of the page
    is another part's."""
    await page.evaluate(AXE_SCRIPT)
    options = {"runOnly": {"type": "tag", "values": DEFAULT_TAGS}, "resultTypes": ["violations"]}
    result = await page.evaluate("(o) => axe.run('#jaundice', o)", options)
    return list(result["violations"])


async def row_ids(page: Page) -> list[str]:
    """The msg_id of each row of the readings table's page (attributes, not eval: the page's
    CSP forbids it)."""
    rows = page.locator("#tcb-rows tr")
    return [await rows.nth(i).get_attribute("data-msg") or "" for i in range(await rows.count())]


async def line_pixels_outside_plot(page: Page) -> int:
    """Pixels of the phototherapy or exchange line's colour outside the plot's box."""
    box = [int(v) for v in ((await page.get_attribute("#nomogram", "data-plot")) or "").split()]
    png = await page.locator("#nomogram").screenshot()
    img = Image.open(io.BytesIO(png)).convert("RGB")
    left, top, right, bottom = box
    outside = 0
    for yy in range(img.height):
        for xx in range(img.width):
            if left - 1 <= xx <= right + 1 and top - 1 <= yy <= bottom + 1:
                continue
            r, g, b = img.getpixel((xx, yy))
            if any(abs(r - c[0]) + abs(g - c[1]) + abs(b - c[2]) < 40 for c in LINE_COLOURS):
                outside += 1
    return outside


def test_meter_in_mg_dl_labels_pages_contact_and_a_corrected_birth_time(broker, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    seen: dict = {}

    async def during(gw) -> None:
        async with async_playwright() as pw:
            browser, page, errors = await open_meter(pw, gw.web.url, {"width": 1024, "height": 768})
            try:
                # between presses (1.5 s of every 3 s the probe is in the air), for 12 s
                badges, valid = 0, 0
                for _ in range(48):
                    card = await text(page, METER)
                    valid += "TcB" in card and "mg/dL" in card
                    badges += "no contact" in card
                    await asyncio.sleep(0.25)
                seen["card_samples"], seen["no_contact"] = valid, badges

                async def a_second_page() -> int:
                    m = re.search(r"of (\d+)", await text(page, "#tcb-page-text"))
                    return int(m.group(1)) if m and int(m.group(1)) > 12 else 0

                await eventually_async(a_second_page, 90, "fewer than 13 readings", every_s=0.5)
                seen["rows_first"] = await page.locator("#tcb-rows tr").count()
                seen["first_ids"] = await row_ids(page)
                seen["page_text"] = await text(page, "#tcb-page-text")
                seen["newer_disabled"] = await page.is_disabled("#tcb-pager button[data-go='-1']")
                await page.click("#tcb-pager button[data-go='1']")
                seen["page_text_older"] = await text(page, "#tcb-page-text")
                seen["older_ids"] = await row_ids(page)
                await page.click("#tcb-pager button[data-go='-1']")
                seen["heads"] = await text(page, "table.readings thead")
                seen["rows_text"] = await text(page, "#tcb-rows")
                seen["advice"] = await text(page, "#tcb-advice")
                seen["now"] = await text(page, "#tcb-now")
                seen["named"] = await page.get_attribute("#nomogram", "data-named")
                seen["unit"] = await page.get_attribute("#nomogram", "data-unit")
                seen["outside"] = await line_pixels_outside_plot(page)
                await page.screenshot(path=str(ARTIFACTS / "jaundice-view-tablet.png"),
                                      full_page=True)  # fmt: skip

                # the nurse corrects the birth time: the baby was born 10 h earlier
                before = await page.get_attribute("#nomogram", "data-reading-ids")
                seen["before_ids"] = (before or "").split()
                configured = datetime.fromisoformat(gw.cfg.devices["tcb-01"]["birth_time"])
                born = configured - timedelta(hours=10)  # the form takes whole minutes
                await page.fill("input[name=birth_time]", born.strftime("%Y-%m-%dT%H:%M"))
                await page.click("#settings button[type=submit]")
                await page.wait_for_selector("#tcb-reassessed:not([hidden])", timeout=20000)
                await page.wait_for_selector("#tcb-rows .reassessed-note")
                after = await page.get_attribute("#nomogram", "data-reading-ids")
                seen["after_ids"] = (after or "").split()
                seen["plotted"] = int(await page.get_attribute("#nomogram", "data-readings") or 0)
                answer = await page.request.get(gw.web.url + "/api/devices/tcb-01/tcb")
                body = await answer.json()
                seen["served"], seen["served_baby"] = body["readings"], body["baby"]
                seen["corrected"] = born.replace(second=0, microsecond=0)
                seen["reassessed_note"] = await text(page, "#tcb-rows .reassessed-note")
                await page.screenshot(path=str(ARTIFACTS / "jaundice-view-reassessed.png"),
                                      full_page=True)  # fmt: skip
                seen["errors"] = errors
            finally:
                await browser.close()

    run(broker, tmp_path, "mg/dL", during)

    # a meter between presses: its last reading, never a "no contact" badge beside it
    assert seen["card_samples"] > 40 and seen["no_contact"] == 0
    # paged, newest first
    assert seen["rows_first"] == 10 and seen["page_text"].startswith("readings 1–10 of ")
    assert seen["newer_disabled"]
    assert seen["page_text_older"].startswith("readings 11–")
    assert not set(seen["first_ids"]) & set(seen["older_ids"])
    # labels: zones and lines named on the chart, every amount with its unit, words not signs
    assert seen["named"].split("|") == [*ZONE_NAMES, "phototherapy", "exchange"]
    assert seen["unit"] == "mg/dL" and "mg/dL" in seen["now"]
    for head in ("Bhutani zone", "Phototherapy", "Exchange", "Next measurement"):
        assert head in seen["heads"]
    assert re.search(r"below phototherapy by \d+\.\d mg/dL \(line \d+\.\d mg/dL\)", seen["advice"])
    assert re.search(r"to exchange: below exchange by \d+\.\d mg/dL", seen["advice"])
    assert "Next measurement:" in seen["advice"] and "AAP 2022" in seen["advice"]
    assert not re.search(r"(?<![\w–])-\d", seen["rows_text"] + seen["advice"])  # no "-7.3"
    assert "µmol/L" not in seen["rows_text"] + seen["advice"]
    assert seen["outside"] == 0  # every line clipped to the plot
    # the corrected birth time: each reading once, moved by 10 h, and said to be re-assessed
    valid = [r for r in seen["served"] if r["assessment"] is not None]
    served_birth = datetime.fromisoformat(seen["served_baby"]["birth_time"])
    assert served_birth == seen["corrected"] and seen["served_baby"]["ga_weeks"] == 38
    assert len(seen["after_ids"]) == len(set(seen["after_ids"])) == seen["plotted"]
    assert set(seen["before_ids"]) <= set(seen["after_ids"]) <= {r["msg_id"] for r in valid}
    assert len(valid) - seen["plotted"] <= 2  # at most the presses since the page drew
    moved = [r for r in valid if r["reassessed"]]
    assert len(moved) >= len(seen["before_ids"])
    for r in moved:
        shift = r["assessment"]["age_hours"] - r["published_assessment"]["age_hours"]
        assert 10.0 - 0.001 <= shift <= 10.0 + 1 / 60 + 0.001  # seconds dropped: earlier
    assert re.fullmatch(r"re-assessed \(sent as \d+ h\)", seen["reassessed_note"])
    assert seen["errors"] == []
    for name in ("jaundice-view-tablet.png", "jaundice-view-reassessed.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000


def test_a_chinese_ward_reads_every_amount_in_umol_per_litre(broker, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    seen: dict = {}

    async def during(gw) -> None:
        async with async_playwright() as pw:
            browser, page, errors = await open_meter(pw, gw.web.url, {"width": 1280, "height": 900})
            try:
                await page.wait_for_selector("#tcb-advice .tcb-lines", timeout=30000)
                me = await page.request.get(gw.web.url + "/api/me")
                seen["me"] = await me.json()
                seen["now"] = await text(page, "#tcb-now")
                seen["advice"] = await text(page, "#tcb-advice")
                seen["rows"] = await text(page, "#tcb-rows")
                seen["sub"] = await text(page, "#tcb-sub")
                seen["card"] = await text(page, METER)
                seen["unit"] = await page.get_attribute("#nomogram", "data-unit")
                seen["outside"] = await line_pixels_outside_plot(page)
                await page.screenshot(path=str(ARTIFACTS / "jaundice-view-umol.png"),
                                      full_page=True)  # fmt: skip
                seen["axe"] = serious(await jaundice_violations(page))
                await page.set_viewport_size({"width": 390, "height": 844})  # a phone

                async def redrawn_narrow() -> bool:
                    plot = (await page.get_attribute("#nomogram", "data-plot")) or "0 0 999 0"
                    return int(plot.split()[2]) < 390

                await eventually_async(redrawn_narrow, 10, "the chart kept its desktop width")
                seen["phone_outside"] = await line_pixels_outside_plot(page)
                seen["phone_named"] = await page.get_attribute("#nomogram", "data-named")
                await page.screenshot(path=str(ARTIFACTS / "jaundice-view-phone.png"),
                                      full_page=True)  # fmt: skip
                seen["errors"] = errors
            finally:
                await browser.close()

    run(broker, tmp_path, "umol/L", during)

    assert seen["me"]["bilirubin_unit"] == "umol/L" and seen["me"]["umol_l_per_mg_dl"] == 17.1
    assert re.fullmatch(r"\d+ µmol/L", seen["now"].strip())  # whole µmol/L, no decimals
    assert seen["unit"] == "µmol/L" and "amounts in µmol/L" in seen["sub"]
    assert re.search(r"below phototherapy by \d+ µmol/L \(line \d+ µmol/L\)", seen["advice"])
    assert re.search(r"to exchange: below exchange by \d+ µmol/L", seen["advice"])
    assert "mg/dL" not in seen["advice"] + seen["rows"] + seen["card"]
    assert re.search(r"TcB \d+ µmol/L", seen["card"])  # the device list too
    assert seen["outside"] == 0 and seen["phone_outside"] == 0
    # on a phone the zones keep a name, a short one
    assert seen["phone_named"].split("|") == ["high", "high-int.", "low-int.", "low",
                                              "phototherapy", "exchange"]  # fmt: skip
    assert seen["axe"] == [], describe(seen["axe"])
    assert seen["errors"] == []
    for name in ("jaundice-view-umol.png", "jaundice-view-phone.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
