"""The nurse view's words in Debian's Chromium, from a gateway's history: a fetal monitor with
a session being recorded and its CTG findings, a jaundice meter with assessed and flagged
readings, a meter without a reading and a device known only by its settings.

In Chinese no English word the page knows is left in the jaundice meter's detail or under the
strip; the charts' text alternatives (aria-label) name the latest FHR with the CTG findings and
the latest TcB with its zone and distance to the phototherapy line, in the page's language; the
fetal monitor's card counts minutes with a heart rate; and no card says "null", "undefined" or
"NaN", for every device here and for each of their fields missing in turn."""

from __future__ import annotations

import asyncio
import math
import re
import time
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.async_api import Page

from gateway.config import config_from_dict
from gateway.processing.recording.schedule import check_schedule
from gateway.processing.recording.service import Recordings
from gateway.state.history import History
from gateway.times import iso_time
from gateway.web.nurses import NurseAccounts
from tests.harness.browser import log_in_as, new_page, served_to_chromium
from tests.harness.paths import ARTIFACTS
from tests.harness.web import PASSWORD, USER
from tests.test_ctg_paper import fhr_messages

pytestmark = pytest.mark.system

BORN_H = 40.0  # the baby's age now
# English words the page may keep in Chinese: symbols, names of methods and guidelines
KEPT = {"TcB", "TSB", "AAP", "Bhutani", "CTG", "FIGO", "Dawes", "Redman", "STV", "bpm", "mg",
        "dL", "mol", "PDF", "QR", "h", "cm", "min", "ms", "UA", "zh", "CN", "perimon"}  # fmt: skip
# every English string of the page's table that is a word or more (not a symbol)
ENGLISH = """async () => { const i = await import('/static/js/i18n.js');
  const en = i.strings('en'), zh = i.strings('zh');
  return Object.keys(en).filter((k) => typeof en[k] === 'string' && en[k] !== zh[k]
    && /[a-z]{3}/.test(en[k])).map((k) => en[k]); }"""
# each card drawn again with each field of its device (and of its nested objects) missing
FUZZ_CARDS = """async () => {
  const { state } = await import('/static/js/state.js');
  const { renderDevices } = await import('/static/js/devices.js');
  const real = [...state.devices.values()].map((d) => JSON.parse(JSON.stringify(d)));
  const paths = [];
  const walk = (o, p) => { for (const [k, v] of Object.entries(o || {})) {
    paths.push([...p, k]); if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, [...p, k]); } };
  const bad = [];
  for (const d of real) {
    paths.length = 0; walk(d, []);
    for (const p of paths) {
      if (p.length === 1 && p[0] === 'device_id') continue;
      for (const missing of [null, undefined]) {
        const copy = JSON.parse(JSON.stringify(d));
        let o = copy; for (const k of p.slice(0, -1)) o = o[k];
        o[p[p.length - 1]] = missing;
        state.devices = new Map([[copy.device_id, copy]]);
        renderDevices();
        const text = document.getElementById('device-list').textContent;
        if (/null|undefined|NaN/.test(text)) bad.push(`${d.device_id} ${p.join('.')}=${missing}: ${text}`);
      }
    }
  }
  state.devices = new Map(real.map((d) => [d.device_id, d]));
  renderDevices();
  return bad;
}"""


def tcb_reading(seq: int, at: float, tcb: float | None, flag: str = "") -> dict[str, Any]:
    return {"msg_id": f"tcb-01:1:tcb:{seq}", "device_id": "tcb-01", "boot": 1, "seq": seq,
            "t": iso_time(at), "tcb_mg_dl": tcb, "tcb_umol_l": None if tcb is None else tcb * 17.1,
            "ci_low_mg_dl": None if tcb is None else tcb - 1.2,
            "ci_high_mg_dl": None if tcb is None else tcb + 1.2, "flag": flag,
            "assessment": None}  # fmt: skip


def ctg_message(now: float) -> dict[str, Any]:
    return {"msg_id": f"fh-01:2:ctg:{int(now)}", "device_id": "fh-01", "t": iso_time(now - 5),
            "window_start": iso_time(now - 605), "window_s": 600, "ctg_mode": "intrapartum",
            "figo_class": "normal", "baseline_bpm": 136.4, "variability_bpm": 7.5,
            "accelerations": [], "decelerations": [], "reasons": ["note: signal loss 3%"]}  # fmt: skip


def gateway(tmp_path) -> SimpleNamespace:
    now = time.time()
    born = iso_time(now - BORN_H * 3600)
    cfg = config_from_dict({"gateway": {"data_dir": "gw"},
                            "devices": {"tcb-01": {"birth_time": born, "ga_weeks": 38}}},
                           base_dir=tmp_path)  # fmt: skip
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    h = History(cfg.data_dir)
    for m in fhr_messages(now - 12 * 60, 12, boot=2):
        h.record(("device", "fh-01", "fhr"), m)
    h.record(("device", "fh-01", "ctg"), ctg_message(now))
    for dev, kind in (("fh-01", "fetal_heart"), ("tcb-01", "jaundice"), ("tcb-02", "jaundice")):
        h.record(("device", dev, "status"), {"device_id": dev, "device_type": kind,
                 "link": "connected", "battery_pct": 80, "t": iso_time(now)})  # fmt: skip
    h.record(("device", "tcb-01", "tcb"), tcb_reading(1, now - 3600, 9.0))
    h.record(("device", "tcb-01", "tcb"), tcb_reading(2, now - 600, 10.5))
    h.record(("device", "tcb-01", "tcb"), tcb_reading(3, now - 60, None, "no_contact"))
    h.settings.update("fh-00", {"label": "Room 9"})  # known only by its settings
    recordings = Recordings(cfg.data_dir, None, h, lambda *a: None)  # type: ignore[arg-type]
    recordings.store.set_schedule("fh-01", check_schedule(
        {"sessions_per_day": 2, "duration_min": 20, "risk_colour": "yellow"}, now - 3600))  # fmt: skip
    start = now - 5 * 3600  # a session this morning, and one being recorded
    recordings.store.add({"session_id": "fh-01:1:1", "device_id": "fh-01", "status": "complete",
                          "start": iso_time(start), "end": iso_time(start + 1200), "due": None,
                          "recorded_min": 20.0, "good_signal_min": 19.5, "heart_rate_min": 19,
                          "prescribed_min": 20.0})  # fmt: skip
    # being recorded: 3 min, 2 with a heart rate
    tracker = recordings.tracker("fh-01")
    rates = [140.0] * 480 + [math.nan] * 240
    tracker.feed(2, 0, rates, [1.0] * 720, True, now - 180, now=now)
    return SimpleNamespace(cfg=cfg, sessions={}, history=h, recordings=recordings)


async def log_in(page: Page, url: str) -> None:
    await log_in_as(page, url, USER, PASSWORD, "/login")
    await page.wait_for_selector("#strip:not([data-points='0'])", state="attached")


def english_left(text: str, english: list[str]) -> list[str]:
    """The page's English strings found in `text`, and English words not kept on purpose
    (device ids are data, not words)."""
    text = re.sub(r"(?:fh|tcb)-\d\d|Room 9", "", text)
    found = [s for s in english if s in text]
    words = [w for w in re.findall(r"[A-Za-z]+", text) if w not in KEPT]
    return found + words


def test_the_nurse_view_in_chinese_and_its_cards(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    gw = gateway(tmp_path)
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with served_to_chromium(gw, listen="127.0.0.1:0") as (web, browser):
            page, errors = await new_page(browser, viewport={"width": 1280, "height": 900},
                                          locale="en-GB")  # fmt: skip
            await log_in(page, web.url)
            card = "li.dev[data-device='fh-01']"
            await page.wait_for_selector(card + " .schedule progress", state="attached")
            seen["card_progress"] = await page.eval_on_selector(
                card + " .schedule progress", "p => [p.value, p.max]"
            )
            seen["card_text"] = await page.text_content(card)
            seen["cards"] = await page.text_content("#device-list")
            seen["fuzz"] = await page.evaluate(FUZZ_CARDS)
            seen["help_note"] = await page.is_visible("#no-help-phone")
            await page.wait_for_selector("#strip[aria-label*='latest FHR']", state="attached")
            seen["strip_en"] = await page.get_attribute("#strip", "aria-label")
            await page.click("li.dev[data-device='tcb-01']")
            await page.wait_for_selector("#nomogram[data-readings='2']", state="attached")
            seen["nomogram_en"] = await page.get_attribute("#nomogram", "aria-label")
            seen["english"] = await page.evaluate(ENGLISH)

            await page.click("#lang-toggle")
            await page.wait_for_selector("html[lang='zh-CN']", state="attached")
            await page.wait_for_selector("#nomogram[aria-label*='经皮胆红素']", state="attached")
            seen["jaundice_zh"] = await page.evaluate(
                """() => { const j = document.getElementById('jaundice');
                  return [j.innerText, ...[...j.querySelectorAll('[aria-label]')]
                    .map((e) => e.getAttribute('aria-label'))].join('\\n'); }"""
            )
            seen["named_zh"] = await page.get_attribute("#nomogram", "data-named")
            seen["nomogram_zh"] = await page.get_attribute("#nomogram", "aria-label")
            seen["cards_zh"] = await page.text_content("#device-list")
            seen["fuzz_zh"] = await page.evaluate(FUZZ_CARDS)
            await page.screenshot(path=str(ARTIFACTS / "nurse-view-jaundice-zh.png"))
            await page.click("li.dev[data-device='fh-01']")
            await page.wait_for_selector("#strip[aria-label*='胎心率']", state="attached")
            await page.wait_for_selector("#session-list li", state="attached")
            seen["strip_zh"] = await page.get_attribute("#strip", "aria-label")
            seen["fetal_zh"] = await page.evaluate(
                """() => { const nav = document.getElementById('strip-nav');
                  const parts = ['fetal-sub', 'fhr-note', 'ctg-label', 'figo-class',
                                 'figo-reasons', 'session-list']
                    .map((id) => document.getElementById(id).innerText);
                  return [nav.innerText, ...parts, ...[...nav.querySelectorAll('[aria-label]')]
                    .map((e) => e.getAttribute('aria-label'))].join('\\n'); }"""
            )
            seen["strip_labels_zh"] = await page.get_attribute("#strip", "data-labels")
            await page.screenshot(path=str(ARTIFACTS / "nurse-view-fetal-zh.png"))
            seen["untranslated"] = await page.evaluate(
                "async () => (await import('/static/js/i18n.js')).untranslated()"
            )
            seen["errors"] = errors

    asyncio.run(main())
    assert seen["errors"] == []
    # the card: minutes with a heart rate (2 of 20), not minutes recorded (3)
    assert seen["card_progress"] == [2, 20], seen["card_progress"]
    assert "2 of 20 minutes with a heart rate" in seen["card_text"], seen["card_text"]
    assert "3 min recorded" in seen["card_text"]
    for text in (seen["cards"], seen["cards_zh"]):
        assert not re.search(r"null|undefined|NaN", text), text
    assert "no skin contact" in seen["cards"]  # the meter's last press, flagged
    assert "Room 9disconnectedDevice · fh-00no reading yet" in seen["cards"]  # kind not known
    assert english_left(seen["cards_zh"], seen["english"]) == [], seen["cards_zh"]
    assert seen["fuzz"] == [], "\n".join(seen["fuzz"])
    assert seen["help_note"]  # no [web] help_phone: the nurse is told beside the mother's link
    assert seen["fuzz_zh"] == [], "\n".join(seen["fuzz_zh"])
    # the charts' text alternatives
    assert re.search(r"latest FHR 1[34]\d bpm at \d\d:\d\d; CTG FIGO 2015: normal, baseline 136 "
                     r"bpm, variability 7.5 bpm", seen["strip_en"]), seen["strip_en"]  # fmt: skip
    assert re.search(r"2 readings, latest 10.5 mg/dL at (yesterday )?\d\d:\d\d, 40 h old, Bhutani high-intermediate "
                     r"\(75th–95th\), below phototherapy by \d+\.\d mg/dL", seen["nomogram_en"]), (
        seen["nomogram_en"])  # fmt: skip
    assert re.search(r"最近胎心率 1[34]\d bpm.*FIGO 2015: 正常，基线 136 bpm，变异 7.5 bpm",
                     seen["strip_zh"]), seen["strip_zh"]  # fmt: skip
    assert re.search(r"2 个读数.*Bhutani 高中危区.*低于光疗线 \d+\.\d mg/dL", seen["nomogram_zh"]), (
        seen["nomogram_zh"])  # fmt: skip
    # no English the page knows in the meter's detail or under the strip
    assert len(seen["english"]) > 100  # the page's English strings, to look for
    assert english_left(seen["jaundice_zh"], seen["english"]) == [], seen["jaundice_zh"]
    assert english_left(seen["fetal_zh"], seen["english"]) == [], seen["fetal_zh"]
    assert "光疗线" in seen["named_zh"] and "高危区" in seen["named_zh"]
    assert "waiting" not in seen["strip_labels_zh"]
    assert "注：信号丢失 3%" in seen["fetal_zh"]  # the analysis's reason, in Chinese
    assert seen["untranslated"] == []
