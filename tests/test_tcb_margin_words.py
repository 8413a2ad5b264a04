"""Where a TcB reading stands against the AAP 2022 lines, in Chinese: the nurse view writes the
gateway's words ("below phototherapy by 2.2 mg/dL", dsp/bilirubin_units.py threshold_phrase)
from their parts, with the amount the gateway rounded, never rounding a margin of its own.

A reading exactly 2.25 mg/dL below the phototherapy line is the case where two rounding rules
part: Python's rounds the tie to even (2.2), JavaScript's toFixed upwards (2.3). The page must
say what the gateway says, in both languages, in the readings table and the nomogram's text."""

from __future__ import annotations

import asyncio
import re
import time
from types import SimpleNamespace
from typing import Any

import pytest

from dsp.bilirubin_zones import phototherapy_threshold_mg_dl
from gateway.config import config_from_dict
from gateway.processing.recording.service import Recordings
from gateway.state.history import History
from gateway.times import iso_time
from gateway.web.nurses import NurseAccounts
from tests.harness.browser import log_in_as, new_page, served_to_chromium
from tests.harness.web import PASSWORD, USER

pytestmark = pytest.mark.system

GA_WEEKS = 38.0
# (age in whole hours, reading minus the phototherapy threshold at that age, mg/dL)
READINGS = [(30, -2.25), (36, -0.04), (40, 1.0)]
AGAINST = re.compile(r"^(?:(above|below) (\S+) by (\S+ \S+)|at (\S+))$")
ZH_LINE = {"phototherapy": "光疗线", "exchange": "换血线"}


def in_chinese(sent: str) -> str:
    """The gateway's English words as the page writes them in Chinese (jaundice.js strings)."""
    m = AGAINST.match(sent)
    assert m is not None, sent
    if m[4]:
        return f"达到{ZH_LINE[m[4]]}"
    return f"{'低于' if m[1] == 'below' else '高于'}{ZH_LINE[m[2]]} {m[3]}"


def gateway(tmp_path) -> SimpleNamespace:
    """A gateway's history with one jaundice meter's readings at whole hours of age, each
    placed against its phototherapy line as READINGS says."""
    born = float(int(time.time()) - 45 * 3600)
    cfg = config_from_dict({"gateway": {"data_dir": "gw"},
                            "devices": {"tcb-01": {"birth_time": iso_time(born),
                                                   "ga_weeks": GA_WEEKS}}},
                           base_dir=tmp_path)  # fmt: skip
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    h = History(cfg.data_dir)
    h.record(("device", "tcb-01", "status"), {"device_id": "tcb-01", "device_type": "jaundice",
             "link": "connected", "battery_pct": 80, "t": iso_time(time.time())})  # fmt: skip
    for seq, (age_h, off) in enumerate(READINGS, 1):
        tcb = phototherapy_threshold_mg_dl(float(age_h), GA_WEEKS, False) + off
        h.record(("device", "tcb-01", "tcb"), {
            "msg_id": f"tcb-01:1:tcb:{seq}", "device_id": "tcb-01", "boot": 1, "seq": seq,
            "t": iso_time(born + age_h * 3600), "tcb_mg_dl": tcb, "tcb_umol_l": tcb * 17.1,
            "ci_low_mg_dl": tcb - 1.2, "ci_high_mg_dl": tcb + 1.2, "flag": "", "assessment": None,
        })  # fmt: skip
    recordings = Recordings(cfg.data_dir, None, h, lambda *a: None)  # type: ignore[arg-type]
    return SimpleNamespace(cfg=cfg, sessions={}, history=h, recordings=recordings)


def test_the_distance_to_a_line_is_the_gateways_in_both_languages(tmp_path):
    gw = gateway(tmp_path)
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with served_to_chromium(gw, listen="127.0.0.1:0") as (web, browser):
            page, errors = await new_page(browser, viewport={"width": 1280, "height": 900},
                                          locale="en-GB")  # fmt: skip
            await log_in_as(page, web.url, USER, PASSWORD)
            await page.wait_for_selector("#nomogram[data-readings='3']", state="attached")
            seen["api"] = await page.evaluate(
                "async () => (await (await fetch('/api/devices/tcb-01/tcb')).json()).readings"
            )
            seen["rows_en"] = await page.inner_text("#tcb-rows")
            seen["head_en"] = await page.inner_text("#tcb-advice .tcb-lines")
            await page.click("#lang-toggle")
            await page.wait_for_selector("#nomogram[aria-label*='经皮胆红素']", state="attached")
            seen["rows_zh"] = await page.inner_text("#tcb-rows")
            seen["head_zh"] = await page.inner_text("#tcb-advice .tcb-lines")
            seen["nomogram_zh"] = await page.get_attribute("#nomogram", "aria-label")
            seen["errors"] = errors

    asyncio.run(main())
    shown = [r["shown"] for r in seen["api"]]
    # the gateway's words: the tie rounded to even, a distance that rounds to nothing is "at"
    assert [s["phototherapy"] for s in shown] == [
        "below phototherapy by 2.2 mg/dL", "at phototherapy", "above phototherapy by 1.0 mg/dL"
    ]  # fmt: skip
    for s in shown:
        for line in ("phototherapy", "exchange"):
            assert s[line] in seen["rows_en"], (s[line], seen["rows_en"])
            assert in_chinese(s[line]) in seen["rows_zh"], (in_chinese(s[line]), seen["rows_zh"])
    assert "2.3 mg/dL" not in seen["rows_zh"]  # the page's own rounding of 2.25 would say so
    latest = shown[-1]
    assert latest["phototherapy"] in seen["head_en"]
    assert in_chinese(latest["phototherapy"]) in seen["head_zh"]
    assert in_chinese(latest["exchange"]) in seen["head_zh"]
    assert in_chinese(latest["phototherapy"]) in seen["nomogram_zh"]
    assert seen["errors"] == []
