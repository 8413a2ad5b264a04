"""The nurse view's CTG strip on standard paper, measured in Debian's Chromium: the bold rules
1 cm apart (96 CSS px per inch) at 1 and 3 cm/min and at 20 and 30 bpm/cm, the 24-hour clock
on the paper's grid, "bpm" on the axis, no label over another, the sessions' starts and stops
and the alerts marked where they happened, and the strip moved through the last 24 hours by
dragging, by its scroll bar and by "jump to session". Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from types import SimpleNamespace
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest

from dsp import ctg_reference as ref
from dsp.ctg_artefact import VALID_RANGE_BPM
from gateway.config import config_from_dict
from gateway.processing.recording.service import Recordings
from gateway.state.history import History
from gateway.times import iso_time
from gateway.web.nurses import NurseAccounts
from tests.harness.paths import ARTIFACTS, REPO
from tests.harness.web import PASSWORD, USER

PX_PER_CM = 96 / 2.54  # CSS pixels (the page is shown at device scale 1)
BOLD = (0xE0, 0x80, 0x80)  # strip.js RULE_BOLD
MARK = (0x1F, 0x4E, 0x9C)  # strip.js MARK
# the strip ends where the jump put it (the session's start 1 cm from the left) and shows the
# session's trace from its start on (drawn, or rejected as artefact)
SETTLED = """s => { const d = document.getElementById("strip").dataset;
  return Math.abs(Number(d.start) - (s - 60)) < 2
    && Number(d.points) + Number(d.rejected) >= 4 * (Number(d.end) - s) - 8; }"""
FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
CTGPAPER = REPO / "gateway" / "web" / "static" / "js" / "ctgpaper.js"


def js_const(name: str) -> Any:
    """A constant of ctgpaper.js, read as JSON."""
    m = re.search(rf"export const {name} = (.+?);", CTGPAPER.read_text())
    assert m, name
    text = re.sub(r"(\d+):", r'"\1":', m.group(1))  # { 1: 5 } -> {"1": 5}
    return json.loads(text)


@pytest.mark.unit
def test_the_page_draws_the_paper_of_the_reference():
    """ctgpaper.js holds the numbers of dsp/ctg_reference.py (one home, checked equal)."""
    assert js_const("SPEEDS_CM_PER_MIN") == list(ref.PAPER_SPEEDS_CM_PER_MIN)
    assert js_const("SCALES_BPM_PER_CM") == list(ref.PAPER_FHR_SCALES_BPM_PER_CM)
    assert js_const("FHR_RANGE_BPM") == list(VALID_RANGE_BPM)
    assert js_const("MINOR_BPM") == ref.PAPER_MINOR_BPM
    assert js_const("MINOR_CM") == ref.PAPER_MINOR_CM
    assert js_const("UA_RANGE") == list(ref.PAPER_UA_RANGE)
    assert js_const("UA_PER_CM") == ref.PAPER_UA_PER_CM
    assert {float(k): v for k, v in js_const("LABEL_EVERY_CM").items()} == (
        ref.PAPER_LABEL_EVERY_CM
    )


# The strip with a uterine-activity channel (no monitor sends one yet: drawn from the module)
UA_STRIP = """async () => {
  const { drawStrip } = await import("/static/js/strip.js");
  const c = document.createElement("canvas");
  c.id = "ua-strip"; c.style.width = "700px"; document.body.append(c);
  const now = Date.now() / 1000, t0 = new Date((now - 600) * 1000).toISOString();
  const ua = Array.from({ length: 2400 }, (_, i) => 15 + 45 * Math.exp(-(((i % 1200) - 600) ** 2) / 2e4));
  const fhr = Array.from({ length: 2400 }, (_, i) => 135 + 5 * Math.sin(i / 50));
  const msg = (key, vals) => ({ t_start: t0, interval_s: 0.25, seq: 1, boot: 1, [key]: vals });
  drawStrip(c, { fhr: [msg("fhr_bpm", fhr)], mhr: [], ctg: [], rejected: new Set(), ua: [msg("ua", ua)] },
            { speed: 1, live: true, me: { fhr_normal_bpm: [110, 160] } },
            { scale: 20, marks: [{ t: now - 10, label: "session start 12:00" }] });
  return { ...c.dataset };
}"""


def fhr_messages(t0: float, minutes: float, boot: int, bpm: float = 136.0) -> list[dict]:
    n = int(minutes * 240)
    fhr = bpm + 4 * np.sin(np.arange(n) / 40)
    out = []
    for i in range(0, n, 4):
        vals = [round(float(v), 1) for v in fhr[i : i + 4]]
        out.append({"msg_id": f"fh-01:{boot}:fhr:{i + 1}", "device_id": "fh-01", "boot": boot,
                    "seq": i + 1, "count": len(vals), "interval_s": 0.25,
                    "t_start": iso_time(t0 + i * 0.25), "fhr_bpm": vals,
                    "quality": [0.9] * len(vals), "maternal": [False] * len(vals)})  # fmt: skip
    return out


def runs(mask: np.ndarray) -> list[float]:
    idx = np.flatnonzero(mask)
    if not len(idx):
        return []
    return [float(r.mean()) for r in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)]


def rules(png: bytes, frame: dict) -> tuple[list[float], list[float]]:
    """x of the bold rules along, y of the bold rules across, inside the FHR channel's frame,
    in CSS px of the canvas (a screenshot at device scale 1)."""
    img = (mpimg.imread(io.BytesIO(png))[..., :3] * 255).round()
    top, bottom = int(frame["top"]) + 2, int(frame["bottom"]) - 1
    left, right = int(frame["left"]) + 2, int(frame["right"]) - 1
    inner = img[top:bottom, left:right]
    bold = np.all(np.abs(inner - BOLD) <= 6, axis=2)
    xs = [left + x for x in runs(bold.sum(axis=0) > 0.6 * inner.shape[0])]
    ys = [top + y for y in runs(bold.sum(axis=1) > 0.6 * inner.shape[1])]
    return xs, ys


def overlaps(boxes: list[dict]) -> list[tuple[str, str]]:
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if not (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                    or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]):  # fmt: skip
                out.append((a["text"], b["text"]))
    return out


async def strip_state(page) -> dict[str, Any]:
    d: dict[str, Any] = await page.evaluate("() => ({...document.getElementById('strip').dataset})")
    for k in ("frame", "labels", "marks"):
        d[k] = json.loads(d[k])
    for k in ("start", "end", "speed", "scale", "points"):
        d[k] = float(d[k])
    return d


async def measure(page, name: str) -> dict[str, Any]:
    s = await strip_state(page)
    png = await page.locator("#strip").screenshot(path=str(ARTIFACTS / f"ctg-strip-{name}.png"))
    s["xs"], s["ys"] = rules(png, s["frame"])
    s["png"] = png
    return s


def check_paper(s: dict[str, Any], speed: float, scale: float) -> None:
    """The paper as measured against 1 cm = 96/2.54 CSS px."""
    xs, ys = np.array(s["xs"]), np.array(s["ys"])
    width_cm = (s["frame"]["right"] - s["frame"]["left"]) / PX_PER_CM
    assert len(xs) >= int(width_cm) - 2, xs  # a bold rule on every centimetre of time
    assert np.all(np.abs(np.diff(xs) - PX_PER_CM) <= 1.0), np.diff(xs)  # each on a pixel
    assert abs((xs[-1] - xs[0]) / (len(xs) - 1) - PX_PER_CM) < 0.1  # and no creeping error
    assert np.all(np.abs(np.diff(ys) - PX_PER_CM) <= 1.0), np.diff(ys)
    assert abs((ys[-1] - ys[0]) / (len(ys) - 1) - PX_PER_CM) < 0.1
    lo, hi = VALID_RANGE_BPM
    assert len(ys) == len([b for b in range(int(lo) + 1, int(hi)) if b % scale == 0])
    height = s["frame"]["bottom"] - s["frame"]["top"]
    assert abs(height - (hi - lo) / scale * PX_PER_CM) < 1.0
    # the bold rules along are the clock's: on whole minutes (1 cm/min) or 20 s (3 cm/min)
    px_per_s = PX_PER_CM * speed / 60
    for x in xs:
        t = s["start"] + (x - s["frame"]["left"]) / px_per_s
        step = 60 / speed
        assert abs(t / step - round(t / step)) * step * px_per_s < 1.0
    # the 24-hour clock every 5 cm (1 cm/min: 5 min) or 3 cm (3 cm/min: 1 min), under its rule
    clocks = [b for b in s["labels"] if re.fullmatch(r"\d\d:\d\d", b["text"])]
    assert len(clocks) >= 2
    every = ref.PAPER_LABEL_EVERY_CM[speed] * PX_PER_CM
    centres = np.array([b["x"] + b["w"] / 2 for b in clocks])
    assert np.all(np.abs(np.diff(centres) - every) <= 1.5), np.diff(centres)
    for b, c in zip(clocks, centres, strict=True):
        t = s["start"] + (c - s["frame"]["left"]) / px_per_s
        lt = time.localtime(round(t))
        assert b["text"] == f"{lt.tm_hour:02d}:{lt.tm_min:02d}", (b["text"], t)
    assert [b["text"] for b in s["labels"]].count("bpm") == 1
    assert overlaps(s["labels"]) == []
    assert all(0 <= b["x"] and b["x"] + b["w"] <= float(s["width"]) for b in s["labels"])


def strip_gateway(tmp_path) -> tuple[SimpleNamespace, float]:
    """A gateway's history with a fetal monitor: a 30-minute session 20 hours ago (with a
    bradycardia alert 12 minutes in) and 15 minutes of live trace. Returns it and the session's
    start."""
    cfg = config_from_dict({"gateway": {"data_dir": "gw"}, "web": {"help_phone": "+86 10 8888 0000"}},
                           base_dir=tmp_path)  # fmt: skip
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    h = History(cfg.data_dir)
    now = time.time()
    # a session yesterday, 30 min long, started half a minute past a minute: its marks stand
    # half a centimetre from the bold rules (a mark on one hid it from the rules' measurement)
    session_start = (now - 20 * 3600) // 60 * 60 + 30
    for m in fhr_messages(session_start, 30, boot=1):
        h.record(("device", "fh-01", "fhr"), m)
    for m in fhr_messages(now - 15 * 60, 15, boot=2):  # and the live trace
        h.record(("device", "fh-01", "fhr"), m)
    h.record(("device", "fh-01", "status"), {"device_id": "fh-01", "device_type": "fetal_heart",
             "link": "connected", "battery_pct": 80, "t": iso_time(now)})  # fmt: skip
    raised = session_start + 12 * 60
    h.record(("device", "fh-01", "alert"), {
        "msg_id": f"fh-01:alert:bradycardia:{int(raised * 1000)}:raised", "seq": 1,
        "device_id": "fh-01", "alert": "bradycardia", "state": "raised", "severity": "high",
        "detail": "test", "t": iso_time(raised), "raised_at": iso_time(raised)})  # fmt: skip
    recordings = Recordings(cfg.data_dir, None, h, lambda *a: None)  # type: ignore[arg-type]
    recordings.store.add({"session_id": "fh-01:1:1", "device_id": "fh-01", "status": "complete",
                          "start": iso_time(session_start), "end": iso_time(session_start + 1800),
                          "due": None, "recorded_min": 30.0, "good_signal_min": 30.0,
                          "prescribed_min": 30.0})  # fmt: skip
    return SimpleNamespace(cfg=cfg, sessions={}, history=h, recordings=recordings), session_start


@pytest.mark.system
def test_the_strip_is_standard_paper_and_moves_through_the_last_24_hours(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    gw, session_start = strip_gateway(tmp_path)
    seen: dict[str, Any] = {}

    async def main() -> None:
        from tests.harness.browser import log_in_as, new_page, served_to_chromium

        async with served_to_chromium(gw, listen="127.0.0.1:0") as (web, browser):
            page, errors = await new_page(browser, viewport={"width": 1280, "height": 900})
            await log_in_as(page, web.url, USER, PASSWORD, "/login")
            await page.wait_for_selector("#strip:not([data-points='0'])", state="attached")
            await page.wait_for_selector("#strip-session option[value]:not([value=''])",
                                         state="attached")  # fmt: skip
            seen["live1"] = await measure(page, "1cm-20bpm")
            await page.select_option("#speed", "3")
            await page.wait_for_selector("#strip[data-speed='3']", state="attached")
            seen["live3"] = await measure(page, "3cm-20bpm")
            await page.select_option("#strip-scale", "30")
            await page.wait_for_selector("#strip[data-scale='30']", state="attached")
            seen["live3_30"] = await measure(page, "3cm-30bpm")
            await page.select_option("#strip-scale", "20")
            await page.select_option("#speed", "1")
            await page.wait_for_selector("#strip[data-speed='1'][data-scale='20']",
                                         state="attached")  # fmt: skip

            # jump to yesterday's session: its start 1 cm from the left, the trace loaded
            await page.select_option("#strip-session", index=1)
            await page.wait_for_function(SETTLED, arg=session_start, timeout=10000)
            await page.evaluate(FRAMES)  # the drawn canvas on the screen
            await page.screenshot(path=str(ARTIFACTS / "ctg-strip-jump-to-session.png"))
            seen["jumped"] = await measure(page, "session")
            seen["when"] = await page.input_value("#when")

            # drag the paper 300 px to the right: 300 px earlier (8 min at 1 cm/min)
            box = await page.locator("#strip").bounding_box()
            assert box is not None
            before = (await strip_state(page))["end"]
            y = box["y"] + box["height"] / 2
            await page.mouse.move(box["x"] + 600, y)
            await page.mouse.down()
            for dx in range(20, 301, 20):
                await page.mouse.move(box["x"] + 600 + dx, y)
            await page.mouse.up()
            await asyncio.sleep(0.5)  # the window after the drag
            seen["dragged"] = (before, await strip_state(page))

            # the scroll bar: 3 hours ago
            await page.evaluate(
                """() => { const b = document.getElementById('strip-scroll');
                           b.value = String(-3 * 3600);
                           b.dispatchEvent(new Event('input', {bubbles: true})); }"""
            )
            await asyncio.sleep(0.5)
            seen["scrolled"] = (time.time(), await strip_state(page))
            seen["scroll_bounds"] = await page.evaluate(
                "() => [document.getElementById('strip-scroll').min,"
                " document.getElementById('strip-scroll').max]"
            )
            # and back to now: live
            await page.click("#strip-now")
            await page.wait_for_selector("#strip:not([data-points='0'])", state="attached")
            seen["back"] = await strip_state(page)
            seen["back_when"] = await page.input_value("#when")
            # in Chinese: the strip's controls and marks too
            await page.select_option("#strip-session", index=1)
            await page.click("#lang-toggle")
            await page.wait_for_selector("#strip-nav [data-i18n='strip_jump']:text('跳到监护记录')")
            seen["zh_marks"] = [m["label"] for m in (await strip_state(page))["marks"]]
            seen["zh_now"] = await page.text_content("#strip-now")
            seen["ua"] = await page.evaluate(UA_STRIP)
            await page.locator("#ua-strip").screenshot(path=str(ARTIFACTS / "ctg-strip-ua.png"))
            seen["errors"] = errors

    asyncio.run(main())
    assert seen["errors"] == []
    check_paper(seen["live1"], 1.0, 20.0)
    check_paper(seen["live3"], 3.0, 20.0)
    check_paper(seen["live3_30"], 3.0, 30.0)
    assert seen["live1"]["end"] - seen["live1"]["start"] > 12 * 60  # the width of the page

    j = seen["jumped"]
    check_paper(j, 1.0, 20.0)
    marks = {re.sub(r" \d\d:\d\d$", "", m["label"]): m for m in j["marks"]}
    assert {"session start", "bradycardia"} <= set(marks), j["marks"]
    assert all(m["labelled"] for m in j["marks"])
    left = j["frame"]["left"]
    assert abs(marks["session start"]["x"] - left - PX_PER_CM) < 1.0  # 1 cm from the left
    assert abs(marks["bradycardia"]["x"] - left - 13 * PX_PER_CM) < 1.0  # 12 min after it
    img = (mpimg.imread(io.BytesIO(j["png"]))[..., :3] * 255).round()
    for m in marks.values():  # the dashed mark is on the paper, in the marks' colour
        col = img[int(j["frame"]["top"]) : int(j["frame"]["bottom"]), int(round(m["x"]))]
        assert (np.all(np.abs(col - MARK) <= 30, axis=1)).mean() > 0.3
    shown_s = j["end"] - (session_start + 0.25)  # the session's trace, from its start on
    # all of it drawn but what the CTG analyses reject (the start of a trace may be start-up)
    drawn = j["points"] + float(j["rejected"])
    assert abs(drawn - 4 * shown_s) <= 8 and float(j["rejected"]) <= 4 * 15, (
        j["points"],
        j["rejected"],
        shown_s,
    )
    assert seen["when"] == "20"  # the "showing" choice follows: about 20 h ago

    before, after = seen["dragged"]
    moved_cm = (before - after["end"]) / 60  # 1 cm/min
    assert abs(moved_cm - 300 / PX_PER_CM) < 0.2, moved_cm
    assert after["points"] > 0

    t_scroll, sc = seen["scrolled"]
    assert abs(sc["end"] - (t_scroll - 3 * 3600)) < 60
    lo, hi = (float(v) for v in seen["scroll_bounds"])
    assert hi == 0 and abs(lo + (24 * 3600 - (sc["end"] - sc["start"]))) < 60  # the last 24 h
    assert seen["back_when"] == "live" and abs(seen["back"]["end"] - time.time()) < 30

    assert any(label.startswith("监护开始 ") for label in seen["zh_marks"]), seen["zh_marks"]
    assert "胎儿心动过缓" in seen["zh_marks"] and seen["zh_now"] == "现在"

    ua = seen["ua"]
    frame, labels = json.loads(ua["frame"]), json.loads(ua["labels"])
    assert ua["ua"] == "true"
    assert abs(frame["uaBottom"] - frame["uaTop"] - 4 * PX_PER_CM) < 1.0  # 0-100 at 25 per cm
    assert 0 < frame["uaTop"] - frame["bottom"] < 0.5 * PX_PER_CM  # under the FHR channel
    assert {"宫缩", "25", "50", "75"} <= {b["text"] for b in labels}  # drawn in Chinese: UA
    assert overlaps(labels) == []
    # a mark 10 s from the right edge: its label slides left to stay on the canvas
    (mark,) = json.loads(ua["marks"])  # its label as given (the page draws marks translated)
    (box,) = [b for b in labels if b["text"] == "▼ session start 12:00"]
    assert mark["labelled"] and box["x"] + box["w"] <= float(ua["width"]) and box["x"] < mark["x"]
    clocks = [b for b in labels if re.fullmatch(r"\d\d:\d\d", b["text"])]
    assert all(b["y"] > frame["uaBottom"] for b in clocks)  # the clock under both channels


# the strip is live and drawn from the live trace
LIVE_DRAWN = """() => { const d = document.getElementById("strip").dataset;
  return Math.abs(Number(d.end) - Date.now() / 1000) < 30 && Number(d.points) > 0; }"""


@pytest.mark.system
def test_a_slow_window_answer_never_replaces_a_newer_one(tmp_path):
    """Jump to a session whose window answers slowly (held back 2.5 s by the browser's route),
    then press "now": the strip stays live and unmoved while the jump's window is under way,
    and the slow answer, when it comes, changes nothing."""
    gw, _ = strip_gateway(tmp_path)
    seen: dict[str, Any] = {}

    async def main() -> None:
        from playwright.async_api import Route

        from tests.harness.browser import log_in_as, new_page, served_to_chromium

        held = asyncio.Event()
        answered = asyncio.Event()
        windows: list[str] = []

        async def hold_first(route: Route) -> None:
            windows.append(route.request.url)
            if len(windows) > 1:
                await route.continue_()
                return
            held.set()
            response = await route.fetch()
            await asyncio.sleep(2.5)
            try:
                await route.fulfill(response=response)
            except Exception:  # the page abandoned the request (AbortController): nothing to answer
                pass
            answered.set()

        async with served_to_chromium(gw, listen="127.0.0.1:0") as (web, browser):
            page, errors = await new_page(browser, viewport={"width": 1280, "height": 900})
            await log_in_as(page, web.url, USER, PASSWORD, "/login")
            await page.wait_for_function(LIVE_DRAWN)
            await page.wait_for_selector("#strip-session option[value]:not([value=''])",
                                         state="attached")  # fmt: skip
            # a help number is set: no note about it beside the mother's link
            seen["help_note"] = await page.is_visible("#no-help-phone")
            await page.route("**/api/devices/*/window?*", hold_first)
            await page.select_option("#strip-session", index=1)  # the jump: held back
            await asyncio.wait_for(held.wait(), 10)
            await asyncio.sleep(1.0)
            await page.evaluate(FRAMES)
            seen["while_held"] = await page.evaluate(LIVE_DRAWN)
            seen["when_held"] = await page.input_value("#when")
            await page.click("#strip-now")  # the newer request, answered at once
            await asyncio.wait_for(answered.wait(), 10)
            await asyncio.sleep(0.3)
            await page.evaluate("() => window.dispatchEvent(new Event('resize'))")  # a redraw
            await page.evaluate(FRAMES)
            seen["after"] = await page.evaluate(LIVE_DRAWN)
            seen["state"] = await strip_state(page)
            seen["when_after"] = await page.input_value("#when")
            seen["windows"] = list(windows)
            seen["errors"] = errors

    asyncio.run(main())
    assert seen["errors"] == []
    assert seen["help_note"] is False
    assert len(seen["windows"]) == 2, seen["windows"]  # the jump's, then now's
    assert seen["while_held"] and seen["when_held"] == "live"  # no part of the jump drawn
    assert seen["after"] and seen["when_after"] == "live", seen["state"]
    assert abs(seen["state"]["end"] - time.time()) < 30 and seen["state"]["points"] > 0
