"""`perimon dsp tcb ...`: transcutaneous bilirubin from reflectance files, and what it means.

Commands:
    perimon dsp tcb estimate MEAS.csv [--out EST.csv] [--model MODEL.json]
    perimon dsp tcb calibrate CAL.csv --out MODEL.json
    perimon dsp tcb assess --tcb 12.4 --age-hours 40 --ga-weeks 38 [--risk-factors]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gateway.cli import Subparsers, UserError

if TYPE_CHECKING:
    from dsp.tcb import TcbModel

LED_NM = (450, 470, 505, 550, 590, 650)
NEAR_COLS = tuple(f"r_near_{nm}" for nm in LED_NM)
FAR_COLS = tuple(f"r_far_{nm}" for nm in LED_NM)
EST_COLS = ("id", "tcb_mg_dl", "ci_low", "ci_high", "flag")


def _read_rows(path: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read CSV ({exc})") from exc
    if not rows:
        raise UserError(f"{path}: no data rows")
    return rows


def _number(text: str | None) -> float:
    """A cell as float; blank or unparsable becomes NaN (the estimator flags it)."""
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _load_model(path: str | None) -> TcbModel:
    from dsp.tcb import load_model

    try:
        return load_model(path)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such model file") from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load TcB model: {exc}") from exc


def _estimate(args: argparse.Namespace) -> int:
    from dsp.tcb import estimate_tcb

    rows = _read_rows(args.meas, ("id", *NEAR_COLS, *FAR_COLS))
    model = _load_model(args.model)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EST_COLS)
    for row in rows:
        near = np.array([_number(row[c]) for c in NEAR_COLS])
        far = np.array([_number(row[c]) for c in FAR_COLS])
        est = estimate_tcb(near, far, model)
        writer.writerow(
            [row["id"], _fmt(est.tcb_mg_dl), _fmt(est.ci_low_mg_dl), _fmt(est.ci_high_mg_dl),
             est.flag]
        )  # fmt: skip
    if args.out:
        try:
            Path(args.out).write_text(buf.getvalue(), encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{args.out}: cannot write ({exc})") from exc
    else:
        sys.stdout.write(buf.getvalue())
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from dsp.tcb import fit_model

    rows = _read_rows(args.cal, ("tsb_mg_dl", *NEAR_COLS, *FAR_COLS))
    near = np.array([[_number(r[c]) for c in NEAR_COLS] for r in rows])
    far = np.array([[_number(r[c]) for c in FAR_COLS] for r in rows])
    tsb = np.array([_number(r["tsb_mg_dl"]) for r in rows])
    weights = None
    if "skin_group" in rows[0]:
        groups = np.array([r["skin_group"] for r in rows])
        weights = np.ones(len(rows))
        labels = [g for g in np.unique(groups) if g]
        for g in labels:
            weights[groups == g] = len(rows) / (len(labels) * np.sum(groups == g))
    try:
        model = fit_model(near, far, tsb, weights=weights)
    except ValueError as exc:
        raise UserError(f"{args.cal}: {exc}") from exc
    model.meta.update({"source": Path(args.cal).name})
    try:
        Path(args.out).write_text(json.dumps(model.to_dict(), indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write ({exc})") from exc
    print(f"fitted on {model.meta['n_calibration']} babies -> {args.out}")
    return 0


def _assess(args: argparse.Namespace) -> int:
    from dsp.bilirubin_zones import assess_bilirubin

    previous = None
    if args.previous:
        previous = []
        for item in args.previous:
            try:
                age, value = (float(x) for x in item.split(":"))
            except ValueError as exc:
                raise UserError(f"--previous expects AGE_HOURS:TCB, got {item!r}") from exc
            previous.append((age, value))
    try:
        result = assess_bilirubin(
            args.tcb, args.age_hours, args.ga_weeks, args.risk_factors, previous
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    print(json.dumps(result.to_dict(), indent=1))
    return 0


def register(dsp_subparsers: Subparsers) -> None:
    tcb = dsp_subparsers.add_parser("tcb", help="transcutaneous bilirubin (jaundice meter)")
    sub = tcb.add_subparsers(dest="tcb_command", metavar="COMMAND", required=True)

    est = sub.add_parser("estimate", help="reflectance CSV -> TcB CSV")
    est.add_argument("meas", metavar="MEAS.csv")
    est.add_argument("--out", metavar="EST.csv", help="write here instead of stdout")
    est.add_argument("--model", metavar="MODEL.json", help="default: the shipped model")
    est.set_defaults(func=_estimate)

    cal = sub.add_parser("calibrate", help="fit a TcB model on reflectance + serum bilirubin")
    cal.add_argument("cal", metavar="CAL.csv")
    cal.add_argument("--out", metavar="MODEL.json", required=True)
    cal.set_defaults(func=_calibrate)

    ass = sub.add_parser("assess", help="Bhutani zone and AAP 2022 thresholds for one TcB")
    ass.add_argument("--tcb", type=float, required=True, help="TcB in mg/dL")
    ass.add_argument("--age-hours", type=float, required=True)
    ass.add_argument("--ga-weeks", type=float, required=True, help="gestational age, 35-45")
    ass.add_argument(
        "--risk-factors",
        action="store_true",
        help="any AAP 2022 neurotoxicity risk factor other than gestational age",
    )
    ass.add_argument("--previous", nargs="*", metavar="AGE_HOURS:TCB",
                     help="earlier readings, for the rate of rise")  # fmt: skip
    ass.set_defaults(func=_assess)
