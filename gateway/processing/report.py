"""The session report: a PDF a doctor can file, with the CTG strip on standard paper, the
computed findings, the signal loss, and a line for the reviewer's name and signature.

The page says who and when as the gateway knows them (kept on the gateway, never sent over
MQTT): the hospital, the bed or visit label, the gestation from the hospital's schedule, the
session's times on the gateway's local clock (24-hour, with the UTC offset).

The headline is the analysis the device's CTG mode names (gateway/state/settings.py): the
Dawes-Redman criteria for an antenatal session, the FIGO 2015 class for an intrapartum one;
the other follows for reference. The strip is drawn after the same artefact rejection as the
analyses (dsp/ctg_artefact.py): a rejected point lifts the pen like signal loss, and is
counted as loss, never as a rate (docs/fhr.md, "Strip and report").

Drawn with matplotlib at true physical scale on A4 portrait, so a printed page can be laid on
paper CTG rules: the paper's speed, scale and rules are dsp/ctg_reference.py's (FIGO 2015: 1
cm/min and 20 bpm/cm, or 3 cm/min and 30 bpm/cm), each row a full page width of paper (18 cm:
18 min at 1 cm/min), rows following each other as on a continuous strip, several per page.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a gateway

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from dsp.ctg_artefact import VALID_RANGE_BPM, reject_artefacts  # noqa: E402
from dsp.ctg_reference import (  # noqa: E402
    BASELINE_NORMAL_BPM,
    PAPER_FHR_SCALES_BPM_PER_CM,
    PAPER_LABEL_EVERY_CM,
    PAPER_MINOR_BPM,
    PAPER_MINOR_CM,
    PAPER_SPEEDS_CM_PER_MIN,
    PAPER_UA_PER_CM,
    PAPER_UA_RANGE,
    POINT_S,
)
from gateway.state.settings import DEFAULT_CTG_MODE  # noqa: E402
from gateway.times import parse_time  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dsp.arrays import Floats

FHR_MIN_BPM, FHR_MAX_BPM = (int(v) for v in VALID_RANGE_BPM)  # the chart: FIGO 2015, 50-210
_CM = 1 / 2.54  # inches per centimetre
PAGE_W_CM, PAGE_H_CM = 21.0, 29.7  # A4 portrait
STRIP_LEFT_CM = 1.8  # room for the bpm labels and axis name
STRIP_W_CM = 18.0  # the paper's width on the page: 18 min at 1 cm/min, 6 min at 3 cm/min
_TOP_CM = 1.0  # page margin above and below
_BOTTOM_CM = 1.0
_LINE_CM = 0.42  # one line of 8 pt header text
_LINE_CHARS = 118  # header text is wrapped to the page's width at 8 pt
_UA_GAP_CM = 0.25  # between the FHR and uterine-activity channels
_ROW_GAP_CM = 0.7  # below a row: its clock labels, then space
_FOOTER_CM = 1.3  # reviewer and signature lines, page number
_RULE_MINOR, _RULE_BOLD = "#f4caca", "#e08080"  # paper rules (light red, as printed paper)
FHR_COLOUR, MATERNAL_COLOUR, MARK_COLOUR = "black", "#a23b72", "#1f4e9c"
MOVEMENT_COLOUR = "#8a4b00"  # the mother's movement marks (amber, as on the nurse view's strip)
_MOVEMENT_BPM = 16  # the arrow stands on the bottom of the FHR channel, this tall, under the trace
_NORMAL_BAND = "#dcefdc"
_MARK_LANES = 2  # mark labels close together go one under the other
_LEGEND_COLUMNS, _LEGEND_ROW_CM = 4, 0.32  # the legend's keys: two rows of four fit the page
_MARK_CHAR_CM = 0.125  # width of a character of a mark's label at 6.5 pt (DejaVu Sans, generous)
_SIGNATURE_RULE = "#666666"  # grey: never read as a trace or as the strip's frame


EVENT, MOVEMENT = "event", "movement"  # what a ReportMark stands for


@dataclass(frozen=True)
class ReportMark:
    """An event on the strip: the session's start or stop, an alert (a dashed line with its
    label), or a fetal movement the mother marked (an arrow under the trace, as a CTG
    machine's event marker prints it, unlabelled: they are counted in the header)."""

    t: float  # unix seconds
    label: str
    kind: str = EVENT  # EVENT or MOVEMENT


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
    hospital: str = ""  # as configured on the gateway; blank lines to fill in by hand if unknown
    bed_label: str = ""  # the device's bed or visit label (gateway/state/settings.py)
    gestation: str = ""  # e.g. "34+2 weeks", gestation_at() of the hospital's schedule
    ua: Floats | None = None  # uterine activity on the same grid, when a channel exists
    marks: tuple[ReportMark, ...] = ()  # movement marks, alerts (start and stop are added)
    tz: tzinfo | None = None  # the clock the page is printed in (None: the gateway's local)


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


def movements_line(r: SessionReport) -> str:
    """How many movements the mother marked on the monitor's button in the session."""
    n = sum(1 for m in r.marks if m.kind == MOVEMENT)
    return (f"Fetal movements marked by the mother: {n} (↑ under the trace)." if n
            else "Fetal movements marked by the mother: none.")  # fmt: skip


def gestation_at(schedule: dict[str, Any] | None, t: float) -> str:
    """The gestation at unix time `t` from the hospital's schedule (the GA it gave when it set
    the schedule, counted on from then), as "34+2 weeks"; "" when the schedule gave none."""
    if not schedule or "ga_weeks_when_set" not in schedule:
        return ""
    set_at = parse_time(schedule.get("set_at"))
    if set_at is None:
        return ""
    days = math.floor(float(schedule["ga_weeks_when_set"]) * 7 + (t - set_at) / 86400 + 1e-9)
    return f"{days // 7}+{days % 7} weeks"


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


@dataclass(frozen=True)
class Paper:
    """One choice of CTG paper, and what it makes of the page."""

    speed_cm_per_min: float
    scale_bpm_per_cm: float
    has_ua: bool

    @property
    def row_s(self) -> float:
        """Seconds of trace in one row (a full page width of paper)."""
        return STRIP_W_CM / self.speed_cm_per_min * 60

    @property
    def fhr_h_cm(self) -> float:
        return (FHR_MAX_BPM - FHR_MIN_BPM) / self.scale_bpm_per_cm

    @property
    def ua_h_cm(self) -> float:
        return (PAPER_UA_RANGE[1] - PAPER_UA_RANGE[0]) / PAPER_UA_PER_CM if self.has_ua else 0.0

    @property
    def row_h_cm(self) -> float:
        ua = self.ua_h_cm + _UA_GAP_CM if self.has_ua else 0.0
        return self.fhr_h_cm + ua + _ROW_GAP_CM


def _clock(t: float, tz: tzinfo | None, seconds: bool = False) -> str:
    d = datetime.fromtimestamp(t, tz) if tz is not None else datetime.fromtimestamp(t).astimezone()
    return d.strftime("%H:%M:%S" if seconds else "%H:%M")


def _date_time(t: float, tz: tzinfo | None) -> str:
    d = datetime.fromtimestamp(t, tz) if tz is not None else datetime.fromtimestamp(t).astimezone()
    off = d.strftime("%z")
    return d.strftime("%Y-%m-%d %H:%M:%S") + f" (UTC{off[:3]}:{off[3:]})"


def _rules(ax: Axes, t0: float, t1: float, lo: float, hi: float, minor: float,
           bold: float, speed: float) -> None:  # fmt: skip
    """The paper's rules on one channel: thin every `minor` units and every half centimetre
    of time, bold on multiples of `bold` units and every centimetre of time."""
    for v in np.arange(math.ceil(lo / minor) * minor, hi + 1e-9, minor):
        on_cm = abs(v / bold - round(v / bold)) < 1e-6
        ax.axhline(v, color=_RULE_BOLD if on_cm else _RULE_MINOR, lw=0.8 if on_cm else 0.35,
                   zorder=1)  # fmt: skip
    step_s = PAPER_MINOR_CM / speed * 60
    for i, s in enumerate(np.arange(t0, t1 + 1e-6, step_s)):
        on_cm = i % round(1 / PAPER_MINOR_CM) == 0
        ax.axvline(s, color=_RULE_BOLD if on_cm else _RULE_MINOR, lw=0.8 if on_cm else 0.35,
                   zorder=1)  # fmt: skip


def _row(fig: Figure, paper: Paper, r: SessionReport, t: Floats, fhr: Floats, t0: float,
         top_cm: float, marks: list[ReportMark], t_start: float) -> None:  # fmt: skip
    """One row of paper: the FHR channel from t0 for a page width, the UA channel under it."""
    t1 = t0 + paper.row_s
    sp = paper.speed_cm_per_min
    x = STRIP_LEFT_CM / PAGE_W_CM
    w = STRIP_W_CM / PAGE_W_CM
    ax = fig.add_axes((x, (top_cm - paper.fhr_h_cm) / PAGE_H_CM, w, paper.fhr_h_cm / PAGE_H_CM))
    ax.set_xlim(t0, t1)
    ax.set_ylim(FHR_MIN_BPM, FHR_MAX_BPM)
    ax.axhspan(*BASELINE_NORMAL_BPM, color=_NORMAL_BAND, zorder=0, lw=0)
    _rules(ax, t0, t1, FHR_MIN_BPM, FHR_MAX_BPM, PAPER_MINOR_BPM, paper.scale_bpm_per_cm, sp)
    inside = (t >= t0 - POINT_S) & (t <= t1 + POINT_S)
    if r.mhr_bpm is not None:
        ax.plot(t[inside], r.mhr_bpm[inside], color=MATERNAL_COLOUR, lw=0.7, zorder=2)
    ax.plot(t[inside], fhr[inside], color=FHR_COLOUR, lw=0.9, zorder=3)
    for a in r.findings.get("accelerations", []):
        at = t_start + a["peak_s"] - POINT_S
        if t0 <= at < t1:
            ax.annotate("A", (at, min(a["peak_bpm"] + 8, FHR_MAX_BPM - 6)), ha="center",
                        fontsize=7, color="#207020", zorder=4)  # fmt: skip
    for d in r.findings.get("decelerations", []):
        at = t_start + d["nadir_s"] - POINT_S
        if t0 <= at < t1:
            ax.annotate(d.get("type", "D")[0].upper(),
                        (at, max(d["nadir_bpm"] - 12, FHR_MIN_BPM + 3)), ha="center",
                        fontsize=7, color="#b02020", zorder=4)  # fmt: skip
    lanes = [-math.inf] * _MARK_LANES  # where each lane's last label ends (cm along the row)
    for m in marks:
        if t0 <= m.t < t1 and m.kind == MOVEMENT:
            ax.annotate("", (m.t, FHR_MIN_BPM + _MOVEMENT_BPM), xytext=(m.t, FHR_MIN_BPM),
                        arrowprops={"arrowstyle": "-|>", "color": MOVEMENT_COLOUR, "lw": 1.2,
                                    "mutation_scale": 7, "shrinkA": 0, "shrinkB": 0},
                        zorder=5)  # fmt: skip
        elif t0 <= m.t < t1:
            ax.axvline(m.t, color=MARK_COLOUR, lw=1.0, ls=(0, (3, 2)), zorder=4)
            at_cm = (m.t - t0) / 60 * sp
            text = f"▼ {m.label}"
            free = [i for i, end in enumerate(lanes) if end < at_cm]
            if not free:
                continue  # the line alone: its label would cover another
            lanes[free[0]] = at_cm + len(text) * _MARK_CHAR_CM + 0.15
            ax.annotate(text, (m.t, FHR_MAX_BPM), xytext=(2, -2 - 9 * free[0]),
                        textcoords="offset points", va="top", ha="left", fontsize=6.5,
                        color=MARK_COLOUR, zorder=5,
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none"})  # fmt: skip
    bold = paper.scale_bpm_per_cm
    ax.set_yticks([v for v in range(FHR_MIN_BPM, FHR_MAX_BPM + 1) if v % bold == 0])
    ax.set_ylabel("FHR (bpm)", fontsize=7, labelpad=2)
    ax.tick_params(labelsize=7, length=0, pad=2)
    for side in ax.spines.values():
        side.set_linewidth(0.8)
    ax.set_xticks([])
    bottom = ax
    if r.ua is not None and paper.has_ua:
        ua_top = top_cm - paper.fhr_h_cm - _UA_GAP_CM
        ua = fig.add_axes((x, (ua_top - paper.ua_h_cm) / PAGE_H_CM, w, paper.ua_h_cm / PAGE_H_CM))
        ua.set_xlim(t0, t1)
        ua.set_ylim(*PAPER_UA_RANGE)
        _rules(ua, t0, t1, *PAPER_UA_RANGE, PAPER_UA_PER_CM / 2, PAPER_UA_PER_CM, sp)
        ua.plot(t[inside], r.ua[inside], color=FHR_COLOUR, lw=0.8, zorder=3)
        ua.set_yticks(np.arange(PAPER_UA_RANGE[0], PAPER_UA_RANGE[1] + 1, PAPER_UA_PER_CM))
        ua.set_ylabel("UA", fontsize=7, labelpad=2)
        ua.tick_params(labelsize=7, length=0, pad=2)
        ua.set_xticks([])
        bottom = ua
    every_s = PAPER_LABEL_EVERY_CM[sp] / sp * 60
    ticks = np.arange(math.ceil(t0 / every_s) * every_s, t1 + 1e-6, every_s)
    bottom.set_xticks(ticks)
    bottom.set_xticklabels([_clock(v, r.tz) for v in ticks], fontsize=7)
    bottom.tick_params(axis="x", length=2, pad=1)


def _header(fig: Figure, r: SessionReport, paper: Paper, t_start: float, t_end: float) -> float:
    """The first page's header; returns where the strip may start (cm from the bottom)."""
    s = signal_summary(r)
    blank = "________________________"
    lines = [
        ("Fetal heart rate recording at home: session report", 11),
        (f"Hospital: {r.hospital or blank}    Bed or visit label: {r.bed_label or blank}    "
         f"Gestation: {r.gestation or blank}", 8),
        (f"Recorded {_date_time(t_start, r.tz)} to {_clock(t_end, r.tz, seconds=True)}, local "
         f"time    monitor {r.device_id}    session {r.session_id}", 8),
        (f"Recorded {s['recorded_min']:g} min"
         + (f" of {r.prescribed_min:g} min prescribed" if r.prescribed_min else "")
         + f", fetal heart rate {s['good_signal_min']:g} min.   Signal loss "
         f"{s['signal_loss_pct']:g}% (of which {s['artefact_pct']:g}% rejected as artefact).", 8),
        *((line, 8) for line in headline(r)),
        (movements_line(r), 8),
    ]  # fmt: skip
    top = PAGE_H_CM - _TOP_CM
    for text, size in lines:
        fig.text(STRIP_LEFT_CM / PAGE_W_CM, top / PAGE_H_CM, text, fontsize=size, va="top",
                 weight="bold" if size > 8 else "normal")  # fmt: skip
        top -= _LINE_CM * (1.5 if size > 8 else 1.0)
    handles = [
        Line2D([], [], color=FHR_COLOUR, lw=1.2, label="FHR (fetal heart rate)"),
        Line2D([], [], color=MATERNAL_COLOUR, lw=1.2, label="maternal heart rate"),
        Line2D([], [], color=MARK_COLOUR, lw=1.0, ls=(0, (3, 2)), label="marks (▼ events)"),
        Line2D([], [], color=MOVEMENT_COLOUR, marker="$\\uparrow$", lw=0,
               label="fetal movement (mother's mark)"),
        Patch(color=_NORMAL_BAND, label=f"normal baseline {BASELINE_NORMAL_BPM[0]:g}-"
              f"{BASELINE_NORMAL_BPM[1]:g} bpm"),
        Line2D([], [], color="#207020", marker="$A$", lw=0, label="acceleration"),
        Line2D([], [], color="#b02020", marker="$D$", lw=0, label="deceleration (E/L/V/P)"),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="upper left", ncol=_LEGEND_COLUMNS, fontsize=6.5, frameon=False,
               bbox_to_anchor=(STRIP_LEFT_CM / PAGE_W_CM - 0.01, (top - 0.05) / PAGE_H_CM),
               handlelength=1.8, columnspacing=1.0, borderaxespad=0)  # fmt: skip
    top -= 0.55 + _LEGEND_ROW_CM * (math.ceil(len(handles) / _LEGEND_COLUMNS) - 1)
    for line in textwrap.wrap(_scale_line(paper), _LINE_CHARS + 25):
        fig.text(STRIP_LEFT_CM / PAGE_W_CM, top / PAGE_H_CM, line, fontsize=6.5, va="top",
                 color="#333333")  # fmt: skip
        top -= _LINE_CM * 0.85
    return top - 0.35


def _scale_line(paper: Paper) -> str:
    return (f"Paper {paper.speed_cm_per_min:g} cm/min, {paper.scale_bpm_per_cm:g} bpm/cm "
            f"(bold rules every centimetre), 24-hour local clock. Gaps are signal loss and "
            f"rejected artefact, never joined. Computed findings support, and do not replace, "
            f"clinical review.")  # fmt: skip


def _footer(fig: Figure, r: SessionReport, page: int, pages: int) -> None:
    """Who reviewed the trace, when, and their signature; the page number."""
    y = _BOTTOM_CM + 0.55
    x0 = STRIP_LEFT_CM
    for label, width in (("Reviewed by", 6.0), ("Signature", 5.0), ("Date and time", 3.4)):
        fig.text(x0 / PAGE_W_CM, (y + 0.08) / PAGE_H_CM, label, fontsize=7.5, va="bottom")
        start = x0 + 0.1 * len(label) * 1.55 + 0.1
        fig.add_artist(Line2D([start / PAGE_W_CM, (x0 + width) / PAGE_W_CM],
                              [y / PAGE_H_CM, y / PAGE_H_CM], color=_SIGNATURE_RULE, lw=0.6))  # fmt: skip
        x0 += width + 0.4
    fig.text(STRIP_LEFT_CM / PAGE_W_CM, _BOTTOM_CM / PAGE_H_CM,
             f"perimon session {r.session_id}   monitor {r.device_id}   page {page} of {pages}",
             fontsize=6.5, va="bottom", color="#333333")  # fmt: skip


def render_session_report(r: SessionReport, speed_cm_per_min: float = 1.0,
                          scale_bpm_per_cm: float = 20.0) -> bytes:  # fmt: skip
    """The report as PDF bytes: rows of paper one after the other, as many pages as needed."""
    if speed_cm_per_min not in PAPER_SPEEDS_CM_PER_MIN:
        raise ValueError(f"paper speed must be one of {PAPER_SPEEDS_CM_PER_MIN} cm/min")
    if scale_bpm_per_cm not in PAPER_FHR_SCALES_BPM_PER_CM:
        raise ValueError(f"paper scale must be one of {PAPER_FHR_SCALES_BPM_PER_CM} bpm/cm")
    paper = Paper(speed_cm_per_min, scale_bpm_per_cm, r.ua is not None)
    n = len(r.fhr_bpm)
    t_start = parse_time(r.start)
    if t_start is None:
        raise ValueError(f"start: not an ISO time: {r.start!r}")
    t: Floats = t_start + np.arange(n, dtype=np.float64) * POINT_S
    t_end = parse_time(r.end) or (t_start + n * POINT_S)
    first = math.floor(t_start / 60) * 60  # rows begin on the clock's minute
    rows = max(1, math.ceil((max(t_end, t_start + POINT_S) - first) / paper.row_s))
    marks = sorted([ReportMark(t_start, f"start {_clock(t_start, r.tz)}"),
                    ReportMark(t_end, f"stop {_clock(t_end, r.tz)}"), *r.marks],
                   key=lambda m: m.t)  # fmt: skip
    fhr = reject_artefacts(r.fhr_bpm).fhr_bpm  # drawn as the analyses read it: pen lifted
    pages: list[list[int]] = [[]]
    probe = plt.figure(figsize=(PAGE_W_CM * _CM, PAGE_H_CM * _CM))
    room = _header(probe, r, paper, t_start, t_end) - _BOTTOM_CM - _FOOTER_CM
    plt.close(probe)
    for row in range(rows):
        if len(pages[-1]) * paper.row_h_cm + paper.row_h_cm > room + _ROW_GAP_CM:
            pages.append([])
            room = PAGE_H_CM - _TOP_CM - 0.6 - _BOTTOM_CM - _FOOTER_CM
        pages[-1].append(row)
    out = io.BytesIO()
    meta = {"Title": f"perimon session {r.session_id}", "Subject": "CTG session report"}
    with PdfPages(out, metadata=meta) as pdf:
        for i, page_rows in enumerate(pages):
            fig = plt.figure(figsize=(PAGE_W_CM * _CM, PAGE_H_CM * _CM))
            if i == 0:
                top = _header(fig, r, paper, t_start, t_end)
            else:
                fig.text(STRIP_LEFT_CM / PAGE_W_CM, (PAGE_H_CM - _TOP_CM) / PAGE_H_CM,
                         f"Session {r.session_id} (continued): paper {paper.speed_cm_per_min:g}"
                         f" cm/min, {paper.scale_bpm_per_cm:g} bpm/cm, 24-hour local clock",
                         fontsize=6.5, va="top")  # fmt: skip
                top = PAGE_H_CM - _TOP_CM - 0.6
            for row in page_rows:
                _row(fig, paper, r, t, fhr, first + row * paper.row_s, top, marks, t_start)
                top -= paper.row_h_cm
            _footer(fig, r, i + 1, len(pages))
            pdf.savefig(fig)
            plt.close(fig)
    return out.getvalue()
