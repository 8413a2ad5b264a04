"""Transcutaneous bilirubin benchmark: accuracy per skin group, flags, and method transfer.

    python benchmarks/bench_tcb.py [--markdown]

1. Held-out calibration babies: scripts/fit_tcb.py's stratified 25 % split; the model is fitted
   on the other 75 % exactly as the shipped one is, then bias, SD and 95 % limits of agreement
   (LoA = 1.96 SD) are reported per skin group and for TSB >= 18 mg/dL.
2. Method transfer on the skin simulator: fit the same feature set on simulated light and
   medium babies only, evaluate on simulated dark babies (does modelling melanin carry over
   to skin the calibration barely saw?).
3. Flagged presses through the device simulator (no contact, ambient light, saturation,
   flicker): how many of them produced a number (must be 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from fit_tcb import (  # noqa: E402
    default_calibration_path,
    group_weights,
    read_calibration,
    split,
)

from dsp.tcb import estimate_tcb, estimate_tcb_batch, fit_model  # noqa: E402
from dsp.tcb_counts import reflectance_from_counts  # noqa: E402
from simulators.skin import random_newborn, skin_reflectance  # noqa: E402
from simulators.tcb_device import TcbDeviceModel, random_factory_calibration  # noqa: E402

GROUPS = ("light", "medium", "dark")


def _stats(res: np.ndarray) -> tuple[int, float, float, float]:
    res = res[np.isfinite(res)]
    sd = float(np.std(res, ddof=1)) if len(res) > 1 else float("nan")
    return len(res), float(np.mean(res)), sd, 1.96 * sd


def held_out_calibration() -> dict[str, tuple]:
    data = read_calibration(default_calibration_path())
    held = split(data["group"])
    w = group_weights(data["group"])
    model = fit_model(data["near"][~held], data["far"][~held], data["tsb"][~held],
                      weights=w[~held])  # fmt: skip
    est = estimate_tcb_batch(data["near"][held], data["far"][held], model)
    pred = np.array([np.nan if e.tcb_mg_dl is None else e.tcb_mg_dl for e in est])
    tsb = data["tsb"][held]
    grp = data["group"][held]
    res = pred - tsb
    out = {g: _stats(res[grp == g]) for g in GROUPS}
    out["all"] = _stats(res)
    out["TSB >= 18"] = _stats(res[tsb >= 18])
    lo = np.array([np.nan if e.ci_low_mg_dl is None else e.ci_low_mg_dl for e in est])
    hi = np.array([np.nan if e.ci_high_mg_dl is None else e.ci_high_mg_dl for e in est])
    ok = np.isfinite(pred)
    out["coverage"] = float(np.mean((tsb[ok] >= lo[ok]) & (tsb[ok] <= hi[ok])))
    out["flagged"] = int((~ok).sum())
    return out


def simulated_transfer(n_per_group: int = 300, seed: int = 5) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    sims = {}
    for g in GROUPS:
        near, far, tsb = [], [], []
        for _ in range(n_per_group):
            baby = random_newborn(rng, g)
            n, f = skin_reflectance(baby)
            near.append(n * (1 + rng.normal(0, 0.005, 6)) + rng.normal(0, 2e-4, 6))
            far.append(f * (1 + rng.normal(0, 0.01, 6)) + rng.normal(0, 5e-4, 6))
            tsb.append(baby.bilirubin_mg_dl)
        sims[g] = (np.array(near), np.array(far), np.array(tsb))
    train = [sims["light"], sims["medium"]]
    model = fit_model(
        np.vstack([t[0] for t in train]), np.vstack([t[1] for t in train]),
        np.concatenate([t[2] for t in train]),
    )  # fmt: skip
    out = {}
    for g in GROUPS:
        near, far, tsb = sims[g]
        est = estimate_tcb_batch(near, far, model)
        pred = np.array([np.nan if e.tcb_mg_dl is None else e.tcb_mg_dl for e in est])
        out[g] = (*_stats(pred - tsb), int(np.sum(~np.isfinite(pred))))
    return out


def flagged_presses(n: int = 40, seed: int = 9) -> dict[str, tuple[int, int]]:
    cal = random_factory_calibration(seed)
    dev = TcbDeviceModel(cal, seed=seed)
    rng = np.random.default_rng(seed)
    cases = {
        "no contact": {"contact": False},
        "ambient light": {"ambient": 0.3},
        "saturation (bright room)": {"ambient": 4.0},
        "flicker": {"ambient": 0.02},
    }
    out = {}
    for name, kwargs in cases.items():
        numbers = 0
        flags = set()
        for _ in range(n):
            baby = random_newborn(rng)
            near, far = skin_reflectance(baby, dev.led_centre_nm, dev.led_fwhm_nm)
            p = dev.press(near, far, **kwargs)
            rn, rf, flag = reflectance_from_counts(
                p.dark_before, p.dark_after, p.flashes, p.temperature_c, p.contact,
                cal.to_dict(),
            )  # fmt: skip
            flags.add(flag)
            est = estimate_tcb(rn, rf)
            numbers += est.tcb_mg_dl is not None
        out[name] = (n, numbers, ",".join(sorted(flags)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print the docs table")
    ap.parse_args(argv)
    t0 = time.perf_counter()
    cal = held_out_calibration()
    sim = simulated_transfer()
    flags = flagged_presses()
    elapsed = time.perf_counter() - t0

    print("Held-out calibration babies (25 %, fitted on the other 75 %), TcB - TSB, mg/dL")
    print("| group | n | bias | SD | 95 % LoA | target |")
    print("|---|---|---|---|---|---|")
    for g in (*GROUPS, "TSB >= 18", "all"):
        n, bias, sd, loa = cal[g]
        target = "LoA within +-2.0" if g == "all" else "bias within +-0.5"
        print(f"| {g} | {n} | {bias:+.2f} | {sd:.2f} | +-{loa:.2f} | {target} |")
    print(f"95 % interval coverage: {cal['coverage']:.1%}; flagged: {cal['flagged']}")
    print()
    print("Skin simulator, fitted on simulated light+medium only, TcB - true bilirubin, mg/dL")
    print("| group | n | bias | SD | 95 % LoA | flagged |")
    print("|---|---|---|---|---|---|")
    for g in GROUPS:
        n, bias, sd, loa, nflag = sim[g]
        print(f"| {g} | {n} | {bias:+.2f} | {sd:.2f} | +-{loa:.2f} | {nflag} |")
    print()
    print("Bad presses through the device simulator")
    print("| case | presses | numbers produced | flags |")
    print("|---|---|---|---|")
    for name, (n, numbers, fl) in flags.items():
        print(f"| {name} | {n} | {numbers} | {fl} |")
    print(f"\n(run time {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
