"""Fit the TcB estimator from the calibration file and write dsp/tcb_model.json.

    python scripts/fit_tcb.py [CAL.csv] [--out dsp/tcb_model.json]

Default input: $PERIMON_SHARED_DIR/data/tcb/calibration.csv (or ../shared next to the repo).
A fixed 25 % of babies (by a seeded split, stratified by skin group) is kept aside and only used
to report bias and limits of agreement per skin group; the shipped coefficients are then refit
on all rows. Skin groups are used only to weight the fit so that each group counts equally
(the device never sees them).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dsp.tcb import N_LEDS, estimate_tcb, fit_model  # noqa: E402

LED_NM = (450, 470, 505, 550, 590, 650)
NEAR_COLS = [f"r_near_{nm}" for nm in LED_NM]
FAR_COLS = [f"r_far_{nm}" for nm in LED_NM]
GROUPS = ("light", "medium", "dark")


def default_calibration_path() -> Path:
    shared = os.environ.get("PERIMON_SHARED_DIR")
    base = Path(shared) if shared else REPO.parent / "shared"
    return base / "data" / "tcb" / "calibration.csv"


def read_calibration(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    near = np.array([[float(r[c]) for c in NEAR_COLS] for r in rows])
    far = np.array([[float(r[c]) for c in FAR_COLS] for r in rows])
    return {
        "near": near,
        "far": far,
        "tsb": np.array([float(r["tsb_mg_dl"]) for r in rows]),
        "group": np.array([r.get("skin_group", "") for r in rows]),
    }


def group_weights(group: np.ndarray) -> np.ndarray:
    """Each skin group contributes equally to the fit."""
    w = np.ones(len(group))
    present = [g for g in GROUPS if np.any(group == g)]
    for g in present:
        w[group == g] = len(group) / (len(present) * np.sum(group == g))
    return w


def split(group: np.ndarray, seed: int = 2024, fraction: float = 0.25) -> np.ndarray:
    """Boolean mask of held-out rows, stratified by group."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(group), bool)
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        rng.shuffle(idx)
        held[idx[: int(round(fraction * len(idx)))]] = True
    return held


def agreement(model, data: dict[str, np.ndarray], rows: np.ndarray) -> dict:
    est = [estimate_tcb(data["near"][i], data["far"][i], model) for i in np.flatnonzero(rows)]
    pred = np.array([np.nan if e.tcb_mg_dl is None else e.tcb_mg_dl for e in est])
    tsb = data["tsb"][rows]
    grp = data["group"][rows]
    res = pred - tsb
    ok = np.isfinite(res)
    lo = np.array([np.nan if e.ci_low_mg_dl is None else e.ci_low_mg_dl for e in est])
    hi = np.array([np.nan if e.ci_high_mg_dl is None else e.ci_high_mg_dl for e in est])
    out = {
        "n": int(rows.sum()),
        "flagged": int((~ok).sum()),
        "bias": float(np.mean(res[ok])),
        "loa95": float(1.96 * np.std(res[ok], ddof=1)),
        "ci_coverage": float(np.mean((tsb[ok] >= lo[ok]) & (tsb[ok] <= hi[ok]))),
    }
    for g in GROUPS:
        m = ok & (grp == g)
        if m.any():
            out[g] = {"n": int(m.sum()), "bias": float(np.mean(res[m])),
                      "sd": float(np.std(res[m], ddof=1))}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("calibration", nargs="?", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "dsp" / "tcb_model.json")
    args = ap.parse_args(argv)
    path = args.calibration or default_calibration_path()
    data = read_calibration(path)
    assert data["near"].shape[1] == N_LEDS
    w = group_weights(data["group"])
    held = split(data["group"])

    dev = fit_model(data["near"][~held], data["far"][~held], data["tsb"][~held],
                    weights=w[~held])  # fmt: skip
    validation = agreement(dev, data, held)

    model = fit_model(data["near"], data["far"], data["tsb"], weights=w)
    model.meta.update({
        "source": path.name,
        "fitted_by": "scripts/fit_tcb.py",
        "weights": "equal total weight per skin group",
        "held_out_validation": validation,
    })  # fmt: skip
    args.out.write_text(json.dumps(model.to_dict(), indent=1) + "\n")
    print(json.dumps(validation, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
