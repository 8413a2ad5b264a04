"""The session report PDF: true-scale CTG strip, gaps left as gaps, findings on the page."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from gateway.processing.report import (
    SessionReport,
    dawes_redman_headline,
    headline,
    render_session_report,
    signal_summary,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
DPI = 100


def steady_session(minutes: float = 20, gap=(5.0, 7.0), bpm: float = 140.0) -> SessionReport:
    n = int(minutes * 240)
    t_min = (np.arange(n) + 1) / 240
    fhr = np.full(n, bpm)
    fhr[(t_min >= gap[0]) & (t_min < gap[1])] = np.nan
    findings = {"baseline_bpm": 140.0, "figo_class": "normal", "reasons": [], "accelerations": [],
                "decelerations": [], "variability_bpm": 8.0, "stv_ms": 7.5}  # fmt: skip
    return SessionReport("fh-01:1:1", "fh-01", "2026-11-23T10:00:00Z", "2026-11-23T10:20:00Z",
                         fhr, np.where(np.isnan(fhr), 0.0, 0.9), None, findings, 20)  # fmt: skip


def to_png(pdf: bytes, tmp_path: Path, name: str) -> list[np.ndarray]:
    assert shutil.which("pdftoppm"), "pdftoppm comes with Debian's poppler-utils"
    src = tmp_path / f"{name}.pdf"
    src.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", str(DPI), "-png", str(src), str(tmp_path / name)], check=True)
    pages = sorted(tmp_path.glob(f"{name}-*.png"))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(pages[0], ARTIFACTS / f"{name}.png")
    return [mpimg.imread(p) for p in pages]


@pytest.mark.system
def test_report_is_a4_landscape_with_the_strip_at_1_cm_per_minute(tmp_path):
    pages = to_png(render_session_report(steady_session()), tmp_path, "session-report")
    img = pages[0]
    h, w = img.shape[:2]
    assert abs(w - 29.7 / 2.54 * DPI) < 3 and abs(h - 21.0 / 2.54 * DPI) < 3
    dark = img[..., :3].sum(axis=2) < 0.6  # the black FHR trace (grid is light red)
    # the axes frame is the longest dark row pair; the 140 bpm trace is the longest row inside
    counts = dark.sum(axis=1)
    frame = np.flatnonzero(counts > 0.95 * counts.max())
    inside = np.arange(frame.min() + 3, frame.max() - 2)
    row = inside[np.argmax(counts[inside])]
    band = dark[row - 2 : row + 3].any(axis=0)
    x = np.flatnonzero(band)
    runs = np.split(x, np.flatnonzero(np.diff(x) > 3) + 1)
    trace_runs = [r for r in runs if len(r) > 50]
    assert len(trace_runs) == 2, "the signal loss must show as a gap, never joined"
    left, right = trace_runs
    px_per_cm = DPI / 2.54
    gap_cm = (right[0] - left[-1]) / px_per_cm
    assert abs(gap_cm - 2.0) < 0.15  # 2 minutes at 1 cm/min
    assert abs((left[-1] - left[0]) / px_per_cm - 5.0) < 0.15


@pytest.mark.system
def test_long_sessions_continue_on_more_rows_and_pages(tmp_path):
    pdf = render_session_report(steady_session(minutes=130, gap=(0, 0)), paper="3cm")
    pages = to_png(pdf, tmp_path, "long-report")
    assert len(pages) >= 5  # 3 cm/min: about 8 minutes per row


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
    assert max(len(line) for line in antenatal + intrapartum) <= 170  # wrapped to the page


@pytest.mark.system
def test_the_pen_lifts_over_points_rejected_as_artefact(tmp_path):
    """A 131 -> 200 bpm jump (3/2 of the rate: a miscount) is not drawn: the strip shows the
    gap the analyses see, never an acceleration to 200."""
    r = steady_session(bpm=131.0, gap=(0, 0))
    r.fhr_bpm[8 * 240 : 8 * 240 + 80] = 200.0
    img = to_png(render_session_report(r), tmp_path, "report-artefact")[0]
    dark = img[..., :3].sum(axis=2) < 0.6
    counts = dark.sum(axis=1)
    frame = np.flatnonzero(counts > 0.95 * counts.max())
    top, bottom = frame.min(), frame.max()  # the axes frame: 210 and 50 bpm
    row = lambda bpm: int(round(top + (210 - bpm) / 160 * (bottom - top)))  # noqa: E731
    sides = np.flatnonzero(dark.sum(axis=0) > 0.95 * dark.sum(axis=0).max())
    inside = slice(sides.min() + 3, sides.max() - 2)  # within the axes frame
    assert dark[row(131) - 2 : row(131) + 3, inside].any(axis=0).mean() > 0.95
    assert not dark[row(205) : row(180), inside].any(), "the artefact was drawn"


@pytest.mark.unit
def test_unknown_paper_speed_is_refused():
    with pytest.raises(ValueError, match="paper"):
        render_session_report(steady_session(), paper="2cm")
