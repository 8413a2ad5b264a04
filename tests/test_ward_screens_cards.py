"""What a fetal monitor's card in the nurse view says about its prescription (server.py's
`recording` of /api/devices): the latest slot due, done, missed or not yet come, the session in
progress, the slots missed this week; and the alert labels the page has in both languages."""

from __future__ import annotations

import ast
import math
import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.processing.alerts import ALERT_KINDS
from gateway.processing.recording.schedule import check_schedule, missed_record, slots
from gateway.processing.recording.service import Recordings
from gateway.times import iso_time_or_none
from gateway.web.server import _recording
from tests.harness.paths import REPO

pytestmark = pytest.mark.unit

DEV = "fh-01"
DAY = 86400.0


def _at(hh: int, mm: int = 0) -> float:
    """Today (local time) at hh:mm, a week after the schedule starts."""
    return datetime(2026, 3, 10, hh, mm).timestamp()


def _gateway(tmp_path: Path) -> tuple[Any, Recordings]:
    rec = Recordings(tmp_path, None, None, lambda *a, **k: None)  # type: ignore[arg-type]
    rec.store.set_schedule(DEV, check_schedule(
        {"sessions_per_day": 2, "duration_min": 20, "risk_colour": "yellow",
         "times": ["09:00", "18:00"]}, now=_at(8) - 7 * DAY))  # fmt: skip
    return SimpleNamespace(recordings=rec), rec


def _session(start: float, status: str = "complete") -> dict[str, Any]:
    return {"msg_id": f"{DEV}:1:session:{int(start)}", "session_id": f"{DEV}:1:{int(start)}",
            "device_id": DEV, "status": status, "end_reason": "duration_reached",
            "start": iso_time_or_none(start), "end": iso_time_or_none(start + 1200), "due": None,
            "recorded_min": 20.0, "good_signal_min": 19.0, "prescribed_min": 20.0,
            "t": iso_time_or_none(start + 1200)}  # fmt: skip


def test_without_a_schedule_or_a_session_a_card_shows_no_prescription(tmp_path):
    rec = Recordings(tmp_path, None, None, lambda *a, **k: None)  # type: ignore[arg-type]
    assert _recording(SimpleNamespace(recordings=rec), DEV, _at(10)) is None


def test_the_slot_most_recently_due_is_due_then_done(tmp_path):
    gw, rec = _gateway(tmp_path)
    due = _recording(gw, DEV, _at(9, 30))
    assert due is not None
    assert due["status"] == "due" and due["slot_due"] == iso_time_or_none(_at(9))
    assert due["next_due"] == iso_time_or_none(_at(18))
    assert due["schedule"]["sessions_per_day"] == 2 and due["schedule"]["duration_min"] == 20
    rec.store.add(_session(_at(9, 40)))
    done = _recording(gw, DEV, _at(10, 30))
    assert done is not None
    assert done["status"] == "done" and done["done_at"] == iso_time_or_none(_at(9, 40))


def test_a_short_session_does_not_keep_the_slot_and_a_closed_one_is_missed(tmp_path):
    gw, rec = _gateway(tmp_path)
    rec.store.add(_session(_at(9, 5), status="short"))
    late = _recording(gw, DEV, _at(17, 30))  # the 09:00 slot closed at 17:00, an hour before 18:00
    assert late is not None and late["status"] == "missed"
    (slot,) = [s for s in slots(rec.store.schedule(DEV), _at(8), _at(10)) if s.due == _at(9)]
    rec.store.add(missed_record(DEV, slot, rec.store.schedule(DEV), _at(17, 30)))
    again = _recording(gw, DEV, _at(17, 30))
    assert again is not None and again["missed_7d"] == 1


def test_before_the_first_slot_of_a_new_schedule_it_is_scheduled(tmp_path):
    rec = Recordings(tmp_path, None, None, lambda *a, **k: None)  # type: ignore[arg-type]
    rec.store.set_schedule(DEV, check_schedule(
        {"sessions_per_week": 3, "duration_min": 30, "risk_colour": "green", "times": ["09:00"]},
        now=_at(8)))  # fmt: skip
    card = _recording(SimpleNamespace(recordings=rec), DEV, _at(8, 30))
    assert card is not None and card["status"] == "scheduled" and card["slot_due"] is None


def test_a_session_being_recorded_shows_its_progress(tmp_path):
    gw, rec = _gateway(tmp_path)
    tracker = rec.tracker(DEV)
    tracker.feed(1, 0, [140.0] * 240, [1.0] * 240, True, _at(9, 2), now=_at(9, 3))
    card = _recording(gw, DEV, _at(9, 3))
    assert card is not None and card["status"] == "recording"
    assert card["progress"]["recorded_min"] == 1.0 and card["progress"]["prescribed_min"] == 20
    # the card's bar counts minutes with a heart rate (devices.js): this one has one
    assert card["progress"]["heart_rate_min"] == 1


def test_a_minute_without_a_heart_rate_is_recorded_but_does_not_count(tmp_path):
    gw, rec = _gateway(tmp_path)
    rates = [140.0] * 240 + [math.nan] * 240  # one minute with a rate, one without
    rec.tracker(DEV).feed(1, 0, rates, [1.0] * 480, True, _at(9, 2), now=_at(9, 4))
    card = _recording(gw, DEV, _at(9, 4))
    assert card is not None
    assert card["progress"]["recorded_min"] == 2.0 and card["progress"]["heart_rate_min"] == 1


def test_every_alert_kind_has_a_chinese_label():
    js = (REPO / "gateway/web/static/js/alerts.js").read_text()
    start = js.index("const ALERT_TEXT_ZH")
    table = js[start : js.index("};", start)]
    assert set(re.findall(r"\b([a-z_]+): \"", table)) == set(ALERT_KINDS)


def _sentences(path: str) -> list[str]:
    """The sentences a dsp module appends to its reasons or advice (and `_loss_reason`'s), with
    a sample number in each formatted field: what the page may be sent."""

    def sample(v: ast.FormattedValue) -> str:
        spec = ast.unparse(v.format_spec) if v.format_spec else ""
        call = isinstance(v.value, ast.Call) and ast.unparse(v.value.func) == "amount"
        if call:
            return "2.0 mg/dL (34 µmol/L)"
        if "per_h" in ast.unparse(v.value):
            return "mg/dL/h"
        return "12" if ".0f" in spec else "3.4" if ".1f" in spec else "0.25" if spec else "2"

    def text(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return "".join(p.value if isinstance(p, ast.Constant) else sample(p)  # type: ignore[arg-type]
                           for p in node.values)  # fmt: skip
        return None

    out = []
    for node in ast.walk(ast.parse((REPO / path).read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
            node.func.attr == "append" and ast.unparse(node.func.value) in
                ("reasons", "patho", "susp", "advice")):  # fmt: skip
            found = text(node.args[0])
        elif isinstance(node, ast.FunctionDef) and node.name == "_loss_reason":
            found = text(node.body[0].value)  # type: ignore[attr-defined]
        else:
            continue
        if found is not None:
            out.append(found)
    return out


def _patterns(js: str, table: str) -> list[re.Pattern[str]]:
    """The regular expressions of a page module's table of Chinese sentences."""
    text = (REPO / "gateway/web/static/js" / js).read_text()
    start = text.index(f"const {table} = [")
    body = text[start : text.index("\n];", start)]
    return [re.compile(p) for p in re.findall(r"\[/(\^.*?\$)/,", body)]


@pytest.mark.parametrize(("js", "table", "sources"), [
    ("fetal.js", "REASONS_ZH", ["dsp/ctg.py", "dsp/dawes_redman.py"]),
    ("jaundice.js", "ADVICE_ZH", ["dsp/bilirubin_zones.py"]),
])  # fmt: skip
def test_every_sentence_the_analyses_write_has_its_chinese(js, table, sources):
    """The page writes the gateway's English sentences in Chinese by their patterns: a sentence
    reworded in dsp/ without its pattern would stay English on the page."""
    patterns = _patterns(js, table)
    # "next measurement (AAP 2022): ..." is shown apart, from the follow-up's fields
    sentences = [
        x for src in sources for x in _sentences(src) if not x.startswith("next measurement")
    ]
    assert len(sentences) >= 7
    missing = [x for x in sentences if not any(p.fullmatch(x) for p in patterns)]
    assert missing == [], missing
