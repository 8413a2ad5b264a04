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


def test_the_weekly_check_passes_a_sound_unit_and_stops_one_whose_leds_moved(broker, tmp_path):
    """Through the real firmware and gateway, the nurse presses each meter on the check phantom,
    then on the baby. Two units of the same make-up: the sound one passes and reads the baby;
    the one whose blue LEDs moved 4 nm since the factory (its white-tile self-check cannot see
    that: the tile is flat) fails, and every reading after it is withheld, never a number."""
    from dsp.tcb_counts import CHECK_PHANTOM, NEEDS_CALIBRATION

    specs = [
        DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=11.0,
                   press_every_s=3.0, presses_check_phantom=True),
        DeviceSpec("tcb-02", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=11.0,
                   press_every_s=3.0, presses_check_phantom=True,
                   led_shift_nm=(4.0, 4.0, 0.0, 0.0, 0.0, 0.0)),
    ]  # fmt: skip
    sub, _ = run_chain(broker, tmp_path, specs, seconds=10)
    for dev, passed in (("tcb-01", True), ("tcb-02", False)):
        check, *after = sub.of(dev, "tcb")
        assert check["flag"] == CHECK_PHANTOM and check["tcb_mg_dl"] is None, check
        assert check["check"]["passed"] is passed, check
        assert after, f"{dev}: no press after the check"
        statuses = [s for s in sub.of(dev, "status") if s.get("tcb_check")]
        assert statuses and statuses[-1]["tcb_check"]["passed"] is passed
        assert statuses[-1]["tcb_check_due"] is False
        if passed:
            assert all(abs(r["tcb_mg_dl"] - 11.0) < 4.0 for r in after), after
        else:
            assert all(r["tcb_mg_dl"] is None and r["flag"] == NEEDS_CALIBRATION
                       for r in after), after  # fmt: skip


def _provision(tmp_path, device_on_pty, monkeypatch, seed: int):
    """`perimon provision --tcb-calibrate` on simulated unit `seed` under the real firmware,
    the simulated fixture holding each target: (exit code, the device's settings file, the
    targets measured)."""
    import json

    import numpy as np

    from dsp.tissue_optics import led_band_weights
    from gateway.cli import main as cli_main
    from gateway.cli import tcb_factory
    from simulators.tcb_device import TcbDeviceModel, random_factory_calibration
    from simulators.tcb_phantoms import certificate, phantom_reflectance
    from tests.harness.console import gateway_toml

    device = TcbDeviceModel(random_factory_calibration(seed, per_unit=False), seed=seed)
    cert = tmp_path / "phantoms.json"
    cert.write_text(json.dumps(certificate(4)))
    port, settings, proc = device_on_pty("jaundice", {"radio": "127.0.0.1:9"})
    steps = []

    def fixture(step):  # the fixture puts the probe on the target and holds its temperature
        steps.append((step.target, step.temperature_c))
        if step.target == "tile":
            near = far = np.full(6, device.tile_reflectance)
        else:
            w = led_band_weights(*device.bands_at(step.temperature_c))
            spec_near, spec_far = phantom_reflectance(step.target)
            near, far = w @ spec_near, w @ spec_far
        scene = device.scene(near, far, temperature_c=step.temperature_c)
        (settings.parent / (settings.name + ".fixture")).write_text(json.dumps(scene))

    monkeypatch.setattr(tcb_factory, "operator_ready", fixture)
    rc = cli_main(["provision", port, "--id", "tcb-09", "--tcb-calibrate", str(cert),
                   "--config", gateway_toml(tmp_path)])  # fmt: skip
    if rc == 0:
        assert proc.wait(10) == 0  # (a failed run's firmware is ended by the fixture)
    return rc, settings, steps


def test_provision_runs_the_factory_calibration_on_the_firmware(tmp_path, device_on_pty,
                                                                monkeypatch, capsys):  # fmt: skip
    """`perimon provision --tcb-calibrate` on a meter whose LEDs are off their nominal peaks:
    the firmware measures each phantom the simulated fixture holds, and the stored calibration
    has the unit's own LED peaks, droop and tempcos, and the factory's estimate of its band
    correction's uncertainty (within the limit: no warning)."""
    import json

    import numpy as np

    from dsp.tcb_unit import CORRECTION_UNCERTAINTY_LIMIT_MG_DL, UnitCalibration
    from simulators.tcb_device import _hidden_optics

    seed = 5
    rc, settings, steps = _provision(tmp_path, device_on_pty, monkeypatch, seed)
    assert rc == 0
    assert {t for t, _ in steps} == {"W", "Y1", "Y2", "Y3", "R", "B", "G", "tile"}
    unit = UnitCalibration.from_dict(json.loads(settings.read_text())["calibration"]["unit"])
    truth = _hidden_optics(seed)
    assert (
        np.max(np.abs(np.subtract(truth.led_centre_nm, [450, 470, 505, 550, 590, 650]))) > 5
    )  # a binned unit
    assert np.allclose(unit.led_centre_nm, truth.led_centre_nm, atol=0.6)
    assert np.allclose(unit.droop_ma, truth.droop_ma, rtol=0.15)
    assert np.allclose(unit.output_tempco_per_c, truth.tempco_per_c, atol=5e-4)
    assert np.allclose(unit.centre_tempco_nm_per_c, truth.centre_tempco_nm_per_c, atol=0.05)
    assert unit.correction_uncertainty_mg_dl is not None
    assert 0 <= unit.correction_uncertainty_mg_dl <= CORRECTION_UNCERTAINTY_LIMIT_MG_DL
    out = capsys.readouterr().out
    assert f"estimated uncertainty {unit.correction_uncertainty_mg_dl:.2f} mg/dL" in out, out
    assert "warning" not in out, out


def test_provision_calibrates_a_unit_above_the_advisory_limit_and_warns(
    tmp_path, device_on_pty, monkeypatch, capsys
):
    """Simulated unit 1003 (its 590 and 650 nm LEDs 9 and 5 nm off): the estimate of its band
    correction's uncertainty is above the limit, and it is advisory (docs/jaundice.md, Limits):
    the unit is calibrated and provisioned, the estimate stored with its calibration and printed
    with the LEDs that dominate it and a warning."""
    import json

    from dsp.tcb_unit import CORRECTION_UNCERTAINTY_LIMIT_MG_DL, UnitCalibration

    rc, settings, _ = _provision(tmp_path, device_on_pty, monkeypatch, 1003)
    out = capsys.readouterr().out
    assert rc == 0, out
    unit = UnitCalibration.from_dict(json.loads(settings.read_text())["calibration"]["unit"])
    assert unit.correction_uncertainty_mg_dl is not None
    assert unit.correction_uncertainty_mg_dl > CORRECTION_UNCERTAINTY_LIMIT_MG_DL
    assert f"estimated uncertainty {unit.correction_uncertainty_mg_dl:.2f} mg/dL" in out, out
    assert "590 nm LED at" in out, out
    assert "estimated; not validated on an independent skin model" in out, out
    assert "tcb-09 (jaundice) provisioned" in out, out
