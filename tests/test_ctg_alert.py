"""The pathological-CTG alert stays raised while the heart cannot be found: a window that is
"indeterminate" (more than half of it without a rate) says nothing about the heart, so it
neither clears the alert nor raises it; a window classed normal clears it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dsp.ctg_reference import POINT_S
from gateway import protocol as p
from gateway.config import ProcessingSection
from gateway.device.session import DeviceSession
from gateway.processing.fetal import FetalProcessor

pytestmark = pytest.mark.unit

Published = list[tuple[tuple[str, ...], dict[str, Any]]]
PER_MIN = int(60 / POINT_S)


def processor() -> tuple[FetalProcessor, Published]:
    published: Published = []
    s = DeviceSession("fh-01", p.DeviceType.FETAL_HEART, gap_timeout_s=0.0)
    s.state.boot = 1
    proc = FetalProcessor(s, lambda parts, m, **kw: published.append((parts, m)),
                          ProcessingSection())  # fmt: skip
    return proc, published


def trace(minutes: float, bpm: float, seed: int) -> list[float]:
    """`minutes` of FHR around `bpm` with ordinary beat-to-beat variability (~10 bpm)."""
    rng = np.random.default_rng(seed)
    n = int(minutes * PER_MIN)
    wander = np.convolve(rng.normal(0, 1, n), np.ones(20) / 20, "same") * 15
    return (bpm + wander).tolist()


def alerts(published: Published) -> list[tuple[str, str]]:
    return [(m["alert"], m["state"]) for parts, m in published
            if parts[-1] == "alert" and m["alert"] == "ctg_pathological"]  # fmt: skip


def test_a_pathological_alert_is_not_cleared_by_signal_loss() -> None:
    proc, published = processor()
    proc.history_fhr.extend(trace(30, 85, seed=0))  # bradycardia for 30 min
    proc.publish_ctg()
    assert alerts(published) == [("ctg_pathological", "raised")]

    proc.history_fhr.extend([float("nan")] * (16 * PER_MIN))  # then the heart is not found
    proc.publish_ctg()
    ctg = [m for parts, m in published if parts[-1] == "ctg"]
    assert ctg[-1]["figo_class"] == "indeterminate"
    assert alerts(published) == [("ctg_pathological", "raised")]  # still raised
    assert "ctg_pathological" in proc.alerts.active()


def test_a_normal_window_clears_it_and_says_so() -> None:
    proc, published = processor()
    proc.history_fhr.extend(trace(30, 85, seed=1))
    proc.publish_ctg()
    proc.history_fhr.clear()
    proc.history_fhr.extend(trace(40, 140, seed=2))  # the rolling window is now a normal trace
    proc.publish_ctg()
    ctg = [m for parts, m in published if parts[-1] == "ctg"]
    assert ctg[-1]["figo_class"] == "normal", ctg[-1]["reasons"]
    assert alerts(published) == [("ctg_pathological", "raised"), ("ctg_pathological", "cleared")]
    cleared = [m for parts, m in published if parts[-1] == "alert"][-1]
    assert cleared["detail"].startswith("FIGO class normal")
