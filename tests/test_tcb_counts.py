"""Counts -> reflectance through the simulated device, and every reason a press is flagged."""

import numpy as np
import pytest

from dsp.tcb import estimate_tcb
from dsp.tcb_counts import reflectance_from_counts
from simulators.skin import random_newborn, skin_reflectance
from simulators.tcb_device import (
    FactoryCalibration,
    TcbDeviceModel,
    random_factory_calibration,
)


def _unit(seed=11):
    cal = random_factory_calibration(seed)
    return cal, TcbDeviceModel(cal, seed=seed)


def _skin(device, group="medium", bili=12.0):
    baby = random_newborn(np.random.default_rng(3), group, bili)
    return skin_reflectance(baby, device.led_centre_nm, device.led_fwhm_nm)


def _convert(press, cal):
    return reflectance_from_counts(
        press.dark_before, press.dark_after, press.flashes, press.temperature_c,
        press.contact, cal.to_dict(),
    )  # fmt: skip


@pytest.mark.parametrize("temperature_c", [22.0, 30.0, 38.0])
def test_recovers_reflectance_at_any_temperature(temperature_c):
    cal, dev = _unit()
    near, far = _skin(dev)
    r_near, r_far, flag = _convert(dev.press(near, far, temperature_c=temperature_c), cal)
    assert flag == ""
    assert np.allclose(r_near, near, rtol=0.02, atol=5e-4)
    assert np.allclose(r_far, far, rtol=0.05, atol=3e-3)  # far blue: a few counts


def test_calibration_round_trips_through_device_info():
    cal, _ = _unit()
    assert FactoryCalibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(ValueError):
        FactoryCalibration.from_dict({"dark_offset": [1, 2]})


@pytest.mark.parametrize(
    "kwargs,flag",
    [
        ({"contact": False}, "no_contact"),
        ({"ambient": 0.3}, "ambient_light"),
        ({"ambient": 4.0}, "saturated"),
        ({"ambient": 0.02}, "flashes_disagree"),
    ],
)
def test_bad_presses_are_flagged_and_never_become_a_number(kwargs, flag):
    cal, dev = _unit()
    near, far = _skin(dev, "light", 8.0)
    r_near, r_far, got = _convert(dev.press(near, far, **kwargs), cal)
    assert got == flag
    assert np.all(np.isnan(r_near)) and np.all(np.isnan(r_far))
    est = estimate_tcb(r_near, r_far)
    assert est.tcb_mg_dl is None and est.flag


def test_saturation_from_a_bright_target():
    cal, dev = _unit()
    _, _, flag = _convert(dev.press(np.full(6, 3.0), np.full(6, 0.5)), cal)
    assert flag == "saturated"


def test_malformed_counts_and_calibration():
    cal, dev = _unit()
    press = dev.press(*_skin(dev))
    bad = [row[:1] for row in press.flashes]
    out = reflectance_from_counts(press.dark_before, press.dark_after, bad, 30.0, True,
                                  cal.to_dict())  # fmt: skip
    assert out[2] == "malformed_counts"
    neg = [[[-5] * 5, [10] * 5] for _ in range(6)]
    assert reflectance_from_counts((1, 1), (1, 1), neg, 30.0, True, cal.to_dict())[2] == (
        "malformed_counts"
    )
    too_hot = reflectance_from_counts(
        press.dark_before, press.dark_after, press.flashes, 80.0, True, cal.to_dict()
    )
    assert too_hot[2] == "temperature_out_of_range"
    with pytest.raises(ValueError):
        reflectance_from_counts((1, 1), (1, 1), press.flashes, 30.0, True, {"white_ref": []})


def test_device_with_a_calibration_from_another_unit_stays_consistent():
    cal = random_factory_calibration(3)
    dev = TcbDeviceModel(cal, seed=99)
    near, far = np.full(6, 0.4), np.full(6, 0.2)
    r_near, r_far, flag = _convert(dev.press(near, far, temperature_c=25.0), cal)
    assert flag == ""
    assert np.allclose(r_near, near, rtol=0.02) and np.allclose(r_far, far, rtol=0.05)
