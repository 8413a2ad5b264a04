"""The session report: a PDF with the CTG strip on the standard grid and scale, the computed
findings and a signal-quality summary, for the nurse page and for the hospital.

The headline is the analysis the device's CTG mode names (gateway/state/settings.py): the
Dawes-Redman criteria for an antenatal session, the FIGO 2015 class for an intrapartum one;
the other follows for reference. The strip is drawn after the same artefact rejection as the
analyses (dsp/ctg_artefact.py): a rejected point lifts the pen like signal loss, and is
counted as loss, never as a rate (docs/fhr.md, "Strip and report").

Drawn with matplotlib at true physical scale, so a printed page can be laid on paper CTG
rules. Scales (FIGO 2015 intrapartum fetal monitoring guidelines, Ayres-de-Campos et al., Int J
Gynaecol Obstet 2015;131:13-24, "Cardiotocography": paper speed 1 cm/min and 20 bpm/cm over
50-210 bpm; 3 cm/min and 30 bpm/cm are the common alternative, chosen by `paper`).
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a gateway

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from dsp.ctg_artefact import VALID_RANGE_BPM, reject_artefacts  # noqa: E402
from dsp.ctg_reference import BASELINE_NORMAL_BPM, POINT_S  # noqa: E402
from gateway.state.settings import DEFAULT_CTG_MODE  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from dsp.arrays import Floats

FHR_MIN_BPM, FHR_MAX_BPM = (int(v) for v in VALID_RANGE_BPM)  # the chart: FIGO 2015, 50-210
PAPER = {  # name -> (cm per minute, bpm per cm)
    "1cm": (1.0, 20.0),
    "3cm": (3.0, 30.0),
}
_CM = 1 / 2.54
_PAGE_W_CM, _PAGE_H_CM = 29.7, 21.0  # A4 landscape
_MARGIN_CM = 1.5
_LINE_CHARS = 170  # header text is wrapped to the page's width at 8 pt


@dataclass(frozen=True)
class SessionReport:
    session_id: str
    device_id: str
    start: str  # ISO time of the first point
    end: str
    fhr_bpm: Floats  # 4 Hz, NaN = no estimate (drawn as a gap, never joined)
    quality: Floats
    mhr_bpm: Floats | None = None  # 4 Hz on the same grid, or None
    findings: dict[str, Any] = field(default_factory=dict)  # CtgFindings.to_dict()
    prescribed_min: float | None = None
    dawes_redman: dict[str, Any] = field(default_factory=dict)  # DawesRedmanResult.to_dict()
    ctg_mode: str = DEFAULT_CTG_MODE  # "antenatal" (Dawes-Redman heads) or "intrapartum"


def signal_summary(r: SessionReport) -> dict[str, float]:
    """Minutes recorded, minutes with a fetal rate kept by the artefact rejection, the share
    without one (no rate, or rejected) and the share rejected as artefact."""
    n = len(r.fhr_bpm)
    cleaned = reject_artefacts(r.fhr_bpm)
    good = int(np.sum(~np.isnan(cleaned.fhr_bpm)))
    return {
        "recorded_min": round(n * POINT_S / 60, 1),
        "good_signal_min": round(good * POINT_S / 60, 1),
        "signal_loss_pct": round(100 * (1 - good / n), 1) if n else 100.0,
        "artefact_pct": round(cleaned.artefact_pct, 1),
        "mean_quality": round(float(np.mean(r.quality)), 2) if n else 0.0,
    }


def dawes_redman_headline(dr: dict[str, Any]) -> str:
    """The Dawes-Redman result in words: "criteria met at N min", "criteria not met at 60
    min: reasons", "not assessable: signal loss X%", ..."""
    status = dr.get("status")
    reasons = "; ".join(dr.get("reasons_not_met") or [])
    if status == "met":
        return f"criteria met at {dr['time_to_met_min']} min"
    if status == "not_met":
        return f"criteria not met at {dr['analysed_min']} min: {reasons}"
    if status == "not_yet_met":
        return (f"criteria not met in {dr['analysed_min']} min (the recording ended before the "
                f"60 min the criteria allow): {reasons}")  # fmt: skip
    if status == "signal_loss":
        return f"not assessable: signal loss {dr['signal_loss_pct']:g}%"
    if status == "too_short":
        return f"not assessable: {reasons}"
    return "not assessed"


def _figo_line(f: dict[str, Any]) -> str:
    return (f"class {f.get('figo_class', 'not assessed')}   baseline {f.get('baseline_bpm', '-')} "
            f"bpm   variability {f.get('variability_bpm', '-')} bpm   STV {f.get('stv_ms', '-')} "
            f"ms   accelerations {len(f.get('accelerations', []))}   decelerations "
            f"{len(f.get('decelerations', []))}")  # fmt: skip


def headline(r: SessionReport) -> list[str]:
    """The findings' lines of the header, the CTG mode's analysis first."""
    f, dr = r.findings, r.dawes_redman
    dawes = "Dawes-Redman: " + dawes_redman_headline(dr)
    if dr.get("status") in ("met", "not_met", "not_yet_met"):
        dawes += (f"   (STV {dr.get('stv_ms', '-')} ms, basal heart rate "
                  f"{dr.get('basal_heart_rate_bpm', '-')} bpm, accelerations "
                  f"{dr.get('accelerations', '-')}, high variation "
                  f"{dr.get('high_variation_min', '-')} min)")  # fmt: skip
    figo = "FIGO 2015: " + _figo_line(f)
    reasons = "FIGO reasons: " + ("; ".join(f.get("reasons", [])) or "-")
    if r.ctg_mode == "intrapartum":
        lines = ["Intrapartum " + figo, reasons, "For reference, antenatal " + dawes]
    else:
        lines = ["Antenatal " + dawes, "For reference, intrapartum " + figo + ".  " + reasons]
    return [w for line in lines for w in textwrap.wrap(line, _LINE_CHARS)]


def _strip(ax: Axes, t_min: Floats, fhr: Floats, mhr: Floats | None, t0_min: float,
           minutes: float, cm_per_min: float, bpm_per_cm: float,
           findings: dict[str, Any]) -> None:  # fmt: skip
    ax.set_xlim(t0_min, t0_min + minutes)
    ax.set_ylim(FHR_MIN_BPM, FHR_MAX_BPM)
    ax.axhspan(*BASELINE_NORMAL_BPM, color="#d9ecd9", zorder=0)
    minor_bpm = 10
    for b in range(FHR_MIN_BPM, FHR_MAX_BPM + 1, minor_bpm):
        major = (b - FHR_MIN_BPM) % int(3 * minor_bpm) == 0
        ax.axhline(b, color="#e8a0a0", lw=0.8 if major else 0.3, zorder=1)
    step = 1.0 if cm_per_min <= 1 else 1 / 3
    for m in np.arange(math.floor(t0_min), t0_min + minutes + 1e-9, step):
        ax.axvline(m, color="#e8a0a0", lw=0.8 if abs(m - round(m)) < 1e-6 else 0.3, zorder=1)
    ax.plot(t_min, fhr, color="black", lw=0.9, zorder=3, label="FHR")
    if mhr is not None:
        ax.plot(t_min, mhr, color="#1f5fbf", lw=0.7, zorder=2, label="maternal HR")
    for a in findings.get("accelerations", []):
        ax.annotate("A", (a["peak_s"] / 60, min(a["peak_bpm"] + 8, FHR_MAX_BPM - 5)),
                    ha="center", fontsize=7, color="#207020")  # fmt: skip
    for d in findings.get("decelerations", []):
        ax.annotate(d.get("type", "D")[0].upper(),
                    (d["nadir_s"] / 60, max(d["nadir_bpm"] - 12, FHR_MIN_BPM + 3)),
                    ha="center", fontsize=7, color="#b02020")  # fmt: skip
    ax.set_yticks(range(FHR_MIN_BPM, FHR_MAX_BPM + 1, 30))
    ax.tick_params(labelsize=7)
    ax.set_ylabel("bpm", fontsize=7)
    ax.set_xlabel("minutes from start", fontsize=7)


def render_session_report(r: SessionReport, paper: str = "1cm") -> bytes:
    """The report as PDF bytes: one strip per row, as many pages as the session needs."""
    if paper not in PAPER:
        raise ValueError(f"paper must be one of {sorted(PAPER)}")
    cm_per_min, bpm_per_cm = PAPER[paper]
    strip_w_cm = _PAGE_W_CM - 2 * _MARGIN_CM - 1.0
    strip_h_cm = (FHR_MAX_BPM - FHR_MIN_BPM) / bpm_per_cm
    minutes_per_row = math.floor(strip_w_cm / cm_per_min)
    n = len(r.fhr_bpm)
    t_min = (np.arange(n) + 1) * POINT_S / 60
    total_min = max(n * POINT_S / 60, 1e-9)
    rows = max(1, math.ceil(total_min / minutes_per_row))
    rows_per_page = max(1, math.floor((_PAGE_H_CM - 7.0) / (strip_h_cm + 1.4)))
    summary = signal_summary(r)
    f = r.findings
    fhr = reject_artefacts(r.fhr_bpm).fhr_bpm  # drawn as the analyses read it: pen lifted
    out = io.BytesIO()
    with PdfPages(out, metadata={"Title": f"perimon session {r.session_id}"}) as pdf:
        for page_start in range(0, rows, rows_per_page):
            fig = plt.figure(figsize=(_PAGE_W_CM * _CM, _PAGE_H_CM * _CM))
            top_cm = _PAGE_H_CM - _MARGIN_CM
            if page_start == 0:
                lines = [
                    f"Fetal heart rate session {r.session_id}   device {r.device_id}",
                    f"{r.start} to {r.end}   recorded {summary['recorded_min']} min, fetal "
                    f"signal {summary['good_signal_min']} min ({summary['signal_loss_pct']}% "
                    f"signal loss, of which {summary['artefact_pct']}% rejected as artefact)"
                    + (f", prescribed {r.prescribed_min:g} min" if r.prescribed_min else ""),
                    *headline(r),
                    f"Scale: {cm_per_min:g} cm/min, {bpm_per_cm:g} bpm/cm. Gaps are signal "
                    "loss and rejected artefacts (never joined). Computed findings support, "
                    "and do not replace, clinical review.",
                ]
                for i, text in enumerate(lines):
                    fig.text(_MARGIN_CM / _PAGE_W_CM, (top_cm - 0.5 * i) / _PAGE_H_CM, text,
                             fontsize=8 if i else 10, va="top")  # fmt: skip
                top_cm -= 0.5 * len(lines) + 0.6
            for row in range(page_start, min(rows, page_start + rows_per_page)):
                t0 = row * minutes_per_row
                minutes = min(minutes_per_row, total_min - t0)
                width_cm = max(minutes, 0.5) * cm_per_min
                ax = fig.add_axes(
                    (
                        (_MARGIN_CM + 1.0) / _PAGE_W_CM,
                        (top_cm - strip_h_cm) / _PAGE_H_CM,
                        width_cm / _PAGE_W_CM,
                        strip_h_cm / _PAGE_H_CM,
                    )
                )
                _strip(ax, t_min, fhr, r.mhr_bpm, t0, max(minutes, 0.5), cm_per_min,
                       bpm_per_cm, f)  # fmt: skip
                top_cm -= strip_h_cm + 1.4
            pdf.savefig(fig)
            plt.close(fig)
    return out.getvalue()
