"""A TcB reading that has a number but cannot be assessed although the baby's birth time and
gestation are set says why, everywhere it goes: a reading taken before the birth time and one
of a baby whose stored birth time cannot be read carry `assessment_error` on MQTT (within the
tcb schema), in the nurse view's API, and in the page, in English and Chinese ("not assessed:
..."), never the request to set the birth time and gestation. Real firmware, gateway, Mosquitto
and Debian's Chromium."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import async_playwright

from devtools.broker import free_port
from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.times import iso_time, parse_time
from gateway.web.nurses import NurseAccounts
from simulators.fleet import DeviceSpec, Fleet
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, log_in_as
from tests.harness.chain import gateway_config, running_fleet, running_gateway
from tests.harness.contract import validator
from tests.harness.mqtt import Subscriber
from tests.harness.wait import eventually_async
from tests.harness.web import api, login, opener

pytestmark = pytest.mark.system

USER, PASSWORD = "nurse.li", "correct horse battery"
UNREADABLE = "yesterday 14:00"  # as an older gateway or a hand edit could have stored it
SPECS = [
    DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=11.0,
               press_every_s=3.0),
    DeviceSpec("tcb-02", "jaundice", seed=7, skin_group="light", bilirubin_mg_dl=8.0,
               press_every_s=3.0),
]  # fmt: skip


def _numeric(readings: list[dict]) -> list[dict]:
    return [r for r in readings if r.get("tcb_mg_dl") is not None]


def test_readings_that_cannot_be_assessed_say_why(broker, tmp_path):
    # tcb-01: the birth time stored is an hour from now, so every press is before it (a baby
    # whose meter was used before the birth time was set, or a birth time set wrong); tcb-02:
    # a stored birth time that is not an ISO 8601 time. Both with a gestation.
    born = datetime.now(UTC) + timedelta(hours=1)
    radio = f"127.0.0.1:{free_port()}"
    raw = gateway_config(tmp_path, mqtt={"host": broker.host, "port": broker.port}, radio=radio,
                         web=True, processing={"status_interval_s": 1.0})  # fmt: skip
    cfg = config_from_dict(raw)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    (cfg.data_dir / "devices.json").write_text(json.dumps({
        "tcb-01": {"birth_time": born.isoformat(), "ga_weeks": 38.0},
        "tcb-02": {"birth_time": UNREADABLE, "ga_weeks": 38.0},
    }))  # fmt: skip
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    sub = Subscriber(broker.host, broker.port)
    seen: dict = {}

    def from_api(url: str) -> dict:
        web, _ = opener(https=url.startswith("https"))
        login(web, url, PASSWORD, USER)
        return {d: api(web, url, f"/api/devices/{d}/tcb") for d in ("tcb-01", "tcb-02")}

    async def page_texts(url: str, locale: str) -> dict:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(locale=locale, timezone_id="UTC",
                                                    ignore_https_errors=True)  # fmt: skip
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await log_in_as(page, url, USER, PASSWORD)
                out = {"errors": errors}
                for device in ("tcb-01", "tcb-02"):
                    meter = f"li.dev[data-device='{device}']"
                    await page.wait_for_selector(meter, timeout=30000)
                    await page.dispatch_event(meter, "click")
                    await page.wait_for_selector(
                        f"#tcb-rows tr[data-msg^='{device}:']", state="attached", timeout=30000
                    )
                    # the newest row with a number: its last cell, and the headline's advice
                    row = page.locator(f"#tcb-rows tr[data-msg^='{device}:']").filter(
                        has_not=page.locator("td.flagged")
                    )
                    out[device] = {
                        "row": await row.first.locator("td").last.text_content(),
                        "advice": await page.text_content("#tcb-advice"),
                    }
            finally:
                await browser.close()
        return out

    async def main() -> None:
        fleet = Fleet(SPECS, radio, tmp_path / "devices", gateway=cfg)
        async with running_gateway(Gateway(cfg)) as gw, running_fleet(fleet):
            both = lambda: all(_numeric(sub.of(d, "tcb")) for d in ("tcb-01", "tcb-02"))  # noqa: E731
            await eventually_async(both, 60, "no TcB reading with a number from both meters")
            url = gw.web.url
            seen["api"] = await asyncio.to_thread(from_api, url)
            seen["en"] = await page_texts(url, "en-GB")
            seen["zh"] = await page_texts(url, "zh-CN")

    asyncio.run(main())
    sub.close()

    before = f"taken before the birth time ({iso_time(parse_time(born.isoformat()) or 0.0)})"
    unreadable = f"birth_time: not an ISO 8601 time with a time zone: {UNREADABLE!r}"
    tcb_schema = validator("tcb")
    for device, why in (("tcb-01", before), ("tcb-02", unreadable)):
        # MQTT: every reading with a number says why it has no assessment, within the schema
        published = _numeric(sub.of(device, "tcb"))
        assert published, device
        for r in published:
            tcb_schema.validate(r)
            assert r["assessment"] is None
            assert r.get("assessment_error", "").startswith(why), (device, r)
        # the nurse view's API
        status, body = seen["api"][device]
        assert status == 200, body
        served = _numeric(body["readings"])
        assert served and all(r["assessment"] is None for r in served), served
        assert all(r.get("assessment_error", "").startswith(why) for r in served), served
        # the page, in both languages: "not assessed: <why>" in the row and the headline
        for lang, prefix in (("en", "not assessed: "), ("zh", "未评估：")):
            texts = seen[lang][device]
            assert texts["row"].startswith(prefix + why), (lang, device, texts)
            assert texts["advice"].startswith(prefix + why), (lang, device, texts)
    for lang in ("en", "zh"):
        assert seen[lang]["errors"] == [], seen[lang]["errors"]
    # a wrong birth time is not a missing one: the request to set it is not shown
    assert "set birth time" not in json.dumps(seen["en"])
