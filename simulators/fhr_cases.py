"""Random test cases of a fetal Doppler recording with the mother's PPG, for benchmarks.

Each case draws, from its seed, a mother (rate, beats, transit delays), the maternal sources
the probe hears and how loudly, one stretch with the probe off the fetus, and the noise;
the Doppler audio comes from either synthesizer ("noise": simulators/doppler.py, "scatter":
simulators/doppler_scatter.py) and the PPG from the same beats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.doppler import _RANDOM_MODELS, FS_TRACE_HZ, DopplerScene, synthesize_doppler
from simulators.doppler_scatter import synthesize_doppler_scatter
from simulators.maternal import MaternalBeats
from simulators.ppg import PPG_ARRIVAL_RANGE_S, synthesize_ppg

# Maternal rates: 55 (a fit mother at rest) to 160 bpm (tachycardia in labour, fever,
# bleeding), which overlaps the fetal range; judgement for the limits.
MATERNAL_RATE_BPM = (55.0, 160.0)
# Half of the cases have the mother within this of the fetal baseline: the hardest case.
NEAR_FETAL_BPM = 10.0
NEAR_FETAL_SHARE = 0.5
# Maternal vessel power relative to the fetal heart, where the fetus is heard (judgement:
# from a faint vessel to one louder than the heart).
MATERNAL_DB = (-15.0, 6.0)
# The probe off the fetus once per case, for 60-120 s (judgement: a displaced probe is
# noticed and repositioned within a minute or two), with the vessel 0-10 dB louder.
ABSENT_S = (60.0, 120.0)
ABSENT_MATERNAL_DB = (0.0, 10.0)
# Slow wander of the maternal rate over the recording (bpm, SD; judgement).
RATE_WANDER_BPM = 3.0
SNR_DB_CHOICES = (0.0, 5.0, 10.0, 15.0, 20.0)
SYNTHESIZERS = ("noise", "scatter")
PPG_FS_HZ = 50
# The uterine arrival is drawn by the synthesizer from UTERINE_ARRIVAL_RANGE_S.


@dataclass(frozen=True)
class MaternalCase:
    """What a case drew (the recording itself is rendered by `maternal_case`)."""

    maternal_model: str
    mhr_bpm_4hz: np.ndarray
    ppg_arrival_s: float
    maternal_db: float
    fetal_absent: tuple[tuple[float, float], ...]
    absent_maternal_db: float
    snr_db: float
    near_fetal: bool


def draw_case(
    seed: int, fhr_bpm_4hz: np.ndarray, snr_db_choices: tuple[float, ...] = SNR_DB_CHOICES
) -> MaternalCase:
    """The parameters of case `seed` for a fetal trace."""
    fhr = np.asarray(fhr_bpm_4hz, dtype=float)
    if fhr.ndim != 1 or fhr.size < 8 or not np.all(np.isfinite(fhr)):
        raise ValueError("fhr_bpm_4hz must be a finite 1-D trace of at least 2 s")
    if len(snr_db_choices) == 0 or not np.all(np.isfinite(snr_db_choices)):
        raise ValueError("snr_db_choices must be a non-empty list of finite values")
    rng = np.random.default_rng([seed, 40])
    duration = fhr.size / FS_TRACE_HZ
    baseline = float(np.median(fhr))
    lo_all, hi_all = MATERNAL_RATE_BPM
    near = bool(rng.uniform() < NEAR_FETAL_SHARE)
    if near:
        lo = min(max(lo_all, baseline - NEAR_FETAL_BPM), hi_all)
        hi = max(min(hi_all, baseline + NEAR_FETAL_BPM), lo_all)
        rate = rng.uniform(min(lo, hi), max(lo, hi))
    else:  # anywhere else in the range
        gap = (baseline - NEAR_FETAL_BPM, baseline + NEAR_FETAL_BPM)
        width_below = max(0.0, min(gap[0], hi_all) - lo_all)
        width_above = max(0.0, hi_all - max(gap[1], lo_all))
        if width_below + width_above <= 0:
            rate = rng.uniform(lo_all, hi_all)
        else:
            u = rng.uniform(0.0, width_below + width_above)
            rate = lo_all + u if u < width_below else max(gap[1], lo_all) + (u - width_below)
    wander = np.cumsum(rng.normal(0.0, 1.0, fhr.size))
    wander = (wander - wander.mean()) / (wander.std() + 1e-12) * RATE_WANDER_BPM
    mhr = np.clip(rate + wander, lo_all, hi_all)
    absent_len = min(rng.uniform(*ABSENT_S), 0.5 * duration)
    t0 = rng.uniform(0.0, duration - absent_len)
    return MaternalCase(
        maternal_model=str(rng.choice(_RANDOM_MODELS)),
        mhr_bpm_4hz=mhr,
        ppg_arrival_s=float(rng.uniform(*PPG_ARRIVAL_RANGE_S)),
        maternal_db=float(rng.uniform(*MATERNAL_DB)),
        fetal_absent=((float(t0), float(t0 + absent_len)),),
        absent_maternal_db=float(rng.uniform(*ABSENT_MATERNAL_DB)),
        snr_db=float(snr_db_choices[int(rng.integers(len(snr_db_choices)))]),
        near_fetal=near,
    )


def maternal_case(
    seed: int,
    fhr_bpm_4hz: np.ndarray,
    synthesizer: str = "noise",
    snr_db_choices: tuple[float, ...] = SNR_DB_CHOICES,
    fs_hz: int = 4000,
) -> tuple[DopplerScene, np.ndarray, int, MaternalBeats]:
    """Case `seed`: (Doppler scene, PPG, PPG rate in Hz, the mother's beats).

    The drawn parameters are `draw_case(seed, fhr_bpm_4hz, snr_db_choices)`; the scene
    records the maternal model, the uterine arrival and the fetal-absent points.
    """
    if synthesizer not in SYNTHESIZERS:
        raise ValueError(f"synthesizer must be one of {', '.join(SYNTHESIZERS)}")
    case = draw_case(seed, fhr_bpm_4hz, snr_db_choices)
    beats = MaternalBeats.from_rate(case.mhr_bpm_4hz, seed=np.random.default_rng([seed, 41]))
    kw = dict(
        fs_hz=fs_hz,
        snr_db=case.snr_db,
        seed=seed,
        maternal_model=case.maternal_model,
        fetal_absent=case.fetal_absent,
        maternal_db=case.maternal_db,
        absent_maternal_db=case.absent_maternal_db,
    )
    if synthesizer == "noise":
        scene = synthesize_doppler(fhr_bpm_4hz, case.mhr_bpm_4hz, beats=beats, **kw)
    else:
        scene = synthesize_doppler_scatter(fhr_bpm_4hz, beats, **kw)
    ppg = synthesize_ppg(beats=beats, fs_hz=PPG_FS_HZ, seed=seed + 1, arrival_s=case.ppg_arrival_s)
    return scene, ppg, PPG_FS_HZ, beats
