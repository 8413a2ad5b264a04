"""The jaundice meter's calibration through the real firmware: the start-up self-check on the
built-in tile reaches the gateway, a calibrated unit's readings are numbers close to the baby's,
an uncalibrated unit's are never numbers."""

from __future__ import annotations

import pytest

from simulators.fleet import DeviceSpec
from tests.harness.chain import run_chain

pytestmark = pytest.mark.system


def test_calibrated_unit_reads_the_baby_and_uncalibrated_unit_is_flagged(broker, tmp_path):
    specs = [
        DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=11.0,
                   press_every_s=3.0),
        DeviceSpec("tcb-02", "jaundice", seed=6, skin_group="light", bilirubin_mg_dl=11.0,
                   press_every_s=3.0, tcb_unit_calibration=False),
    ]  # fmt: skip
    sub, _ = run_chain(broker, tmp_path, specs, seconds=10)
    good = sub.of("tcb-01", "tcb")
    assert len(good) >= 2
    numeric = [r for r in good if r["tcb_mg_dl"] is not None]
    assert numeric, [r["flag"] for r in good]
    for r in numeric:
        assert abs(r["tcb_mg_dl"] - 11.0) < 4.0
    status = [s for s in sub.of("tcb-01", "status") if "self_check" in (s.get("info") or {})]
    assert status, "the start-up self-check never reached the device info"
    assert status[-1]["tcb_check_due"] is True  # no weekly check yet
    old = sub.of("tcb-02", "tcb")
    assert old and all(r["tcb_mg_dl"] is None and r["flag"] == "needs_calibration" for r in old)
