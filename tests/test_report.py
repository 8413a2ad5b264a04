"""The session report PDF: true-scale CTG strip, gaps left as gaps, findings on the page."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from gateway.processing.report import SessionReport, render_session_report, signal_summary

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
DPI = 100


def steady_session(minutes: float = 20, gap=(5.0, 7.0)) -> SessionReport:
    n = int(minutes * 240)
    t_min = (np.arange(n) + 1) / 240
    fhr = np.full(n, 140.0)
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
                 "mean_quality": 0.81}  # fmt: skip


@pytest.mark.unit
def test_unknown_paper_speed_is_refused():
    with pytest.raises(ValueError, match="paper"):
        render_session_report(steady_session(), paper="2cm")
