"""Fit the skin simulator's physical parameters to the calibration population.

    python scripts/fit_skin_model.py            # fit, print the constants for simulators/skin.py
    python scripts/fit_skin_model.py --check    # compare the committed constants, no fitting

The simulator (simulators/skin.py) stays a physics model: a melanin epidermis over a dermis with
blood and bilirubin, diffusion-theory reflectance at 0.7 and 2.0 mm, relative to the white
phantom. What is fitted are a handful of its physical constants, on summary statistics of the
calibration file (never on its rows):

* per skin group, per LED and detector: mean and SD of ln R;
* per skin group, per LED and detector: slope of ln R against TSB (mostly 450/470 nm);
* per skin group: the correlation matrix of the 12 ln R values (how much of the variation
  is epidermal, dermal or scattering).

Parameters: melanin fraction range per group; dermal scattering amplitude and power and
epidermal thickness ranges; the tissue/serum bilirubin ratio and the in-vivo bilirubin
extinction scale (only their product is identified; the ratio's spread is fitted, the
extinction scale is kept at the literature value unless --fit-epsilon); epidermal path factors
and skin/phantom coupling at each detector. The blood terms (volume fraction, haematocrit, SO2,
probe blanching, vessel radius) are fitted only inside physiological ranges, and each range
keeps a spread: its lower end is bounded below and its upper end above a physiological middle
value, so the simulator cannot collapse blood to one non-physiological value.

Simulated babies get the bilirubin levels of the calibration babies of the same group, so both
populations have the same TSB distribution; the draws are fixed (common random numbers), which
makes the objective smooth for scipy.optimize.least_squares.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small matrices: threads only cost time

import numpy as np  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from fit_tcb import GROUPS, default_calibration_path, read_calibration  # noqa: E402

from dsp.tcb import REFLECTANCE_FLOOR, estimate_tcb, load_model, tcb_features  # noqa: E402
from dsp.tcb_counts import calibrated_reflectance  # noqa: E402
from simulators.skin import (  # noqa: E402
    DRAW_ORDER,
    POPULATION,
    PROBE,
    Population,
    ProbeOptics,
    population_params,
    population_reflectance,
)
from simulators.tcb_device import TcbDeviceModel, random_factory_calibration  # noqa: E402

N_SIM = 400  # simulated babies per group for the summary statistics
# Residual scales: how big a mismatch counts as one unit in the least-squares objective.
MEAN_SCALE = 0.03
SD_SCALE = 0.03
SLOPE_SCALE = 0.003
CORR_SCALE = 0.1
TCB_SCALE = 0.25  # mg/dL, for the mean and SD of the shipped estimator's error
_IU = np.triu_indices(12, 1)  # every pair of the 12 ln R columns (near 0-5, far 6-11)

# name, lower bound, upper bound (physiological / physical limits of the search)
PARAMS = (
    *(
        (f"melanin_{g}_{end}", 0.002, 0.6)
        for g in GROUPS
        for end in ("lo", "hi")
    ),
    # Blood: each range must span physiology, so its two ends have separate bounds
    # (sources in simulators/skin.py beside POPULATION).
    ("blood_lo", 0.003, 0.01),
    ("blood_hi", 0.01, 0.04),
    ("haematocrit_lo", 0.42, 0.45),
    ("haematocrit_hi", 0.62, 0.65),
    ("blanching_lo", 0.5, 0.97),
    ("blanching_hi", 0.97, 0.995),
    ("so2_lo", 0.5, 0.8),
    ("so2_hi", 0.8, 0.97),
    ("vessel_lo", 0.0025, 0.01),
    ("vessel_hi", 0.01, 0.03),
    ("scatter_a_lo", 1.5, 9.0),
    ("scatter_a_hi", 1.5, 9.0),
    ("scatter_b_lo", 0.8, 2.0),
    ("scatter_b_hi", 0.8, 2.0),
    ("epidermis_lo", 0.03, 0.12),
    ("epidermis_hi", 0.03, 0.12),
    ("tsr_mean", 0.02, 0.6),
    ("tsr_sd", 0.005, 0.1),
    ("epi_path_near", 1.0, 4.0),
    ("epi_path_far", 1.0, 4.0),
    ("coupling_near", 0.2, 5.0),
    ("coupling_far", 0.2, 5.0),
    ("bili_shift_nm", -15.0, 15.0),
)  # fmt: skip


def log_r(near: np.ndarray, far: np.ndarray) -> np.ndarray:
    """(n, 12) ln R as the estimator sees it (clipped at its floor)."""
    return np.log(np.clip(np.column_stack([near, far]), REFLECTANCE_FLOOR, None))


_COEF = load_model().coef


def summary(
    lr: np.ndarray, tsb: np.ndarray, near: np.ndarray, far: np.ndarray
) -> dict[str, np.ndarray]:
    x = tsb - tsb.mean()
    err = tcb_features(near, far) @ _COEF - tsb
    slope = (x @ (lr - lr.mean(axis=0))) / (x @ x)
    corr = np.corrcoef(lr, rowvar=False)
    return {
        "mean": lr.mean(axis=0),
        "sd": lr.std(axis=0),
        "slope": slope,
        "corr": corr[_IU],
        "tcb": np.array([err.mean(), err.std()]),
    }


def to_vector(pop: Population, probe: ProbeOptics) -> np.ndarray:
    v = [x for g in GROUPS for x in pop.melanin[g]]
    v += [
        *pop.blood_fraction,
        *pop.haematocrit,
        *pop.pressure_blanching,
        *pop.so2,
        *pop.vessel_radius_mm,
        *pop.scatter_a_per_mm,
        *pop.scatter_b,
    ]
    v += [*pop.epidermis_mm, *pop.tissue_serum_ratio]
    v += [probe.epi_path_near, probe.epi_path_far, probe.coupling_near, probe.coupling_far]
    v += [probe.bili_band_shift_nm]
    return np.array(v, float)


def _range(a: float, b: float) -> tuple[float, float]:
    return (float(min(a, b)), float(max(a, b)))


def from_vector(v: np.ndarray, bili_scale: float) -> tuple[Population, ProbeOptics]:
    p = dict(zip((name for name, _, _ in PARAMS), (float(x) for x in v), strict=True))
    pop = dataclasses.replace(
        POPULATION,
        melanin={g: _range(p[f"melanin_{g}_lo"], p[f"melanin_{g}_hi"]) for g in GROUPS},
        blood_fraction=_range(p["blood_lo"], p["blood_hi"]),
        haematocrit=_range(p["haematocrit_lo"], p["haematocrit_hi"]),
        pressure_blanching=_range(p["blanching_lo"], p["blanching_hi"]),
        so2=_range(p["so2_lo"], p["so2_hi"]),
        vessel_radius_mm=_range(p["vessel_lo"], p["vessel_hi"]),
        scatter_a_per_mm=_range(p["scatter_a_lo"], p["scatter_a_hi"]),
        scatter_b=_range(p["scatter_b_lo"], p["scatter_b_hi"]),
        epidermis_mm=_range(p["epidermis_lo"], p["epidermis_hi"]),
        tissue_serum_ratio=(p["tsr_mean"], p["tsr_sd"]),
    )
    probe = dataclasses.replace(
        PROBE,
        epi_path_near=p["epi_path_near"],
        epi_path_far=p["epi_path_far"],
        coupling_near=p["coupling_near"],
        coupling_far=p["coupling_far"],
        bili_epsilon_scale=bili_scale,
        bili_band_shift_nm=p["bili_shift_nm"],
    )
    return pop, probe


class Problem:
    """Calibration summaries and fixed simulation draws per group."""

    def __init__(self, data: dict[str, np.ndarray], seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.target = {}
        self.draws = {}
        for g in GROUPS:
            rows = data["group"] == g
            tsb = data["tsb"][rows]
            near, far = data["near"][rows], data["far"][rows]
            self.target[g] = summary(log_r(near, far), tsb, near, far)
            bili = rng.choice(tsb, size=N_SIM, replace=True)
            self.draws[g] = (rng.random((N_SIM, len(DRAW_ORDER))), bili)

    def simulate(self, pop: Population, probe: ProbeOptics, g: str) -> dict[str, np.ndarray]:
        u, bili = self.draws[g]
        near, far = population_reflectance(
            population_params(u, g, bili, pop), optics=probe
        )  # fmt: skip
        return summary(log_r(near, far), bili, near, far)

    def residuals(self, pop: Population, probe: ProbeOptics) -> np.ndarray:
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


def fit(problem: Problem, fit_epsilon: bool) -> tuple[Population, ProbeOptics]:
    x0 = to_vector(POPULATION, PROBE)
    lo = np.array([b for _, b, _ in PARAMS])
    hi = np.array([b for _, _, b in PARAMS])
    x0 = np.clip(x0, lo + 1e-6, hi - 1e-6)
    if fit_epsilon:
        x0 = np.append(x0, PROBE.bili_epsilon_scale)
        lo, hi = np.append(lo, 0.7), np.append(hi, 1.3)

    def split_vec(x: np.ndarray) -> tuple[Population, ProbeOptics]:
        scale = float(x[-1]) if fit_epsilon else PROBE.bili_epsilon_scale
        return from_vector(x[: len(PARAMS)], scale)

    sol = least_squares(
        lambda x: problem.residuals(*split_vec(x)), x0, bounds=(lo, hi), x_scale="jac",
        diff_step=1e-4, max_nfev=400,
    )  # fmt: skip
    print(f"least_squares: {sol.message} (cost {sol.cost:.1f}, {sol.nfev} evaluations)")
    return split_vec(sol.x)


def report(problem: Problem, pop: Population, probe: ProbeOptics) -> None:
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
    cost = 0.5 * float(np.sum(problem.residuals(pop, probe) ** 2))
    print(f"objective: {cost:.1f}")


def estimator_check(
    n_per_group: int = 200, seed: int = 3, device: bool = False
) -> dict[str, tuple[float, float, float]]:
    """Per group: (fraction flagged, bias, SD) of estimate_tcb on simulated babies (0-20 mg/dL).

    Uses the committed simulator (simulators.skin.random_newborn / skin_reflectance); with
    device=True, each reading goes through a simulated unit's counts and back to reflectance
    as the gateway reads it (self-check, the unit's calibration, band correction).
    """
    from simulators.skin import random_newborn, skin_reflectance

    rng = np.random.default_rng(seed)
    out = {}
    for g in GROUPS:
        res, flagged = [], 0
        for k in range(n_per_group):
            bili = float(rng.uniform(0.0, 20.0))
            baby = random_newborn(rng, g, bili)
            if device:
                unit = seed * 1000 + k % 20
                cal = random_factory_calibration(unit)
                dev = TcbDeviceModel(cal, seed=unit)
                near, far = skin_reflectance(baby, *dev.bands_at(30.0))
                p = dev.press(near, far, temperature_c=30.0)
                r = calibrated_reflectance(
                    p.dark_before, p.dark_after, p.flashes, p.temperature_c, p.contact,
                    cal.to_dict(), p.led_drive, dev.self_check_info(),
                )  # fmt: skip
                near, far = r.near, r.far
            else:
                near, far = skin_reflectance(baby)
            est = estimate_tcb(near, far)
            if est.tcb_mg_dl is None:
                flagged += 1
            else:
                res.append(est.tcb_mg_dl - bili)
        r = np.array(res)
        bias = float(r.mean()) if len(r) else float("nan")
        sd = float(r.std()) if len(r) > 1 else float("nan")
        out[g] = (flagged / n_per_group, bias, sd)
    return out


def print_check() -> None:
    for device in (False, True):
        print("device path (counts -> reflectance):" if device else "skin_reflectance:")
        for g, (frac, bias, sd) in estimator_check(device=device).items():
            print(f"  {g:6s} flagged {frac:5.1%}  bias {bias:+.2f}  SD {sd:.2f} mg/dL")


def constants_text(pop: Population, probe: ProbeOptics) -> str:
    def r(t: tuple[float, float], nd: int = 4) -> str:
        return f"({t[0]:.{nd}f}, {t[1]:.{nd}f})"

    mel = ", ".join(f'"{g}": {r(pop.melanin[g])}' for g in GROUPS)
    return "\n".join(
        [
            "POPULATION = Population(",
            f"    melanin={{{mel}}},",
            f"    blood_fraction={r(pop.blood_fraction)},",
            f"    so2={r(pop.so2, 3)},",
            f"    haematocrit={r(pop.haematocrit, 2)},",
            f"    pressure_blanching={r(pop.pressure_blanching, 2)},",
            f"    epidermis_mm={r(pop.epidermis_mm)},",
            f"    scatter_a_per_mm={r(pop.scatter_a_per_mm, 3)},",
            f"    scatter_b={r(pop.scatter_b, 3)},",
            f"    tissue_serum_ratio={r(pop.tissue_serum_ratio)},",
            f"    vessel_radius_mm={r(pop.vessel_radius_mm)},",
            ")",
            "PROBE = ProbeOptics(",
            f"    epi_path_near={probe.epi_path_near:.3f},",
            f"    epi_path_far={probe.epi_path_far:.3f},",
            f"    coupling_near={probe.coupling_near:.4f},",
            f"    coupling_far={probe.coupling_far:.4f},",
            f"    bili_epsilon_scale={probe.bili_epsilon_scale:.3f},",
            f"    bili_band_shift_nm={probe.bili_band_shift_nm:.2f},",
            ")",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report the committed constants only")
    ap.add_argument("--fit-epsilon", action="store_true", help="also fit the extinction scale")
    ap.add_argument("--calibration", type=Path, default=None)
    args = ap.parse_args(argv)
    data = read_calibration(args.calibration or default_calibration_path())
    problem = Problem(data)
    print("committed constants:")
    report(problem, POPULATION, PROBE)
    if args.check:
        print_check()
        return 0
    t0 = time.perf_counter()
    pop, probe = fit(problem, args.fit_epsilon)
    print(f"fitted in {time.perf_counter() - t0:.0f} s")
    report(problem, pop, probe)
    print("\nPaste into simulators/skin.py:\n")
    print(constants_text(pop, probe))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
