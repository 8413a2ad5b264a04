"""Transcutaneous bilirubin benchmark: accuracy per skin group, flags, and method transfer.

    python benchmarks/bench_tcb.py [--markdown]

1. Held-out calibration babies: scripts/fit_tcb.py's stratified 25 % split; the model is fitted
   on the other 75 % exactly as the shipped one is, then bias, SD and 95 % limits of agreement
   (LoA = 1.96 SD) are reported per skin group and for TSB >= 18 mg/dL.
2. Simulated calibration studies on the skin simulator (its blood terms span physiological
   ranges): each simulates a study like the calibration file (size, skin-group mix, TSB),
   fits the estimator as scripts/fit_tcb.py does, and evaluates it on a large held-out
   simulated cohort (2000 dark, 1000 light, 1000 medium babies); also fitted on light+medium
   only (does modelling melanin carry over to skin the study barely saw?), and the shipped
   model on the same cohorts.
3. Good presses through the device simulator (counts path, end to end): simulated babies of
   each skin group (TSB drawn like the file's, and uniform 0-25 mg/dL) pressed on several
   simulated units (their own LED spectra, gains, droop, dark offsets, temperature), counts
   turned into reflectance as the gateway does (self-check, the unit's factory calibration,
   band correction), then the estimator. Reported per group: the fraction of good presses flagged, and bias and
   95 % LoA of the numbers, for the shipped model and for one fitted on a simulated study.
   Beside it, the same babies through the device with every LED at its factory drive (no
   exposure control), and without the device (reflectance with the calibration file's noise).
4. Flagged presses through the device simulator (no contact, ambient light, saturation,
   flicker at 100 and 120 Hz): how many of them produced a number (must be 0).
5. Weaker flicker, which the flash-disagreement check may let through: how often it is flagged,
   and how far the numbers it lets through move from a clean press of the same baby, against
   two clean presses of the same baby (the repeatability the flicker must not exceed).
6. Per-unit factory calibration (`--units` runs this alone): 20 simulated units whose LEDs sit
   anywhere within +-10 nm of their nominal peaks, with droop and temperature drift, each
   calibrated by the factory procedure (dsp/tcb_unit.py on the certified phantoms), and a
   nominal unit (every LED at its nominal peak and width) calibrated the same way. The same
   babies of each skin group (TSB uniform 0-20 mg/dL, probe at 28-37 C) are pressed on every
   unit through the device model, on both skin models (simulators/skin.py and the
   independently built simulators/skin_layers.py). Per unit and group: bias and 95 % LoA of
   TcB - TSB before calibration (the unit's counts read with its white reference and batch
   tempco only, as a unit calibrated the old way would read if it were allowed to show
   numbers) and after (the gateway's path: self-check, droop, per-LED tempco, band
   correction). Targets: after calibration every unit's bias within +-0.3 mg/dL of the
   nominal unit's and its LoA at most the nominal unit's + 0.2 mg/dL.
   Then the factory's judgement of each unit (dsp.tcb_unit.correction_uncertainty, exact, on
   its calibrated bands; the per-LED secant estimate beside it): which are accepted, and
   whether the accepted ones meet the targets on both skin models.
7. Drifted units: an LED that lost output since the factory (the start-up self-check) and LEDs
   whose peaks moved (the weekly check phantom): how many readings still became numbers.
8. Why the band correction transfers to one skin model and not the other (`--transfer` runs
   this alone): no device, no noise, the unit's exact bands, so only the band correction
   (dsp.tcb_unit.nominal_reflectance) is measured. One LED at a time moved 8 nm off its
   nominal peak: TcB - TcB at the nominal bands (estimator fitted on that skin model) before
   and after the correction; the 20 units of section 6 (their LED offsets as binned, and
   halved), bias range after the correction. And at the nominal bands: how well the
   correction's skin optics fit each model's 12 readings (the fit's cost in reading-noise
   SDs) against how well the fitted skin reproduces the slope d(-ln R)/d(lambda) under each
   LED, which is what the correction extrapolates with.
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

from dsp.tcb import estimate_tcb, estimate_tcb_batch, fit_model, tcb_features  # noqa: E402
from dsp.tcb_counts import (  # noqa: E402
    calibrated_reflectance,
    calibrated_reflectance_batch,
    reflectance_from_counts,
)
from dsp.tcb_unit import (  # noqa: E402
    CORRECTION_UNCERTAINTY_LIMIT_MG_DL,
    UnitCalibration,
    correction_uncertainty,
    fitted_skin_absorbance,
    nominal_reflectance,
)
from dsp.tissue_optics import (  # noqa: E402
    NOMINAL_FWHM_NM,
    NOMINAL_LED_NM,
    WAVELENGTH_GRID_NM,
    led_band_weights,
    skin_spectra,
)
from simulators import skin as skin_model_1  # noqa: E402
from simulators import skin_layers as skin_model_2  # noqa: E402
from simulators.skin import (  # noqa: E402
    DRAW_ORDER,
    population_params,
    population_reflectance,
    random_newborn,
    skin_reflectance,
)
from simulators.tcb_device import (  # noqa: E402
    TcbDeviceModel,
    _hidden_optics,
    random_factory_calibration,
)
from simulators.tcb_phantoms import CHECK_PHANTOM, phantom_reflectance  # noqa: E402

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


def _simulate(rng, group: str, tsb: np.ndarray, population=None) -> tuple[np.ndarray, ...]:
    """Reflectance of simulated babies of one group with the probe's measurement noise."""
    u = rng.random((len(tsb), len(DRAW_ORDER)))
    near, far = population_reflectance(population_params(u, group, tsb, population))
    # 0.5 % / 1 % multiplicative noise and an additive floor of 1e-4 of the phantom (the
    # calibration file's far-detector floor, see its README)
    near = near * (1 + rng.normal(0, 0.005, near.shape)) + rng.normal(0, 1e-4, near.shape)
    far = far * (1 + rng.normal(0, 0.01, far.shape)) + rng.normal(0, 1e-4, far.shape)
    return near, far


def _residuals(near, far, tsb, model) -> np.ndarray:
    est = estimate_tcb_batch(near, far, model)
    return np.array([np.nan if e.tcb_mg_dl is None else e.tcb_mg_dl for e in est]) - tsb


def simulated_study(n_test: dict[str, int] | None = None, repeats: int = 5,
                    seed: int = 5) -> dict:  # fmt: skip
    """Simulated calibration studies on the skin simulator, each with a large held-out cohort.

    Each repeat simulates a study like the calibration file (its size, its skin-group mix, TSB
    drawn from its babies of the same group), fits the estimator exactly as scripts/fit_tcb.py
    does (equal weight per group), and evaluates it on new simulated babies: n_test per group,
    TSB drawn the same way ("as calibration") and uniform 0-25 mg/dL ("0-25"). A variant fits
    on simulated light and medium babies only. The shipped model is evaluated on the same
    cohorts (it was fitted on the real file, which the simulator only approximates).
    """
    n_test = n_test or {"light": 1000, "medium": 1000, "dark": 2000}
    data = read_calibration(default_calibration_path())
    counts = {g: int(np.sum(data["group"] == g)) for g in GROUPS}
    tsb_of = {g: data["tsb"][data["group"] == g] for g in GROUPS}
    rng = np.random.default_rng(seed)
    keys = ("fitted on a simulated study", "fitted on light+medium only", "shipped model")
    res: dict = {k: {(g, d): [] for g in GROUPS for d in ("as calibration", "0-25")}
                 for k in keys}  # fmt: skip
    for r in range(repeats):
        train = {g: rng.choice(tsb_of[g], counts[g]) for g in GROUPS}
        sims = {g: _simulate(rng, g, train[g]) for g in GROUPS}
        near = np.vstack([sims[g][0] for g in GROUPS])
        far = np.vstack([sims[g][1] for g in GROUPS])
        tsb = np.concatenate([train[g] for g in GROUPS])
        grp = np.concatenate([[g] * counts[g] for g in GROUPS])
        models = {
            keys[0]: fit_model(near, far, tsb, weights=group_weights(grp)),
            keys[1]: fit_model(
                near[grp != "dark"],
                far[grp != "dark"],
                tsb[grp != "dark"],
                weights=group_weights(grp[grp != "dark"]),
            ),  # fmt: skip
        }
        for g in GROUPS:
            for dist in ("as calibration", "0-25"):
                if dist == "as calibration":
                    t = rng.choice(tsb_of[g], n_test[g])
                else:
                    t = rng.uniform(0.0, 25.0, n_test[g])
                n_, f_ = _simulate(rng, g, t)
                for k, m in models.items():
                    res[k][(g, dist)].append(_residuals(n_, f_, t, m))
                if r == 0:
                    res[keys[2]][(g, dist)].append(_residuals(n_, f_, t, None))
    out = {}
    for k in keys:
        for (g, dist), runs in res[k].items():
            biases = [float(np.nanmean(x)) for x in runs]
            allres = np.concatenate(runs)
            ok = np.isfinite(allres)
            sd = float(np.std(allres[ok] - np.repeat(biases, [len(x) for x in runs])[ok], ddof=1))
            out[(k, g, dist)] = (len(runs[0]), float(np.mean(biases)), min(biases), max(biases),
                                 sd, float(np.mean(~ok)))  # fmt: skip
    return out


def device_path(n_per_group: int = 400, n_units: int = 8, seed: int = 13) -> dict:
    """Good presses through the device simulator, per skin group (see the module docstring)."""
    data = read_calibration(default_calibration_path())
    tsb_of = {g: data["tsb"][data["group"] == g] for g in GROUPS}
    counts = {g: int(np.sum(data["group"] == g)) for g in GROUPS}
    rng = np.random.default_rng(seed)
    # an estimator fitted on one simulated study (reflectance path), as in section 2
    train = {g: rng.choice(tsb_of[g], counts[g]) for g in GROUPS}
    sims = {g: _simulate(rng, g, train[g]) for g in GROUPS}
    grp = np.concatenate([[g] * counts[g] for g in GROUPS])
    fitted = fit_model(
        np.vstack([sims[g][0] for g in GROUPS]),
        np.vstack([sims[g][1] for g in GROUPS]),
        np.concatenate([train[g] for g in GROUPS]),
        weights=group_weights(grp),
    )
    models = {"shipped model": None, "fitted on a simulated study": fitted}
    units = [
        (random_factory_calibration(100 + k), TcbDeviceModel(random_factory_calibration(100 + k),
                                                             seed=100 + k))
        for k in range(n_units)
    ]  # fmt: skip
    out: dict = {}
    for g, dist in [(g, d) for d in ("as calibration", "0-25") for g in GROUPS]:
        if dist == "as calibration":
            tsb = rng.choice(tsb_of[g], n_per_group)
        else:
            tsb = rng.uniform(0.0, 25.0, n_per_group)
        unit_of = np.arange(n_per_group) % n_units
        u = rng.random((n_per_group, len(DRAW_ORDER)))
        params = population_params(u, g, tsb)
        # what the nominal unit's bands see, and the babies' spectra for each unit's own
        near, far = population_reflectance(params)
        spec_near, spec_far = skin_spectra(params, WAVELENGTH_GRID_NM, skin_model_1.PROBE)
        r_near = np.zeros((n_per_group, 6))
        r_far = np.zeros((n_per_group, 6))
        fixed_near = np.zeros((n_per_group, 6))
        fixed_far = np.zeros((n_per_group, 6))
        for k, (cal, dev) in enumerate(units):
            rows = np.flatnonzero(unit_of == k)
            presses: dict[bool, list] = {True: [], False: []}
            for i in rows:
                temp = float(rng.uniform(28.0, 37.0))
                w = led_band_weights(*dev.bands_at(temp))
                for ec in (True, False):
                    press = dev.press(w @ spec_near[i], w @ spec_far[i], temperature_c=temp,
                                      exposure_control=ec)  # fmt: skip
                    presses[ec].append(press.to_dict())
            info = dev.self_check_info()
            for ec, (a, b) in ((True, (r_near, r_far)), (False, (fixed_near, fixed_far))):
                got = calibrated_reflectance_batch(presses[ec], cal.to_dict(), info)
                a[rows] = [r.near for r in got]
                b[rows] = [r.far for r in got]
        # the same babies without the device: the calibration file's noise (section 2)
        ideal_near = near * (1 + rng.normal(0, 0.005, near.shape)) + rng.normal(0, 1e-4, near.shape)
        ideal_far = far * (1 + rng.normal(0, 0.01, far.shape)) + rng.normal(0, 1e-4, far.shape)
        for name, m in models.items():
            for path, (a, b) in (
                ("device", (r_near, r_far)),
                ("device, factory drive", (fixed_near, fixed_far)),
                ("no device", (ideal_near, ideal_far)),
            ):
                res = _residuals(a, b, tsb, m)
                ok = np.isfinite(res)
                n, bias, sd, loa = _stats(res)
                out[(name, g, dist, path)] = (n_per_group, float(np.mean(~ok)), bias, sd, loa)
    return out


def flagged_presses(n: int = 40, seed: int = 9) -> dict[str, tuple[int, int]]:
    cal = random_factory_calibration(seed)
    dev = TcbDeviceModel(cal, seed=seed)
    info = dev.self_check_info()
    rng = np.random.default_rng(seed)
    cases = {
        "no contact": {"contact": False},
        "ambient light": {"ambient": 0.3},
        "saturation (bright room)": {"ambient": 4.0},
        "flicker (100 Hz, 30 %)": {"ambient": 0.02},
        "flicker (120 Hz, 30 %)": {"ambient": 0.02, "mains_hz": 60.0},
    }
    out = {}
    for name, kwargs in cases.items():
        numbers = 0
        flags = set()
        for _ in range(n):
            baby = random_newborn(rng)
            near, far = skin_reflectance(baby, *dev.bands_at(30.0))
            p = dev.press(near, far, **kwargs)
            r = calibrated_reflectance(
                p.dark_before, p.dark_after, p.flashes, p.temperature_c, p.contact,
                cal.to_dict(), p.led_drive, info,
            )  # fmt: skip
            flags.add(r.flag)
            est = estimate_tcb(r.near, r.far)
            numbers += est.tcb_mg_dl is not None
        out[name] = (n, numbers, ",".join(sorted(flags)))
    return out


def weak_flicker(n: int = 120, seed: int = 17) -> dict[str, tuple[int, float, float, float]]:
    """(presses, fraction flagged, SD and max of |TcB change| against a clean press)."""
    units = []
    for s in range(200, 206):
        dev = TcbDeviceModel(random_factory_calibration(s), seed=s)
        units.append((random_factory_calibration(s), dev, dev.self_check_info()))
    rng = np.random.default_rng(seed)
    cases = {"none (two clean presses)": (0.0, 0.0)}
    for amb in (0.002, 0.005, 0.01):
        for depth in (0.1, 0.3):
            cases[f"ambient {amb}, depth {depth:.0%}"] = (amb, depth)
    out = {}
    for name, (amb, depth) in cases.items():
        changes, flagged = [], 0
        for i in range(n):
            cal, dev, info = units[i % len(units)]
            baby = random_newborn(rng, GROUPS[i % 3], float(rng.uniform(0.0, 22.0)))
            near, far = skin_reflectance(baby, *dev.bands_at(30.0))
            est = []
            for kw in ({}, {"ambient": amb, "flicker_depth": depth}):
                p = dev.press(near, far, **kw)
                r = calibrated_reflectance(
                    p.dark_before, p.dark_after, p.flashes, p.temperature_c, p.contact,
                    cal.to_dict(), p.led_drive, info,
                )  # fmt: skip
                est.append(estimate_tcb(r.near, r.far).tcb_mg_dl)
            flagged += est[1] is None
            if est[0] is not None and est[1] is not None:
                changes.append(est[1] - est[0])
        ch = np.abs(np.array(changes))
        out[name] = (n, flagged / n, float(np.sqrt(np.mean(ch**2))), float(ch.max()))
    return out


SKIN_MODELS = ("skin model 1 (skin.py)", "skin model 2 (skin_layers.py)")


def _skin_spectra(model: str, group: str, tsb: np.ndarray, rng) -> tuple[np.ndarray, ...]:
    """Spectral reflectance (n, wl) at both detectors of new babies of one group."""
    if model == SKIN_MODELS[0]:
        u = rng.random((len(tsb), len(DRAW_ORDER)))
        p = population_params(u, group, tsb)
        return skin_spectra(p, WAVELENGTH_GRID_NM, skin_model_1.PROBE)
    u = rng.random((len(tsb), len(skin_model_2.DRAW_ORDER)))
    return skin_model_2.spectra(skin_model_2.population_params(u, group, tsb))


def _numbers(near: np.ndarray, far: np.ndarray, model=None) -> np.ndarray:
    est = estimate_tcb_batch(near, far, model)
    return np.array([np.nan if e.tcb_mg_dl is None else e.tcb_mg_dl for e in est])


def _study_estimator(model: str, seed: int = 3):
    """An estimator fitted, as scripts/fit_tcb.py fits the shipped one, on a simulated study
    like the calibration file (its size, group mix and TSB) of one skin model at the nominal
    LED bands, with the file's noise (section 2)."""
    data = read_calibration(default_calibration_path())
    rng = np.random.default_rng(seed)
    near, far, tsb, grp = [], [], [], []
    nominal = led_band_weights(skin_model_1.LED_NM, skin_model_1.DEFAULT_LED_FWHM_NM)
    for g in GROUPS:
        t = rng.choice(data["tsb"][data["group"] == g], int(np.sum(data["group"] == g)))
        sn, sf = _skin_spectra(model, g, t, rng)
        n, f = sn @ nominal.T, sf @ nominal.T
        near.append(n * (1 + rng.normal(0, 0.005, n.shape)) + rng.normal(0, 1e-4, n.shape))
        far.append(f * (1 + rng.normal(0, 0.01, f.shape)) + rng.normal(0, 1e-4, f.shape))
        tsb.append(t)
        grp += [g] * len(t)
    grp_a = np.array(grp)
    return fit_model(np.vstack(near), np.vstack(far), np.concatenate(tsb),
                     weights=group_weights(grp_a))  # fmt: skip


def unit_calibration(
    n_units: int = 20, n_per_group: int = 200, seed: int = 21, models=SKIN_MODELS
) -> dict:
    """Section 6 (module docstring): {(model, group, unit): (before, after)}, each
    (n, bias, SD, LoA, fraction flagged); unit "nominal" is the nominal unit."""
    units = [("nominal", 900, "nominal")] + [
        (f"unit {k + 1:02d}", 1000 + k, "binned") for k in range(n_units)
    ]
    made = {
        name: (
            random_factory_calibration(s, leds=leds),
            random_factory_calibration(s, per_unit=False, leds=leds),
            TcbDeviceModel(random_factory_calibration(s, leds=leds), seed=s, leds=leds),
        )
        for name, s, leds in units
    }
    rng = np.random.default_rng(seed)
    out: dict = {}
    for model in models:
        estimators = {"shipped": None, "fitted on this skin model": _study_estimator(model)}
        for g in GROUPS:
            tsb = rng.uniform(0.0, 20.0, n_per_group)
            spec_near, spec_far = _skin_spectra(model, g, tsb, rng)
            temps = rng.uniform(28.0, 37.0, n_per_group)
            for name, (cal, plain, dev) in made.items():
                presses = []
                for i in range(n_per_group):
                    w = led_band_weights(*dev.bands_at(float(temps[i])))
                    press = dev.press(w @ spec_near[i], w @ spec_far[i],
                                      temperature_c=float(temps[i]))  # fmt: skip
                    presses.append(press.to_dict())
                before = np.array([
                    reflectance_from_counts(
                        p["dark_before"], p["dark_after"], p["flashes"], p["temperature_c"],
                        p["contact"], plain.to_dict(), p["led_drive"],
                    )[:2]
                    for p in presses
                ])  # fmt: skip
                after = calibrated_reflectance_batch(
                    presses, cal.to_dict(), dev.self_check_info()
                )  # fmt: skip
                a_near = np.array([r.near for r in after])
                a_far = np.array([r.far for r in after])
                for est_name, m in estimators.items():
                    res_before = _numbers(before[:, 0], before[:, 1], m) - tsb
                    res_after = _numbers(a_near, a_far, m) - tsb
                    out[(model, est_name, g, name)] = tuple(
                        (*_stats(r), float(np.mean(~np.isfinite(r))))
                        for r in (res_before, res_after)
                    )
    return out


def drifted_units(n: int = 30, seed: int = 31) -> dict[str, tuple[int, int, str]]:
    """Section 7: (presses, numbers produced, flags) per drift, on one calibrated unit."""
    cal = random_factory_calibration(1100)
    unit = TcbDeviceModel(cal, seed=1100)
    rng = np.random.default_rng(seed)
    blue_shift = np.array([3.0, 3.0, 0.0, 0.0, 0.0, 0.0])
    cases = {
        "none": (unit, unit),
        "450 nm LED lost 8 % of its output": (unit.aged([0.92, 1, 1, 1, 1, 1]),) * 2,
        "all LEDs lost 3 % (within the self-check's 5 %)": (unit.aged(0.97),) * 2,
        "450/470 nm peaks moved +3 nm (check phantom failed first)": (unit,
                                                                     unit.aged(1.0, blue_shift)),
    }  # fmt: skip
    out = {}
    for name, (at_start, now) in cases.items():
        info = at_start.self_check_info()
        flags: set[str] = set()
        numbers = 0
        # the weekly check on the check phantom, then babies
        w = led_band_weights(*now.bands_at(30.0))
        ck_near, ck_far = phantom_reflectance(CHECK_PHANTOM)
        press = now.press(w @ ck_near, w @ ck_far, temperature_c=30.0)
        check = calibrated_reflectance(
            press.dark_before, press.dark_after, press.flashes, press.temperature_c,
            press.contact, cal.to_dict(), press.led_drive, info,
        )  # fmt: skip
        failed = check.check is not None and not check.check["passed"]
        if check.flag != "check_phantom":
            flags.add(check.flag or "(check phantom not recognised)")
        else:
            flags.add("check " + ("failed" if failed else "passed"))
        for _ in range(n):
            baby = random_newborn(rng, GROUPS[int(rng.integers(0, 3))], float(rng.uniform(0, 20)))
            near, far = skin_reflectance(baby, *now.bands_at(30.0))
            p = now.press(near, far, temperature_c=30.0)
            r = calibrated_reflectance(
                p.dark_before, p.dark_after, p.flashes, p.temperature_c, p.contact,
                cal.to_dict(), p.led_drive, info,
            )  # fmt: skip
            flag = "needs_calibration" if (failed and not r.flag) else r.flag
            if not flag:
                numbers += estimate_tcb(r.near, r.far).tcb_mg_dl is not None
            flags.add(flag or "(number)")
        out[name] = (n, numbers, ", ".join(sorted(flags)))
    return out


UNIT_OFFSET_SCALES = (1.0, 0.5)  # the units' LED offsets as binned (+-10 nm), and halved


def band_transfer(
    n_per_group: int = 40, shift_nm: float = 8.0, n_units: int = 20, seed: int = 5
) -> dict:
    """Section 8 (module docstring): {(model, group): {"units": [(lowest, highest) bias of the
    corrected units per UNIT_OFFSET_SCALES], "led": [(uncorrected +, corrected +,
    uncorrected -, corrected -) per LED], "cost": median fit cost, "slope": (true, fitted,
    rms error) per channel}}; TcB in mg/dL, slopes in 1e-3 per nm."""
    rng = np.random.default_rng(seed)
    centre0 = np.array(NOMINAL_LED_NM)
    width0 = np.array(NOMINAL_FWHM_NM)
    nominal = led_band_weights(centre0, width0)
    zero = (0.0,) * 6
    out: dict = {}
    for model in SKIN_MODELS:
        coef = _study_estimator(model).coef
        for g in GROUPS:
            tsb = rng.uniform(0.0, 20.0, n_per_group)
            sn, sf = _skin_spectra(model, g, tsb, rng)
            tcb_nominal = tcb_features(sn @ nominal.T, sf @ nominal.T) @ coef
            leds = []
            for led in range(6):
                row = []
                for sign in (1.0, -1.0):
                    centre = centre0.copy()
                    centre[led] += sign * shift_nm
                    w = led_band_weights(centre, width0)
                    un, uf = sn @ w.T, sf @ w.T
                    unit = UnitCalibration(tuple(centre), tuple(width0), zero, zero,
                                           (1e6,) * 6, ((1.0, 1.0),) * 6, ((1.0, 1.0),) * 6)  # fmt: skip
                    cn, cf = nominal_reflectance(un, uf, unit, 25.0)
                    row += [float(np.mean(tcb_features(un, uf) @ coef - tcb_nominal)),
                            float(np.mean(tcb_features(cn, cf) @ coef - tcb_nominal))]  # fmt: skip
                leds.append(tuple(row))
            up = led_band_weights(centre0 + 4.0, width0)
            down = led_band_weights(centre0 - 4.0, width0)
            (a_up, a_down), cost = fitted_skin_absorbance(
                sn @ nominal.T, sf @ nominal.T, nominal, (up, down)
            )
            true = (np.log(np.hstack([sn @ down.T, sf @ down.T]))
                    - np.log(np.hstack([sn @ up.T, sf @ up.T]))) / 8.0  # fmt: skip
            fitted = (a_up - a_down) / 8.0
            units = []
            for scale in UNIT_OFFSET_SCALES:
                biases = []
                for k in range(n_units):
                    h = _hidden_optics(1000 + k)  # the units of section 6
                    centre = centre0 + scale * (np.array(h.led_centre_nm) - centre0)
                    width = np.array(h.led_fwhm_nm)
                    w = led_band_weights(centre, width)
                    unit = UnitCalibration(tuple(centre), tuple(width), zero, zero,
                                           (1e6,) * 6, ((1.0, 1.0),) * 6, ((1.0, 1.0),) * 6)  # fmt: skip
                    cn, cf = nominal_reflectance(sn @ w.T, sf @ w.T, unit, 25.0)
                    biases.append(float(np.mean(tcb_features(cn, cf) @ coef - tcb_nominal)))
                units.append((min(biases), max(biases)))
            out[(model, g)] = {
                "units": units,
                "led": leds,
                "cost": float(np.median(cost)),
                "slope": (
                    1e3 * true.mean(axis=0),
                    1e3 * fitted.mean(axis=0),
                    1e3 * np.sqrt(np.mean((fitted - true) ** 2, axis=0)),
                ),
            }
    return out


def print_transfer(tr: dict, shift_nm: float = 8.0) -> None:
    print("Band correction alone (exact bands, no noise): the 20 units of section 6, TcB - TcB "
          "at the nominal bands (mg/dL) after the correction, lowest .. highest unit bias")  # fmt: skip
    print("| skin model | group | " + " | ".join(
        f"LED offsets x {s:g}" for s in UNIT_OFFSET_SCALES) + " |")  # fmt: skip
    print("|---|---|" + "---|" * len(UNIT_OFFSET_SCALES))
    for (model, g), d in tr.items():
        cells = [f"{lo:+.2f} .. {hi:+.2f}" for lo, hi in d["units"]]
        print(f"| {model} | {g} | " + " | ".join(cells) + " |")
    print()
    print(f"Band correction alone (exact bands, no noise): one LED {shift_nm:.0f} nm off, "
          "TcB - TcB at the nominal bands (mg/dL), uncorrected -> corrected, for +/- the shift")  # fmt: skip
    print("| skin model | group | " + " | ".join(f"{x:.0f} nm" for x in NOMINAL_LED_NM) + " |")
    print("|---|---|" + "---|" * 6)
    for (model, g), d in tr.items():
        cells = [f"{a:+.2f} -> {b:+.2f}, {c:+.2f} -> {e:+.2f}" for a, b, c, e in d["led"]]
        print(f"| {model} | {g} | " + " | ".join(cells) + " |")
    print()
    print("The correction's skin optics fitted at the nominal bands: median cost (sum of squared "
          "residuals in reading-noise SDs over 12 readings; ~12 is a fit within the noise) and "
          "the slope d(-ln R)/d(lambda) under each LED, 1e-3 per nm, true / fitted skin, "
          "near then far")  # fmt: skip
    print("| skin model | group | fit cost | " + " | ".join(
        f"{d} {x:.0f}" for d in ("near", "far") for x in NOMINAL_LED_NM) + " |")  # fmt: skip
    print("|---|---|---|" + "---|" * 12)
    for (model, g), d in tr.items():
        true, fitted, _err = d["slope"]
        cells = [f"{t:.1f} / {f:.1f}" for t, f in zip(true, fitted, strict=True)]
        print(f"| {model} | {g} | {d['cost']:.1f} | " + " | ".join(cells) + " |")


def unit_acceptance(n_units: int = 20) -> dict[str, tuple[float, float, bool, str]]:
    """Section 6's units as the factory judges them (dsp.tcb_unit.correction_uncertainty on
    each unit's calibrated bands): {unit: (exact mg/dL, secant estimate mg/dL, accepted (exact),
    message)}."""
    units = [("nominal", 900, "nominal")] + [
        (f"unit {k + 1:02d}", 1000 + k, "binned") for k in range(n_units)
    ]
    out = {}
    for name, s, leds in units:
        unit = UnitCalibration.from_dict(random_factory_calibration(s, leds=leds).unit)
        exact = correction_uncertainty(unit.led_centre_nm, unit.led_fwhm_nm, exact=True)
        linear = correction_uncertainty(unit.led_centre_nm, unit.led_fwhm_nm)
        out[name] = (exact.mg_dl, linear.mg_dl, exact.accepted, exact.message())
    return out


def print_acceptance(units: dict, acceptance: dict) -> None:
    """The factory's judgement of each unit beside what it did on both skin models."""
    names = [n for n in acceptance if n != "nominal"]
    accepted = [n for n in names if acceptance[n][2]]
    print(f"Factory acceptance of the band correction (limit {CORRECTION_UNCERTAINTY_LIMIT_MG_DL} "
          f"mg/dL): {len(accepted)} of {len(names)} units accepted")  # fmt: skip
    print("| unit | uncertainty, exact / secants (mg/dL) | accepted | " + " | ".join(
        f"{m.split(' (')[0]}, {e}: on target" for m, e in sorted({k[:2] for k in units})
    ) + " |")  # fmt: skip
    cases = sorted({k[:2] for k in units})
    print("|---|---|---|" + "---|" * len(cases))

    def on_target(model: str, est: str, name: str) -> str:
        missed = []
        for g in GROUPS:
            nom = units[(model, est, g, "nominal")][1]
            got = units[(model, est, g, name)][1]
            if abs(got[1] - nom[1]) > 0.3 or got[3] - nom[3] > 0.2:
                missed.append(g)
        return "yes" if not missed else "no (" + ", ".join(missed) + ")"

    for n in ["nominal", *names]:
        exact, linear, ok, _msg = acceptance[n]
        cells = [on_target(m, e, n) for m, e in cases]
        print(f"| {n} | {exact:.2f} / {linear:.2f} | {'yes' if ok else 'no'} | "
              + " | ".join(cells) + " |")  # fmt: skip
    print()
    print("Accepted units only, against the targets (bias within +-0.3 of the nominal unit's, "
          "LoA at most the nominal unit's + 0.2)")  # fmt: skip
    print("| skin model | estimator | group | nominal bias / LoA | accepted units' bias - nominal "
          "| LoA - nominal, worst | accepted units on target |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for model, est in cases:
        for g in GROUPS:
            nom = units[(model, est, g, "nominal")][1]
            rows = [units[(model, est, g, n)][1] for n in accepted]
            if not rows:
                continue
            db = [r[1] - nom[1] for r in rows]
            dl = [r[3] - nom[3] for r in rows]
            ok = sum(abs(b) <= 0.3 and d <= 0.2 for b, d in zip(db, dl, strict=True))
            print(f"| {model} | {est} | {g} | {nom[1]:+.2f} / +-{nom[3]:.2f} | {min(db):+.2f} .. "
                  f"{max(db):+.2f} | {max(dl):+.2f} | {ok} of {len(rows)} |")  # fmt: skip
    print()


def print_units(units: dict, drift: dict) -> None:
    names = sorted({k[3] for k in units}, key=lambda x: (x != "nominal", x))
    cases = sorted({k[:2] for k in units})
    summary = []
    for model, est in cases:
        print(f"Per-unit calibration, {model}, {est} estimator: TcB - TSB (mg/dL), bias / LoA")
        print("| unit | " + " | ".join(f"{g} before | {g} after" for g in GROUPS) + " |")
        print("|---|" + "---|---|" * len(GROUPS))
        for name in names:
            cells = []
            for g in GROUPS:
                for _n, bias, _sd, loa, fl in units[(model, est, g, name)]:
                    flagged = f" ({fl:.0%} flagged)" if fl > 0.02 else ""
                    cells.append(f"{bias:+.2f} / +-{loa:.2f}{flagged}")
            print(f"| {name} | " + " | ".join(cells) + " |")
        for g in GROUPS:
            nom = units[(model, est, g, "nominal")]
            rows = [units[(model, est, g, n)] for n in names if n != "nominal"]
            for when, k in (("before", 0), ("after", 1)):
                db = [r[k][1] - nom[1][1] for r in rows]
                dl = [r[k][3] - nom[1][3] for r in rows]
                ok = sum(abs(b) <= 0.3 and d <= 0.2 for b, d in zip(db, dl, strict=True))
                summary.append((model, est, g, when, nom[1][1], nom[1][3], min(db), max(db),
                                max(dl), ok, len(rows)))  # fmt: skip
        print()
    print("Per-unit calibration against the targets (bias within +-0.3 of the calibrated nominal unit's, "
          "LoA at most the nominal unit's + 0.2)")  # fmt: skip
    print("| skin model | estimator | group | | nominal unit bias / LoA | units' bias - nominal "
          "| units' LoA - nominal, worst | units on target |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for model, est, g, when, b0, l0, lo, hi, worst, ok, n in summary:
        print(f"| {model} | {est} | {g} | {when} | {b0:+.2f} / +-{l0:.2f} | {lo:+.2f} .. "
              f"{hi:+.2f} | {worst:+.2f} | {ok} of {n} |")  # fmt: skip
    print()
    print("Drifted units (one calibrated unit; a weekly check on the check phantom, then babies)")
    print("| drift | presses | numbers produced | flags |")
    print("|---|---|---|---|")
    for name, (n, numbers, fl) in drift.items():
        print(f"| {name} | {n} | {numbers} | {fl} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print the docs table")
    ap.add_argument("--units", action="store_true", help="only section 6-7: per-unit calibration")
    ap.add_argument("--units-n", type=int, default=200, help="babies per group in section 6")
    ap.add_argument("--transfer", action="store_true",
                    help="only section 8: the band correction alone on both skin models")  # fmt: skip
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.transfer:
        print_transfer(band_transfer())
        print(f"\n(run time {time.perf_counter() - t0:.1f} s)")
        return 0
    if args.units:
        units = unit_calibration(n_per_group=args.units_n)
        print_units(units, drifted_units())
        print()
        print_acceptance(units, unit_acceptance())
        print(f"\n(run time {time.perf_counter() - t0:.1f} s)")
        return 0
    cal = held_out_calibration()
    sim = simulated_study()
    device = device_path()
    flags = flagged_presses()
    flicker = weak_flicker()
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
    print("Skin simulator: held-out simulated cohorts, TcB - true bilirubin, mg/dL")
    print("(5 simulated calibration studies; bias = mean over studies [min..max]; SD pooled)")
    print("| estimator | group | TSB | n per study | bias | SD | 95 % LoA | flagged |")
    print("|---|---|---|---|---|---|---|---|")
    for (k, g, dist), (n, bias, lo, hi, sd, flagged) in sim.items():
        spread = f" [{lo:+.2f}..{hi:+.2f}]" if k != "shipped model" else ""
        print(f"| {k} | {g} | {dist} | {n} | {bias:+.2f}{spread} | {sd:.2f} | +-{1.96 * sd:.2f} "
              f"| {flagged:.1%} |")  # fmt: skip
    print()
    print("Good presses through the device simulator (8 units, 28-37 C), TcB - TSB, mg/dL")
    print("| estimator | group | TSB | path | presses | flagged | bias | SD | 95 % LoA |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (k, g, dist, path), (n, flagged, bias, sd, loa) in device.items():
        print(f"| {k} | {g} | {dist} | {path} | {n} | {flagged:.1%} | {bias:+.2f} | {sd:.2f} "
              f"| +-{loa:.2f} |")  # fmt: skip
    print()
    print("Bad presses through the device simulator")
    print("| case | presses | numbers produced | flags |")
    print("|---|---|---|---|")
    for name, (n, numbers, fl) in flags.items():
        print(f"| {name} | {n} | {numbers} | {fl} |")
    print()
    print("Weak flicker (50 Hz mains) against a clean press of the same baby, shipped model")
    print("| ambient flicker | presses | flagged | RMS change, mg/dL | max change |")
    print("|---|---|---|---|---|")
    for name, (n, fr, rms, mx) in flicker.items():
        print(f"| {name} | {n} | {fr:.0%} | {rms:.2f} | {mx:.2f} |")
    print(f"\n(run time {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
