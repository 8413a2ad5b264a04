"""The session report PDF: CTG paper at true scale (measured on the page rendered by pdftoppm),
several rows per page, gaps left as gaps, and the fields a doctor files (read by pdftotext)."""

from __future__ import annotations

import dataclasses
import itertools
import re
import shutil
import subprocess
import time
from datetime import timedelta, timezone
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from gateway.processing.report import (
    FHR_MAX_BPM,
    FHR_MIN_BPM,
    PAGE_H_CM,
    PAGE_W_CM,
    STRIP_W_CM,
    ReportMark,
    SessionReport,
    dawes_redman_headline,
    gestation_at,
    headline,
    render_session_report,
    signal_summary,
)
from gateway.times import iso_time, parse_time
from tests.harness.paths import ARTIFACTS

DPI = 200
PX_PER_CM = DPI / 2.54  # 78.74 px
TZ = timezone(timedelta(hours=8))  # the report is printed on the gateway's clock: UTC+8 here
START = "2026-11-23T10:00:00Z"  # 18:00 on that clock


def steady_session(minutes: float = 20, gap=(5.0, 7.0), bpm: float = 140.0,
                   **kw) -> SessionReport:  # fmt: skip
    n = int(minutes * 240)
    t_min = np.arange(n) / 240
    fhr = np.full(n, bpm)
    fhr[(t_min >= gap[0]) & (t_min < gap[1])] = np.nan
    findings = {"baseline_bpm": 140.0, "figo_class": "normal", "reasons": [], "accelerations": [],
                "decelerations": [], "variability_bpm": 8.0, "stv_ms": 7.5}  # fmt: skip
    end = f"2026-11-23T10:{int(minutes):02d}:00Z" if minutes < 60 else "2026-11-23T12:10:00Z"
    return SessionReport("fh-01:1:1", "fh-01", START, end, fhr, np.where(np.isnan(fhr), 0.0, 0.9),
                         None, findings, 20, tz=TZ, **kw)  # fmt: skip


def to_png(pdf: bytes, tmp_path: Path, name: str) -> list[np.ndarray]:
    assert shutil.which("pdftoppm"), "pdftoppm comes with Debian's poppler-utils"
    src = tmp_path / f"{name}.pdf"
    src.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", str(DPI), "-png", str(src), str(tmp_path / name)], check=True)
    pages = sorted(tmp_path.glob(f"{name}-*.png"))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(src, ARTIFACTS / f"{name}.pdf")
    for i, p in enumerate(pages[:2]):
        shutil.copy(p, ARTIFACTS / f"{name}-{i + 1}.png")
    return [mpimg.imread(p)[..., :3] for p in pages]


def to_text(pdf: bytes, tmp_path: Path) -> str:
    assert shutil.which("pdftotext"), "pdftotext comes with Debian's poppler-utils"
    src = tmp_path / "text.pdf"
    src.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-layout", str(src), "-"], check=True, capture_output=True)
    return out.stdout.decode()


def lines_of(mask: np.ndarray) -> list[float]:
    """Centres of runs of True in a 1-D mask (a rule a few pixels wide is one line)."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return []
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    return [float(r.mean()) for r in runs]


def frames(img: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The strip's channels on a page, (top, bottom, left, right) in pixels: between dark rows
    that span the paper's width (frame edges, or a steady trace), the frame is the tallest
    stretch its two sides (dark columns) run through unbroken."""
    dark = img.sum(axis=2) < 0.6
    counts = dark.sum(axis=1)
    edges = [int(round(y)) for y in lines_of(counts > 0.9 * STRIP_W_CM * PX_PER_CM)]

    def sides(top: int, bottom: int) -> list[float]:
        return lines_of(dark[top + 1 : bottom].all(axis=0))

    out, i = [], 0
    while i < len(edges) - 1:
        spans = [j for j in range(i + 1, len(edges)) if len(sides(edges[i], edges[j])) >= 2]
        if not spans:
            i += 1
            continue
        j = spans[-1]
        xs = sides(edges[i], edges[j])
        out.append((edges[i], edges[j], int(round(xs[0])), int(round(xs[-1]))))
        i = j + 1
    return out


def bold_rules(
    img: np.ndarray, frame: tuple[int, int, int, int]
) -> tuple[list[float], list[float]]:
    """The bold rules inside a channel's frame: x of the vertical ones, y of the horizontal."""
    top, bottom, left, right = frame
    inner = img[top + 3 : bottom - 2, left + 3 : right - 2]
    r, g, b = inner[..., 0], inner[..., 1], inner[..., 2]
    bold = (r > 0.8) & (g < 0.65) & (b < 0.65) & (np.abs(g - b) < 0.1)
    xs = [left + 3 + x for x in lines_of(bold.sum(axis=0) > 0.5 * inner.shape[0])]
    ys = [top + 3 + y for y in lines_of(bold.sum(axis=1) > 0.5 * inner.shape[1])]
    return xs, ys


@pytest.mark.system
@pytest.mark.parametrize(("speed", "scale"), [(1.0, 20.0), (3.0, 20.0), (1.0, 30.0)])
def test_the_paper_is_to_scale_and_fills_the_page_width(tmp_path, speed, scale):
    """Measured on the page at 200 dpi: A4 portrait, the paper 18 cm wide, bold rules 1 cm
    apart both ways (20 or 30 bpm; 1 or 1/3 min), the FHR channel as high as the chart's range
    at the scale, and a 2 minute gap 2 or 6 cm long."""
    name = f"session-report-{speed:g}cm-{scale:g}bpm"
    r = steady_session(bpm=135.0)  # between the rules: the trace hides none
    page = to_png(render_session_report(r, speed, scale), tmp_path, name)[0]
    h, w = page.shape[:2]
    assert abs(w / PX_PER_CM - PAGE_W_CM) < 0.05 and abs(h / PX_PER_CM - PAGE_H_CM) < 0.05
    fs = frames(page)
    assert len(fs) >= 2, "several rows on the first page"
    top, bottom, left, right = fs[0]
    assert abs((right - left) / PX_PER_CM - STRIP_W_CM) < 0.05
    assert abs((bottom - top) / PX_PER_CM - (FHR_MAX_BPM - FHR_MIN_BPM) / scale) < 0.05
    xs, ys = bold_rules(page, fs[0])
    assert len(xs) == STRIP_W_CM - 1  # every centimetre, the first and last under the frame
    dx = np.diff(xs) / PX_PER_CM
    assert np.all(np.abs(dx - 1.0) < 0.03), dx
    assert abs((xs[-1] - xs[0]) / PX_PER_CM - (len(xs) - 1)) < 0.03  # no creeping error
    dy = np.diff(ys) / PX_PER_CM
    assert np.all(np.abs(dy - 1.0) < 0.03), dy
    # the bold rules are on the multiples of the scale: 200 bpm is 10 bpm below 210 (the top)
    first_bold = max(v for v in range(FHR_MIN_BPM, FHR_MAX_BPM) if v % scale == 0)
    assert abs((ys[0] - top) / PX_PER_CM - (FHR_MAX_BPM - first_bold) / scale) < 0.03
    # the trace at 135 bpm, and its 2 minute gap
    row = int(round(top + (FHR_MAX_BPM - 135) / scale * PX_PER_CM))
    dark = (page[row - 3 : row + 4, left + 3 : right - 2].sum(axis=2) < 0.6).any(axis=0)
    x = np.flatnonzero(dark)
    runs = [r for r in np.split(x, np.flatnonzero(np.diff(x) > 3) + 1) if len(r) > 20]
    minutes_in_row = STRIP_W_CM / speed
    if minutes_in_row > 7:  # the gap from 5 to 7 min is on the first row
        assert len(runs) == 2, "the signal loss must show as a gap, never joined"
        gap_cm = (runs[1][0] - runs[0][-1]) / PX_PER_CM
        assert abs(gap_cm - 2.0 * speed) < 0.1
        assert abs((runs[0][-1] - runs[0][0]) / PX_PER_CM - 5.0 * speed) < 0.1


@pytest.mark.system
def test_a_uterine_activity_channel_is_drawn_under_the_fhr_when_there_is_one(tmp_path):
    r = steady_session(gap=(0, 0))
    ua = 10 + 40 * np.exp(-(((np.arange(len(r.fhr_bpm)) / 240) % 5 - 2.5) ** 2) / 0.2)
    page = to_png(render_session_report(dataclasses.replace(r, ua=ua)), tmp_path, "report-ua")[0]
    (fhr_top, fhr_bottom, *_), (ua_top, ua_bottom, left, right) = frames(page)[:2]
    assert abs((ua_bottom - ua_top) / PX_PER_CM - 4.0) < 0.05  # 0-100 at 25 per cm
    assert 0 < (ua_top - fhr_bottom) / PX_PER_CM < 0.5  # right under the FHR channel
    xs, ys = bold_rules(page, frames(page)[1])
    assert np.all(np.abs(np.diff(xs) / PX_PER_CM - 1.0) < 0.03)
    assert np.all(np.abs(np.diff(ys) / PX_PER_CM - 1.0) < 0.03) and len(ys) == 3  # 25, 50, 75
    peak = int(round(ua_top + (100 - 50) / 25 * PX_PER_CM))  # the contractions reach 50
    dark = page[peak - 3 : peak + 4, left + 3 : right - 2].sum(axis=2) < 0.6
    assert 3 <= len(lines_of(dark.any(axis=0))) <= 8  # a contraction every 5 min, 18 min
    without = to_png(render_session_report(r), tmp_path, "report-no-ua")[0]
    assert all(abs((b - t) / PX_PER_CM - 8.0) < 0.05 for t, b, *_ in frames(without))


@pytest.mark.system
def test_long_sessions_continue_on_rows_of_paper_several_per_page(tmp_path):
    pdf = render_session_report(steady_session(minutes=130, gap=(0, 0)))
    pages = to_png(pdf, tmp_path, "long-report")
    rows = [len(frames(p)) for p in pages]
    assert sum(rows) == 8  # 130 minutes at 18 cm (18 min) a row
    assert rows[0] == 2 and all(n == 3 for n in rows[1:-1])
    text = to_text(pdf, tmp_path)
    assert f"page 1 of {len(pages)}" in text and f"page {len(pages)} of {len(pages)}" in text


@pytest.mark.system
def test_the_page_carries_what_a_doctor_files(tmp_path):
    dr = {**DR, "status": "met", "criteria_met": True, "time_to_met_min": 12}
    r = steady_session(dawes_redman=dr, hospital="City Maternity Hospital", bed_label="Bed 12",
                       gestation="34+2 weeks",
                       marks=(ReportMark(parse_time(START) + 9 * 60, "button"),))  # fmt: skip
    pdf = render_session_report(r)
    text = " ".join(to_text(pdf, tmp_path).split())
    for field in ("Hospital: City Maternity Hospital", "Bed or visit label: Bed 12",
                  "Gestation: 34+2 weeks",
                  "Recorded 2026-11-23 18:00:00 (UTC+08:00) to 18:20:00, local time",
                  "monitor fh-01", "session fh-01:1:1",
                  "Recorded 20 min of 20 min prescribed, fetal heart rate 18 min",
                  "Signal loss 10% (of which 0% rejected as artefact)",
                  "Antenatal Dawes-Redman: criteria met at 12 min",
                  "FHR (fetal heart rate)", "maternal heart rate", "marks (▼ events)",
                  "Paper 1 cm/min, 20 bpm/cm", "24-hour local clock",
                  "Reviewed by", "Signature", "Date and time", "page 1 of 1",
                  "▼ start 18:00", "▼ button", "▼ stop 18:20", "FHR (bpm)"):  # fmt: skip
        assert field in text, field
    # the clock along the paper: every 5 min at 1 cm/min, 24-hour
    for clock in ("18:00", "18:05", "18:10", "18:15", "18:20", "18:25", "18:30"):
        assert clock in text, clock
    blank = " ".join(to_text(render_session_report(steady_session()), tmp_path).split())
    assert "Hospital: ____" in blank and "Gestation: ____" in blank  # to fill in by hand


@pytest.mark.system
def test_a_finished_session_reports_its_bed_gestation_and_alerts(tmp_path):
    """The gateway's own report: the hospital it is configured with, the bed label set on it,
    the gestation counted on from the hospital's schedule (33 weeks a week before: 34+0), an
    alert raised during the session marked on the strip."""
    from gateway.processing import recording
    from gateway.publish.outbox import Outbox
    from gateway.state.history import History

    history = History(None)
    rec = recording.Recordings(tmp_path, Outbox(tmp_path / "outbox.sqlite", 1 << 30, 0), history,
                               lambda *a, **kw: None, hospital="City Maternity, ward 3")  # fmt: skip
    t0 = time.time() - 200
    rec.store.set_schedule("fh-01", recording.check_schedule(
        {"sessions_per_day": 1, "duration_min": 2, "risk_colour": "orange", "from_ga_weeks": 30,
         "ga_weeks": 33}, t0 - 7 * 86400 - 3600))  # fmt: skip
    history.settings.update("fh-01", {"label": "Bed 7"})
    raised = t0 + 60
    history.record(("device", "fh-01", "alert"), {
        "msg_id": f"fh-01:alert:bradycardia:{int(raised * 1000)}:raised", "seq": 1,
        "device_id": "fh-01", "alert": "bradycardia", "state": "raised", "severity": "high",
        "detail": "test", "t": iso_time(raised), "raised_at": iso_time(raised)})  # fmt: skip
    tracker = rec.tracker("fh-01")
    for i in range(0, 2 * 240 + 8, 4):
        t = t0 + i * 0.25
        tracker.feed(1, 1 + i, np.full(4, 138.0), np.full(4, 0.9), True, t, now=t)
    deadline = time.monotonic() + 60
    while rec.pending_reports and time.monotonic() < deadline:
        time.sleep(0.05)
    pdf = rec.report_pdf("fh-01:1:1")
    rec.stop()
    assert pdf is not None
    text = " ".join(to_text(pdf, tmp_path).split())
    assert "Hospital: City Maternity, ward 3" in text  # [web] hospital
    assert "Bed or visit label: Bed 7" in text
    assert "Gestation: 34+0 weeks" in text
    assert "▼ bradycardia" in text and "▼ start" in text and "▼ stop" in text


def words(pdf: bytes, tmp_path: Path) -> list[tuple[float, float, float, float, str]]:
    """The first page's words with their boxes (pdftotext -bbox), in points."""
    src = tmp_path / "words.pdf"
    src.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-bbox", "-f", "1", "-l", "1", str(src), "-"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    found = re.findall(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" '
                       r'yMax="([\d.]+)">([^<]*)</word>', out)  # fmt: skip
    return [(float(a), float(b), float(c), float(d), w) for a, b, c, d, w in found]


@pytest.mark.system
def test_no_text_on_the_page_covers_other_text(tmp_path):
    """Every word on the first page clear of every other (the boxes pdftotext gives include
    the font's ascent and descent: lines of a paragraph touch, so a word covers another when
    they share more than half a line), with marks close together: a start, an alert 30 s and a
    loss 60 s after it (the second label goes under the first, the third is a line alone)."""
    t0 = parse_time(START)
    r = steady_session(marks=(ReportMark(t0 + 30, "bradycardia"), ReportMark(t0 + 60, "signal loss"),
                              ReportMark(t0 + 9 * 60, "button")))  # fmt: skip
    ws = words(render_session_report(r), tmp_path)
    assert len(ws) > 100

    def covers(a, b) -> bool:
        x = min(a[2], b[2]) - max(a[0], b[0])
        y = min(a[3], b[3]) - max(a[1], b[1])
        return x > 0.5 and y > 0.5 * min(a[3] - a[1], b[3] - b[1])

    assert [(a[4], b[4]) for a, b in itertools.combinations(ws, 2) if covers(a, b)] == []
    texts = [w[4] for w in ws]
    assert "bradycardia" in texts and "button" in texts and "start" in texts


@pytest.mark.system
def test_event_marks_are_drawn_where_they_happened(tmp_path):
    t0 = parse_time(START)
    r = steady_session(gap=(0, 0), marks=(ReportMark(t0 + 9 * 60, "button"),))
    page = to_png(render_session_report(r), tmp_path, "report-marks")[0]
    top, bottom, left, right = frames(page)[0]
    inner = page[top + 3 : bottom - 2, left - 3 : right + 4]
    mark = (inner[..., 2] > 0.45) & (inner[..., 0] < 0.3)  # the marks' blue
    xs = lines_of(mark.sum(axis=0) > 0.3 * inner.shape[0])
    cm = [(left - 3 + x - left) / PX_PER_CM for x in xs]
    assert len(cm) == 2 and abs(cm[0]) < 0.1 and abs(cm[1] - 9.0) < 0.05, cm  # start, button
    stop = page[frames(page)[1][0] + 3 : frames(page)[1][1] - 2]
    stop_x = lines_of(((stop[..., 2] > 0.45) & (stop[..., 0] < 0.3)).sum(axis=0) > 0.3 * len(stop))
    assert len(stop_x) == 1 and abs((stop_x[0] - left) / PX_PER_CM - 2.0) < 0.05  # 18:20


@pytest.mark.unit
def test_signal_summary_counts_good_minutes():
    s = signal_summary(steady_session())
    assert s == {"recorded_min": 20.0, "good_signal_min": 18.0, "signal_loss_pct": 10.0,
                 "artefact_pct": 0.0, "mean_quality": 0.81}  # fmt: skip


@pytest.mark.unit
def test_points_rejected_as_artefact_count_as_signal_loss_not_as_signal():
    r = steady_session(bpm=131.0)
    r.fhr_bpm[8 * 240 : 8 * 240 + 80] = 200.0  # 20 s at 3/2 of the rate: a miscount
    s = signal_summary(r)
    assert s["artefact_pct"] == round(100 * 80 / len(r.fhr_bpm), 1)
    assert s["good_signal_min"] == round(18.0 - 80 / 240, 1)
    assert s["signal_loss_pct"] == round(100 * (1 - (18 * 240 - 80) / (20 * 240)), 1)


@pytest.mark.unit
def test_gestation_is_counted_on_from_the_hospitals_schedule():
    schedule = {"ga_weeks_when_set": 32.0, "set_at": "2026-11-01T08:00:00Z"}
    assert gestation_at(schedule, parse_time("2026-11-01T09:00:00Z")) == "32+0 weeks"
    assert gestation_at(schedule, parse_time("2026-11-23T10:00:00Z")) == "35+1 weeks"
    assert gestation_at({"ga_weeks_when_set": 33.5, "set_at": "2026-11-01T08:00:00Z"},
                        parse_time("2026-11-02T08:00:00Z")) == "33+4 weeks"  # fmt: skip
    assert gestation_at(None, 0.0) == "" and gestation_at({"duration_min": 20}, 0.0) == ""


DR = {"criteria_met": None, "status": "not_yet_met", "time_to_met_min": None, "analysed_min": 20,
      "basal_heart_rate_bpm": 141.2, "stv_ms": 6.3, "high_variation_min": 8,
      "low_variation_min": 0, "accelerations": 1, "decelerations_lost_beats": [],
      "signal_loss_pct": 4.0, "reasons_not_met": ["fewer than 3 accelerations (1)"]}  # fmt: skip


@pytest.mark.unit
def test_the_dawes_redman_result_in_words():
    assert dawes_redman_headline({**DR, "status": "met", "criteria_met": True,
                                  "time_to_met_min": 12}) == "criteria met at 12 min"  # fmt: skip
    assert dawes_redman_headline({**DR, "status": "not_met", "criteria_met": False,
                                  "analysed_min": 60}) == (
        "criteria not met at 60 min: fewer than 3 accelerations (1)")  # fmt: skip
    assert dawes_redman_headline({**DR, "status": "signal_loss", "signal_loss_pct": 34.5}) == (
        "not assessable: signal loss 34.5%"
    )
    assert dawes_redman_headline(DR).startswith("criteria not met in 20 min (the recording ended")
    too_short = {**DR, "status": "too_short", "reasons_not_met": ["recording shorter than 10 min"]}
    assert dawes_redman_headline(too_short) == "not assessable: recording shorter than 10 min"
    assert dawes_redman_headline({}) == "not assessed"


@pytest.mark.unit
def test_the_ctg_mode_chooses_the_headline():
    antenatal = headline(dataclasses.replace(steady_session(), dawes_redman=DR))
    assert antenatal[0].startswith("Antenatal Dawes-Redman: criteria not met in 20 min")
    assert any("FIGO 2015: class normal" in line for line in antenatal[1:])
    intrapartum = headline(dataclasses.replace(steady_session(), dawes_redman=DR,
                                               ctg_mode="intrapartum"))  # fmt: skip
    assert intrapartum[0].startswith("Intrapartum FIGO 2015: class normal")
    assert any("Dawes-Redman: criteria not met" in line for line in intrapartum[1:])
    assert max(len(line) for line in antenatal + intrapartum) <= 118  # wrapped to the page


@pytest.mark.system
def test_the_pen_lifts_over_points_rejected_as_artefact(tmp_path):
    """A 131 -> 200 bpm jump (3/2 of the rate: a miscount) is not drawn: the strip shows the
    gap the analyses see, never an acceleration to 200."""
    r = steady_session(bpm=131.0, gap=(0, 0))
    r.fhr_bpm[8 * 240 : 8 * 240 + 80] = 200.0
    img = to_png(render_session_report(r), tmp_path, "report-artefact")[0]
    top, bottom, left, right = frames(img)[0]
    dark = img.sum(axis=2) < 0.6
    row = lambda bpm: int(round(top + (210 - bpm) / 20 * PX_PER_CM))  # noqa: E731
    inside = slice(left + 3, right - 2)
    assert dark[row(131) - 3 : row(131) + 4, inside].any(axis=0).mean() > 0.95
    assert not dark[row(205) : row(180), inside].any(), "the artefact was drawn"


@pytest.mark.unit
def test_unknown_paper_is_refused():
    with pytest.raises(ValueError, match="paper speed"):
        render_session_report(steady_session(), speed_cm_per_min=2.0)
    with pytest.raises(ValueError, match="paper scale"):
        render_session_report(steady_session(), scale_bpm_per_cm=25.0)
    with pytest.raises(ValueError, match="start"):
        render_session_report(dataclasses.replace(steady_session(), start="yesterday"))
