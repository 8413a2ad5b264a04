"""Loader for the recorded CTG traces in the shared data directory.

The records are a subset of the CTU-UHB Intrapartum Cardiotocography Database
(Chudacek et al., BMC Pregnancy and Childbirth 14:16, 2014; PhysioNet). They are read in
place, never copied into the repository.
"""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np

_REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """`../shared/data` relative to the repository root; `PERIMON_SHARED_DIR` overrides."""
    env = os.environ.get("PERIMON_SHARED_DIR")
    if env:
        return Path(env)
    return _REPO_ROOT.parent / "shared" / "data"


def _ctg_dir() -> Path:
    base = shared_data_dir() / "ctg"
    if not base.is_dir():
        raise FileNotFoundError(
            f"CTG records not found at {base}: set PERIMON_SHARED_DIR to the shared data directory"
        )
    return base


def list_ctg_records() -> list[str]:
    """Record names (e.g. '1005') available in the shared directory, sorted."""
    return sorted(p.name.split(".")[0] for p in _ctg_dir().glob("*.csv.gz"))


def load_ctg_record(record: str | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t_s, fhr_bpm, uc) at 4 Hz; fhr_bpm is NaN where the monitor had no value."""
    name = f"{int(record):04d}" if not isinstance(record, str) else record
    path = _ctg_dir() / f"{name}.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"CTG record {name} not found in {path.parent}")
    t_s, fhr, uc = [], [], []
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            t_s.append(float(row["t_s"]))
            fhr.append(float(row["fhr_bpm"]) if row["fhr_bpm"] else np.nan)
            uc.append(float(row["uc"]) if row.get("uc") else np.nan)
    return np.asarray(t_s), np.asarray(fhr), np.asarray(uc)


def load_ctg_index() -> list[dict[str, str]]:
    """Rows of index.csv (outcome and clinical descriptors per record)."""
    with open(_ctg_dir() / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def rhythm_segment(
    fhr_bpm: np.ndarray, duration_s: float, max_missing: float = 0.05, max_gap_s: float = 15.0
) -> tuple[int, np.ndarray] | None:
    """First 4 Hz segment of `duration_s` usable to drive a synthesizer, gaps filled.

    A monitor's own trace has gaps and artefacts (halving, doubling, spikes). A segment is
    usable when at most `max_missing` of it is missing or implausible and no gap is longer
    than `max_gap_s`; gaps are then filled by linear interpolation. Returns (start index,
    filled trace) or None.
    """
    fhr = np.asarray(fhr_bpm, dtype=float).copy()
    bad = ~np.isfinite(fhr) | (fhr < 50) | (fhr > 220)
    fhr[bad] = np.nan
    # Spikes and halving/doubling jumps: far from a 15 s running median.
    med = _running_nanmedian(fhr, 61)
    jump = np.abs(fhr - med) > 25
    fhr[jump] = np.nan
    n = int(round(duration_s * 4))
    step = 4 * 30
    for start in range(0, max(0, fhr.size - n) + 1, step):
        seg = fhr[start : start + n]
        miss = ~np.isfinite(seg)
        if miss.mean() > max_missing or miss[0] or miss[-1]:
            continue
        if _longest_run(miss) > max_gap_s * 4:
            continue
        idx = np.arange(n)
        filled = seg.copy()
        filled[miss] = np.interp(idx[miss], idx[~miss], seg[~miss])
        return start, filled
    return None


def _running_nanmedian(x: np.ndarray, width: int) -> np.ndarray:
    half = width // 2
    pad = np.pad(x, half, mode="constant", constant_values=np.nan)
    win = np.lib.stride_tricks.sliding_window_view(pad, width)
    out = np.full(x.size, np.nan)
    ok = np.isfinite(win).sum(axis=1) > 0
    out[ok] = np.nanmedian(win[ok], axis=1)
    return out


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    m = np.concatenate([[0], mask.astype(np.int8), [0]])
    d = np.diff(m)
    return int((np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).max())
