"""Fit the second skin model's population to the calibration population's summary statistics.

    python scripts/fit_skin_layers.py            # fit, print the constants for skin_layers.py
    python scripts/fit_skin_layers.py --check    # report the committed constants, no fitting

The model (simulators/skin_layers.py) is fitted the way scripts/fit_skin_model.py fits the first
one, on the same statistics of the calibration file (never its rows): per skin group and per LED
and detector the mean and SD of ln R and its slope against TSB, the correlations of the 12 ln R,
and the mean and SD of the shipped estimator's error. Every parameter stays inside the bounds
below (physiological ranges, sources beside POPULATION in the model). The draws are fixed
(common random numbers), so the objective is smooth.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from fit_skin_model import (  # noqa: E402
    CORR_SCALE,
    MEAN_SCALE,
    SD_SCALE,
    SLOPE_SCALE,
    TCB_SCALE,
    log_r,
    summary,
)
from fit_tcb import GROUPS, default_calibration_path, read_calibration  # noqa: E402

from simulators.skin_layers import (  # noqa: E402
    DRAW_ORDER,
    POPULATION,
    PROBE,
    Population,
    Probe,
    population_params,
    population_reflectance,
)

N_SIM = 100  # simulated babies per group (the two-layer transport is ~50x slower)

# name, lower, upper bound of the search (sources beside POPULATION in the model)
PARAMS = (
    *((f"melanin_{g}_{end}", 0.002, 0.4) for g in GROUPS for end in ("lo", "hi")),
    ("epidermis_lo", 0.03, 0.07),
    ("epidermis_hi", 0.07, 0.12),
    ("blood_lo", 0.0001, 0.002),
    ("blood_hi", 0.002, 0.005),
    ("scatter_lo", 0.3, 0.8),
    ("scatter_hi", 0.8, 1.5),
    ("tsr_mean", 0.05, 0.6),
    ("tsr_sd", 0.0, 0.1),
    ("coupling_near", 0.2, 5.0),
    ("coupling_far", 0.2, 5.0),
)


def to_vector(pop: Population, probe: Probe) -> np.ndarray:
    v = [x for g in GROUPS for x in pop.melanin[g]]
    v += [*pop.epidermis_mm, *pop.blood_fraction, *pop.scatter_scale, *pop.tissue_serum_ratio]
    v += [probe.coupling_near, probe.coupling_far]
    return np.array(v, float)


def from_vector(v: np.ndarray) -> tuple[Population, Probe]:
    p = dict(zip((n for n, _, _ in PARAMS), (float(x) for x in v), strict=True))
    pop = dataclasses.replace(
        POPULATION,
        melanin={g: tuple(sorted((p[f"melanin_{g}_lo"], p[f"melanin_{g}_hi"]))) for g in GROUPS},
        epidermis_mm=(p["epidermis_lo"], p["epidermis_hi"]),
        blood_fraction=(p["blood_lo"], p["blood_hi"]),
        scatter_scale=(p["scatter_lo"], p["scatter_hi"]),
        tissue_serum_ratio=(p["tsr_mean"], p["tsr_sd"]),
    )
    return pop, Probe(coupling_near=p["coupling_near"], coupling_far=p["coupling_far"])


class Problem:
    def __init__(self, data: dict[str, np.ndarray], seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.target = {}
        self.draws = {}
        for g in GROUPS:
            rows = data["group"] == g
            tsb = data["tsb"][rows]
            near, far = data["near"][rows], data["far"][rows]
            self.target[g] = summary(log_r(near, far), tsb, near, far)
            self.draws[g] = (rng.random((N_SIM, len(DRAW_ORDER))), rng.choice(tsb, N_SIM))

    def simulate(self, pop: Population, probe: Probe, g: str) -> dict[str, np.ndarray]:
        u, bili = self.draws[g]
        near, far = population_reflectance(
            population_params(u, g, bili, pop), population=pop, probe=probe
        )
        return summary(log_r(near, far), bili, near, far)

    def residuals(self, pop: Population, probe: Probe) -> np.ndarray:
        res = []
        for g in GROUPS:
            s, t = self.simulate(pop, probe, g), self.target[g]
            res += [
                (s["mean"] - t["mean"]) / MEAN_SCALE,
                (s["sd"] - t["sd"]) / SD_SCALE,
                (s["slope"] - t["slope"]) / SLOPE_SCALE,
                (s["corr"] - t["corr"]) / CORR_SCALE,
                (s["tcb"] - t["tcb"]) / TCB_SCALE,
            ]
        return np.concatenate(res)


def report(problem: Problem, pop: Population, probe: Probe) -> None:
    np.set_printoptions(precision=2, suppress=True, linewidth=120)
    for g in GROUPS:
        s, t = problem.simulate(pop, probe, g), problem.target[g]
        print(f"{g}: ln R mean (sim - cal) near/far 450..650")
        print("   ", s["mean"] - t["mean"])
        print("    SD sim", s["sd"], "\n    SD cal", t["sd"])
        print("    slope sim", s["slope"], "\n    slope cal", t["slope"])
        print("    shipped estimator error mean, SD: sim", s["tcb"], "cal", t["tcb"])
        dc = s["corr"] - t["corr"]
        print(
            f"    correlations: RMS error {np.sqrt(np.mean(dc**2)):.3f}, worst {np.abs(dc).max():.2f}"
        )
    print(f"objective: {0.5 * float(np.sum(problem.residuals(pop, probe) ** 2)):.1f}")


def constants_text(pop: Population, probe: Probe) -> str:
    mel = ", ".join(f'"{g}": ({a:.4f}, {b:.4f})' for g, (a, b) in pop.melanin.items())

    def r(t: tuple[float, float], n: int = 4) -> str:
        return f"({t[0]:.{n}f}, {t[1]:.{n}f})"

    return (
        "POPULATION = Population(\n"
        f"    melanin={{{mel}}},\n"
        f"    epidermis_mm={r(pop.epidermis_mm)},\n"
        f"    blood_fraction={r(pop.blood_fraction, 5)},\n"
        f"    so2={r(pop.so2, 3)},\n"
        f"    haematocrit={r(pop.haematocrit, 2)},\n"
        f"    vessel_radius_mm={r(pop.vessel_radius_mm)},\n"
        f"    scatter_scale={r(pop.scatter_scale, 3)},\n"
        f"    tissue_serum_ratio={r(pop.tissue_serum_ratio)},\n"
        ")\n"
        f"PROBE = Probe(coupling_near={probe.coupling_near:.4f}, "
        f"coupling_far={probe.coupling_far:.4f})\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report the committed constants")
    ap.add_argument("--max-nfev", type=int, default=60)
    args = ap.parse_args(argv)
    problem = Problem(read_calibration(default_calibration_path()))
    if args.check:
        report(problem, POPULATION, PROBE)
        return 0
    lo = np.array([b for _, b, _ in PARAMS])
    hi = np.array([b for _, _, b in PARAMS])
    x0 = np.clip(to_vector(POPULATION, PROBE), lo + 1e-6, hi - 1e-6)
    t0 = time.time()
    sol = least_squares(
        lambda x: problem.residuals(*from_vector(x)), x0, bounds=(lo, hi), x_scale="jac",
        diff_step=1e-3, max_nfev=args.max_nfev, verbose=1,
    )  # fmt: skip
    print(f"least_squares: {sol.message} (cost {sol.cost:.1f}, {sol.nfev} evaluations, "
          f"{time.time() - t0:.0f} s)")  # fmt: skip
    pop, probe = from_vector(sol.x)
    report(problem, pop, probe)
    print(constants_text(pop, probe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
