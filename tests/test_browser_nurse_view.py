"""The nurse view in a real headless browser (Debian's Chromium driven by Playwright): log in,
see the CTG strip of a streaming fetal monitor grow, acknowledge a jaundice alert, and look at
the nomogram. Screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest

from gateway.web.nurses import NurseAccounts
from gateway.web.server import WebServer
from simulators.fleet import DeviceSpec
from tests.harness.browser import chromium, new_page, submit_login
from tests.harness.chain import run_chain
from tests.harness.paths import ARTIFACTS
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.system

USER, PASSWORD = "nurse.amy", "correct horse battery"


async def _points(page) -> int:
    return int(await page.get_attribute("#strip", "data-points") or 0)


async def _wait_points(page, above: int, timeout_s: float = 30.0) -> int:
    async def grown() -> int:
        n = await _points(page)
        return n if n > above else 0

    return await eventually_async(
        grown, timeout_s, f"the strip did not grow past {above} points", every_s=0.5
    )


def test_nurse_view_live_strip_alert_ack_and_nomogram(broker, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    NurseAccounts(tmp_path / "gw" / "nurses.json").add(USER, PASSWORD)
    specs = [
        DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0, snr_db=15),
        # 17 mg/dL at 40 h, 38 weeks: above the AAP 2022 phototherapy line (about 14.7)
        DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=17.0,
                   press_every_s=4.0),
        # its blue LEDs moved since the factory: it fails the weekly check its nurse makes first
        DeviceSpec("tcb-02", "jaundice", seed=6, skin_group="light", bilirubin_mg_dl=8.0,
                   press_every_s=4.0, presses_check_phantom=True,
                   led_shift_nm=(4.0, 4.0, 0.0, 0.0, 0.0, 0.0)),
    ]  # fmt: skip
    seen: dict = {}

    async def during(gw, fleet):
        web = WebServer(gw, listen="127.0.0.1:0")
        await web.start()
        gw.web = web  # stopped with the gateway
        async with chromium() as browser:
            page, errors = await new_page(browser, viewport={"width": 1280, "height": 900})
            await page.goto(web.url + "/")
            assert page.url.endswith("/login")
            await submit_login(page, USER, "wrong password!")
            await page.wait_for_selector("#error:not([hidden])")
            seen["bad_login"] = await page.text_content("#error")
            await submit_login(page, USER, PASSWORD)
            await page.wait_for_selector("li.dev[data-device='fh-01']", timeout=20000)
            await page.click("li.dev[data-device='fh-01']")
            first = await _wait_points(page, 20)
            seen["grown"] = await _wait_points(page, first + 8)
            seen["fhr_now"] = await page.text_content("#fhr-now")
            seen["band"] = await page.text_content("#normal-band")
            await page.screenshot(path=str(ARTIFACTS / "nurse-view-ctg.png"))
            await page.select_option("#speed", "3")
            await page.wait_for_selector("#strip[data-speed='3']", state="attached")
            await page.screenshot(path=str(ARTIFACTS / "nurse-view-ctg-3cm.png"))

            button = "li.alert[data-alert^='tcb-01:alert:tcb_above_phototherapy'] button.ack"
            await page.wait_for_selector(button, timeout=30000)
            await page.click(button)
            acked = "li.alert[data-alert^='tcb-01:alert:tcb_above_phototherapy'] .acked"
            await page.wait_for_selector(acked)
            seen["acked_text"] = await page.text_content(acked)
            # the simulated meter never pressed the check phantom: its weekly check is due
            due = "li.dev[data-device='tcb-01'] .badge:has-text('weekly check due')"
            await page.wait_for_selector(due, timeout=20000)
            seen["check_badge"] = await page.text_content(due)
            failed = "li.dev[data-device='tcb-02'] .badge:has-text('weekly check failed')"
            await page.wait_for_selector(failed, timeout=20000)
            seen["failed_badge"] = await page.text_content(failed)
            await page.click("li.dev[data-device='tcb-01']")
            await page.wait_for_selector(  # selectors, not eval: the page's CSP forbids it
                "#nomogram[data-readings]:not([data-readings='0'])", state="attached"
            )
            seen["advice"] = await page.text_content("#tcb-advice")
            await page.screenshot(path=str(ARTIFACTS / "nurse-view-jaundice.png"))
            seen["errors"] = errors
        seen["acks"] = {a["id"]: a for a in gw.history.alerts.values() if a["acked_by"]}

    run_chain(broker, tmp_path, specs, seconds=0, during=during)

    assert "Wrong user name or password" in seen["bad_login"]
    assert seen["grown"] > 28  # the strip kept updating while the device streamed
    assert "bpm" in seen["fhr_now"] or "no signal" in seen["fhr_now"]
    assert seen["band"] == "110–160 bpm"  # FIGO 2015, sent by the gateway (dsp/ctg_reference.py)
    assert f"acknowledged by {USER}" in seen["acked_text"]
    (ack,) = [a for a in seen["acks"].values() if a["alert"] == "tcb_above_phototherapy"]
    assert ack["acked_by"] == USER and ack["acked_at"]
    assert "phototherapy" in seen["advice"]
    assert seen["check_badge"] == "weekly check due"
    assert seen["failed_badge"] == "weekly check failed"
    assert seen["errors"] == []
    for name in ("nurse-view-ctg.png", "nurse-view-ctg-3cm.png", "nurse-view-jaundice.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
