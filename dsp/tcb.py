"""Reflectance at two distances -> transcutaneous bilirubin (TcB), with an interval.

Physics behind the features. For each LED, A = -ln(R) at the near (0.7 mm) and far (2.0 mm)
detector. The epidermis (melanin) is crossed by both paths, so it shifts A_near and A_far alike
and largely cancels in D = A_far - A_near; the dermis is what the longer path samples more.
In diffusion theory R(rho) ~ exp(-mu_eff rho) with mu_eff = sqrt(3 mu_a mu_s'), so D^2 is
close to linear in the dermal absorption mu_a = blood + bilirubin + background. The estimator
is therefore linear in (A_near, A_far, D^2) for the six LEDs: red/green carry melanin, blood
and scattering (550/590 nm haemoglobin, 650 nm mostly melanin), blue (450/470 nm) carries
bilirubin plus the melanin/blood share that the other wavelengths let the fit remove. Because
melanin is modelled rather than averaged over, a calibration population with few dark-skinned
babies still gives an unbiased estimate for them.

The interval comes from a residual model fitted on held-out calibration data: the residual
standard deviation grows with the estimate and with melanin (less blue light comes back).

A fault on one LED or detector channel (a weak LED, a smudge, a detector gain that moved) makes
that channel disagree with the other eleven; with coefficients of tens of mg/dL per unit of
ln R, 15 % on one channel can move the estimate by several mg/dL while the spectrum as a whole
stays close enough to skin. So the model also holds, for each of the 12 channels, the estimator
fitted without it: a reading whose estimate moves by more than the calibration babies' own
spread when any one channel is left out rests on that channel alone, and is flagged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from dsp.arrays import Bools, Floats

N_LEDS = 6
MG_DL_TO_UMOL_L = 17.1
MODEL_FILENAME = "tcb_model.json"
FEATURE_SET = "log_near_far_dsq_v1"
REFLECTANCE_FLOOR = 1e-5  # below the detector noise floor; keeps log() finite
Z_95 = 1.959964

# Quality limits on reflectance (relative to the factory reference phantom).
MAX_PLAUSIBLE_REFLECTANCE = 1.5  # skin is darker than the white reference
MIN_NEAR_RED_REFLECTANCE = 0.03  # less than this at 650 nm near: probe not on skin
MIN_NEAR_GREEN_REFLECTANCE = 0.005
ESTIMATE_RANGE_MG_DL = (-3.0, 30.0)  # outside this the model is extrapolating
FEATURE_MARGIN = 0.25  # fraction of the training range tolerated beyond it
# A limit drawn from the calibration babies (the spectral distance, the channel disagreement):
# LIMIT_SCALE x their LIMIT_QUANTILE + LIMIT_OFFSET, so real babies are not flagged.
LIMIT_QUANTILE = 0.999
LIMIT_SCALE = 1.5
LIMIT_OFFSET = 1.0
CHANNEL_FOLDS = 4  # the channel disagreement's limit is taken out of fold: on babies not fitted
N_CHANNELS = 2 * N_LEDS  # near 450..650 nm, then far 450..650 nm


@dataclass(frozen=True)
class TcbEstimate:
    """One TcB reading: a number with its 95 % interval, or a flag and no number."""

    tcb_mg_dl: float | None
    tcb_umol_l: float | None
    ci_low_mg_dl: float | None
    ci_high_mg_dl: float | None
    flag: str

    @property
    def usable(self) -> bool:
        return self.flag == ""


@dataclass(frozen=True)
class TcbModel:
    """Fitted coefficients: TcB = features @ coef; sigma = residual model (floored)."""

    coef: Floats
    sigma_coef: Floats
    sigma_floor: float
    feature_min: Floats
    feature_max: Floats
    feature_mean: Floats | None = None
    feature_precision: Floats | None = None
    distance_limit: float = math.inf
    # (12, 19): the estimator refitted without each channel (its two features held at 0), and
    # how far leaving one out may move an estimate (mg/dL; `_limit` of calibration babies')
    channel_coef: Floats | None = None
    channel_limit_mg_dl: float = math.inf
    feature_set: str = FEATURE_SET
    meta: dict[str, object] = field(default_factory=dict)  # JSON: how it was fitted

    def to_dict(self) -> dict[str, object]:
        return {
            "feature_set": self.feature_set,
            "coef": [float(x) for x in self.coef],
            "sigma_coef": [float(x) for x in self.sigma_coef],
            "sigma_floor": float(self.sigma_floor),
            "feature_min": [float(x) for x in self.feature_min],
            "feature_max": [float(x) for x in self.feature_max],
            "feature_mean": None if self.feature_mean is None else self.feature_mean.tolist(),
            "feature_precision": (
                None if self.feature_precision is None else self.feature_precision.tolist()
            ),
            "distance_limit": float(self.distance_limit),
            "channel_coef": None if self.channel_coef is None else self.channel_coef.tolist(),
            "channel_limit_mg_dl": float(self.channel_limit_mg_dl),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TcbModel:
        """The model from its JSON form (`to_dict`); ValueError naming what is wrong."""
        try:
            model = cls(
                coef=np.asarray(d["coef"], float),
                sigma_coef=np.asarray(d["sigma_coef"], float),
                sigma_floor=float(d["sigma_floor"]),
                feature_min=np.asarray(d["feature_min"], float),
                feature_max=np.asarray(d["feature_max"], float),
                feature_mean=(
                    None if d.get("feature_mean") is None else np.asarray(d["feature_mean"], float)
                ),
                feature_precision=(
                    None
                    if d.get("feature_precision") is None
                    else np.asarray(d["feature_precision"], float)
                ),
                distance_limit=float(d.get("distance_limit", math.inf)),
                channel_coef=(
                    None if d.get("channel_coef") is None else np.asarray(d["channel_coef"], float)
                ),
                channel_limit_mg_dl=float(d.get("channel_limit_mg_dl", math.inf)),
                feature_set=str(d.get("feature_set", FEATURE_SET)),
                meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a TcB model: {exc}") from exc
        if model.feature_set != FEATURE_SET:
            raise ValueError(f"unknown TcB feature set {model.feature_set!r}")
        n = _n_features()
        if model.coef.shape != (n,) or model.feature_min.shape != (n - 1,):
            raise ValueError("TcB model has the wrong number of coefficients")
        if model.sigma_coef.shape != (3,):
            raise ValueError("TcB model needs 3 residual-model coefficients")
        if not (np.all(np.isfinite(model.coef)) and np.all(np.isfinite(model.sigma_coef))):
            raise ValueError("TcB model coefficients must be finite")
        if model.channel_coef is not None and (
            model.channel_coef.shape != (N_CHANNELS, n)
            or not np.all(np.isfinite(model.channel_coef))
        ):
            raise ValueError(
                f"TcB model needs {N_CHANNELS} finite leave-one-channel-out estimators"
            )
        if math.isnan(model.channel_limit_mg_dl) or model.channel_limit_mg_dl <= 0:
            raise ValueError("TcB model's channel_limit_mg_dl must be a positive number")
        return model


def _n_features() -> int:
    return 1 + 3 * N_LEDS


def tcb_features(r_near: ArrayLike, r_far: ArrayLike) -> Floats:
    """(n, 19) design matrix: 1, A_near(6), A_far(6), (A_far - A_near)^2 (6)."""
    near = np.atleast_2d(np.asarray(r_near, float))
    far = np.atleast_2d(np.asarray(r_far, float))
    a_near = -np.log(np.clip(near, REFLECTANCE_FLOOR, None))
    a_far = -np.log(np.clip(far, REFLECTANCE_FLOOR, None))
    d = a_far - a_near
    return np.column_stack([np.ones(len(near)), a_near, a_far, d**2])


def channel_features(channel: int) -> Bools:
    """Which of the 19 features use a channel (0-5 near 450..650 nm, 6-11 far): its A and
    its LED's D^2, the two that a fault on that channel moves."""
    used = np.zeros(_n_features(), bool)
    used[1 + channel] = True
    used[1 + 2 * N_LEDS + channel % N_LEDS] = True
    return used


def _sigma_features(tcb_mg_dl: Floats, phi: Floats) -> Floats:
    """Residual-model inputs: 1, the estimate, and melanin (A_near at 650 nm)."""
    melanin = phi[:, 1 + 5]
    return np.column_stack([np.ones(len(phi)), np.clip(tcb_mg_dl, 0.0, 30.0), melanin])


def _check_shapes(r_near: ArrayLike, r_far: ArrayLike) -> tuple[Floats, Floats]:
    near = np.asarray(r_near, dtype=float)
    far = np.asarray(r_far, dtype=float)
    if near.shape[-1:] != (N_LEDS,) or far.shape != near.shape:
        raise ValueError(
            f"need {N_LEDS} reflectances per detector (450-650 nm), got shapes "
            f"{near.shape} and {far.shape}"
        )
    return near, far


def reflectance_flag(r_near: ArrayLike, r_far: ArrayLike) -> str:
    """Why these reflectances cannot give a TcB ("" when they can)."""
    near, far = _check_shapes(r_near, r_far)
    both = np.concatenate([near, far])
    if not np.all(np.isfinite(both)):
        return "invalid_reflectance"
    if np.any(both < -0.01) or np.any(both > MAX_PLAUSIBLE_REFLECTANCE):
        return "invalid_reflectance"
    if near[5] < MIN_NEAR_RED_REFLECTANCE or near[3] < MIN_NEAR_GREEN_REFLECTANCE:
        return "low_signal"
    return ""


def fit_model(
    r_near: ArrayLike,
    r_far: ArrayLike,
    tsb_mg_dl: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    validation_fraction: float = 0.25,
    seed: int = 0,
) -> TcbModel:
    """Fit the TcB model on paired reflectance / laboratory TSB data.

    The coefficients are fitted on all rows. The residual model (interval width) needs
    residuals the coefficients have not seen, so it is fitted on a held-out part after a
    refit on the rest. weights: optional per-baby weights (e.g. to balance skin groups).
    """
    near, far = _check_shapes(r_near, r_far)
    near = np.atleast_2d(near)
    far = np.atleast_2d(far)
    tsb = np.asarray(tsb_mg_dl, float)
    if tsb.shape != (len(near),):
        raise ValueError("tsb_mg_dl needs one value per row of reflectances")
    ok = np.array([reflectance_flag(n, f) == "" for n, f in zip(near, far, strict=True)])
    ok &= np.isfinite(tsb)
    if ok.sum() < 40:
        raise ValueError(f"need at least 40 usable calibration rows, got {int(ok.sum())}")
    near, far, tsb = near[ok], far[ok], tsb[ok]
    w = np.ones(len(tsb)) if weights is None else np.asarray(weights, float)[ok]
    phi = tcb_features(near, far)

    def solve(rows: Bools, without: int | None = None) -> Floats:
        """Weighted least squares on `rows`; without a channel: its features' coefficients 0."""
        sw = np.sqrt(w[rows])
        cols = np.ones(phi.shape[1], bool) if without is None else ~channel_features(without)
        beta = np.zeros(phi.shape[1])
        beta[cols], *_ = np.linalg.lstsq(phi[rows][:, cols] * sw[:, None], tsb[rows] * sw,
                                         rcond=None)  # fmt: skip
        return beta

    every = np.ones(len(tsb), bool)
    coef = solve(every)
    channel_coef = np.stack([solve(every, c) for c in range(N_CHANNELS)])
    # how far leaving one channel out moves the estimate of babies the fit has not seen
    fold = np.random.default_rng([seed, 1]).integers(0, CHANNEL_FOLDS, len(tsb))
    moved = np.zeros(len(tsb))
    for k in range(CHANNEL_FOLDS):
        test = fold == k
        full = solve(~test)
        without = np.stack([solve(~test, c) for c in range(N_CHANNELS)])
        moved[test] = np.max(np.abs(phi[test] @ (full - without).T), axis=1)
    rng = np.random.default_rng(seed)
    held = rng.random(len(tsb)) < validation_fraction
    beta_rest = solve(~held)
    pred_held = phi[held] @ beta_rest
    abs_res = np.abs(pred_held - tsb[held])
    # E|res| = sigma * sqrt(2/pi) for a Gaussian residual
    s_feat = _sigma_features(pred_held, phi[held])
    sigma_coef, *_ = np.linalg.lstsq(s_feat, abs_res * math.sqrt(math.pi / 2.0), rcond=None)
    sigma_floor = float(max(0.3, 0.5 * np.std(pred_held - tsb[held])))
    mean, precision, limit = _spectral_envelope(phi[:, 1:])
    channel_limit = _limit(moved)
    return TcbModel(
        coef=coef,
        sigma_coef=sigma_coef,
        sigma_floor=sigma_floor,
        feature_min=phi[:, 1:].min(axis=0),
        feature_max=phi[:, 1:].max(axis=0),
        feature_mean=mean,
        feature_precision=precision,
        distance_limit=limit,
        channel_coef=channel_coef,
        channel_limit_mg_dl=channel_limit,
        meta={
            "n_calibration": int(len(tsb)),
            "n_residual_model": int(held.sum()),
            "residual_sd_mg_dl": float(np.std(pred_held - tsb[held])),
        },
    )


def _spectral_envelope(x: Floats) -> tuple[Floats, Floats, float]:
    """Mean, regularised inverse covariance and distance limit of calibration spectra.

    A reading whose Mahalanobis distance exceeds the limit is not a spectrum of the kind the
    model was fitted on (e.g. a blue LED brighter than skin can be): it is flagged.
    """
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False)
    cov += np.eye(len(cov)) * 1e-3 * np.trace(cov) / len(cov)
    precision = np.asarray(np.linalg.inv(cov), dtype=np.float64)
    d = np.sqrt(np.einsum("ij,jk,ik->i", x - mean, precision, x - mean))
    return mean, precision, _limit(d)


def _limit(calibration_values: Floats) -> float:
    """A flagging limit above what the calibration babies show (LIMIT_QUANTILE, with margin)."""
    return float(LIMIT_SCALE * np.quantile(calibration_values, LIMIT_QUANTILE) + LIMIT_OFFSET)


def spectral_distance(model: TcbModel, r_near: ArrayLike, r_far: ArrayLike) -> float:
    """Mahalanobis distance of a reading from the calibration spectra (inf if unknown)."""
    if model.feature_mean is None or model.feature_precision is None:
        return 0.0
    diff = tcb_features(r_near, r_far)[0, 1:] - model.feature_mean
    return float(np.sqrt(diff @ model.feature_precision @ diff))


def channel_disagreement_mg_dl(model: TcbModel, r_near: ArrayLike, r_far: ArrayLike) -> float:
    """The most the estimate moves when one of the 12 channels is left out (0.0 for a model
    without leave-one-channel-out estimators). A reading that rests on one channel alone."""
    if model.channel_coef is None:
        return 0.0
    phi = tcb_features(r_near, r_far)[0]
    return float(np.max(np.abs((model.coef - model.channel_coef) @ phi)))


def load_model(path: str | Path | None = None) -> TcbModel:
    """The model shipped with the package (dsp/tcb_model.json), or one from a path."""
    if path is None:
        text = resources.files("dsp").joinpath(MODEL_FILENAME).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TcB model is not valid JSON: {exc}") from exc
    return TcbModel.from_dict(data)


_SHIPPED: list[TcbModel] = []  # loaded once; the file is read-only package data


def _shipped_model() -> TcbModel:
    if not _SHIPPED:
        _SHIPPED.append(load_model())
    return _SHIPPED[0]


def _flagged(flag: str) -> TcbEstimate:
    return TcbEstimate(None, None, None, None, flag)


def estimate_tcb(r_near: ArrayLike, r_far: ArrayLike, model: TcbModel | None = None) -> TcbEstimate:
    """TcB in mg/dL (and umol/L) with a 95 % interval, or a flagged estimate with no number."""
    near, far = _check_shapes(r_near, r_far)
    if near.ndim != 1:
        raise ValueError("estimate_tcb takes one reading; use estimate_tcb_batch for many")
    flag = reflectance_flag(near, far)
    if flag:
        return _flagged(flag)
    model = model or _shipped_model()
    phi = tcb_features(near, far)
    span = model.feature_max - model.feature_min
    lo = model.feature_min - FEATURE_MARGIN * span
    hi = model.feature_max + FEATURE_MARGIN * span
    if np.any(phi[0, 1:] < lo) or np.any(phi[0, 1:] > hi):
        return _flagged("outside_calibration")
    if spectral_distance(model, near, far) > model.distance_limit:
        return _flagged("implausible_spectrum")
    if channel_disagreement_mg_dl(model, near, far) > model.channel_limit_mg_dl:
        return _flagged("implausible_spectrum")  # one channel disagrees with the others
    tcb = float(phi[0] @ model.coef)
    if not (ESTIMATE_RANGE_MG_DL[0] <= tcb <= ESTIMATE_RANGE_MG_DL[1]):
        return _flagged("outside_calibration")
    sigma = float(_sigma_features(np.array([tcb]), phi)[0] @ model.sigma_coef)
    sigma = max(sigma, model.sigma_floor)
    # a bilirubin is never below 0: the number shown is clamped there, and the interval holds
    # the number shown (an estimate of -1 with interval -1.6..-0.4 is shown as 0 in 0..0)
    shown = round(max(tcb, 0.0), 2)
    return TcbEstimate(
        tcb_mg_dl=shown,
        tcb_umol_l=round(shown * MG_DL_TO_UMOL_L, 1),
        ci_low_mg_dl=min(round(max(tcb - Z_95 * sigma, 0.0), 2), shown),
        ci_high_mg_dl=max(round(tcb + Z_95 * sigma, 2), shown),
        flag="",
    )


def estimate_tcb_batch(
    r_near: ArrayLike, r_far: ArrayLike, model: TcbModel | None = None
) -> list[TcbEstimate]:
    """estimate_tcb for each row of (n, 6) arrays."""
    near, far = _check_shapes(r_near, r_far)
    near = np.atleast_2d(near)
    far = np.atleast_2d(far)
    model = model or _shipped_model()
    return [estimate_tcb(n, f, model) for n, f in zip(near, far, strict=True)]
