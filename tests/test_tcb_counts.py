"""Counts -> reflectance through the simulated device, and every reason a press is flagged."""

import numpy as np
import pytest

from dsp.tcb import estimate_tcb
from dsp.tcb_counts import reflectance_from_counts
from dsp.tcb_unit import droop_factor
from simulators.skin import random_newborn, skin_reflectance
from simulators.tcb_device import (
    DRIVE_MAX_CODE,
    DRIVE_STEP_CODE,
    EXPOSURE_TARGET_COUNTS,
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
        press.contact, cal.to_dict(), press.led_drive,
    )  # fmt: skip


@pytest.mark.unit
@pytest.mark.parametrize("temperature_c", [22.0, 30.0, 38.0])
def test_recovers_reflectance_at_any_temperature(temperature_c):
    cal, dev = _unit()
    near, far = _skin(dev)
    r_near, r_far, flag = _convert(dev.press(near, far, temperature_c=temperature_c), cal)
    assert flag == ""
    assert np.allclose(r_near, near, rtol=0.02, atol=5e-4)
    assert np.allclose(r_far, far, rtol=0.05, atol=3e-3)  # far blue: a few counts


@pytest.mark.unit
def test_calibration_round_trips_through_device_info():
    cal, _ = _unit()
    assert FactoryCalibration.from_dict(cal.to_dict()) == cal
    with pytest.raises(ValueError):
        FactoryCalibration.from_dict({"dark_offset": [1, 2]})


@pytest.mark.unit
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


@pytest.mark.unit
def test_a_bright_target_is_measured_in_range_and_still_gives_no_number():
    """Exposure control turns the LEDs down instead of clipping; the reflectance (3x the white
    phantom) is not skin, so the estimator refuses it."""
    cal, dev = _unit()
    press = dev.press(np.full(6, 3.0), np.full(6, 0.5))
    assert max(max(max(det) for det in led) for led in press.flashes) < 50000
    assert all(d < f for d, f in zip(press.led_drive, cal.led_drive, strict=True))
    r_near, r_far, flag = _convert(press, cal)
    assert flag == "" and np.allclose(r_near, 3.0, rtol=0.02)
    assert estimate_tcb(r_near, r_far).tcb_mg_dl is None


@pytest.mark.unit
def test_saturation_when_even_the_lowest_drive_clips():
    cal, dev = _unit()
    _, _, flag = _convert(dev.press(np.full(6, 400.0), np.full(6, 0.5)), cal)
    assert flag == "saturated"


@pytest.mark.unit
def test_exposure_control_lights_dark_skin_harder_and_keeps_the_near_detector_in_range():
    """Per LED, the brighter detector lands near the exposure target whatever the skin; the far
    detector of dark skin gets several times the counts the factory drive would give it."""
    cal, dev = _unit()
    light = dev.press(*_skin(dev, "light", 5.0))
    dark = dev.press(*_skin(dev, "dark", 18.0))
    for press in (light, dark):
        for led in range(6):
            near = np.mean(press.flashes[led][0]) - cal.dark_offset[0]
            drive = press.led_drive[led]
            assert drive % DRIVE_STEP_CODE == 0 and drive <= DRIVE_MAX_CODE
            if drive < DRIVE_MAX_CODE:
                assert 0.9 * EXPOSURE_TARGET_COUNTS < near < 1.1 * EXPOSURE_TARGET_COUNTS
            else:
                assert near < 1.1 * EXPOSURE_TARGET_COUNTS
    assert all(d > f for d, f in zip(dark.led_drive[:2], cal.led_drive[:2], strict=True))
    assert dark.led_drive[0] > 2 * cal.led_drive[0]


@pytest.mark.unit
def test_reflectance_scales_with_the_reported_drive():
    cal, dev = _unit()
    near, far = _skin(dev, "dark", 15.0)
    press = dev.press(near, far, temperature_c=25.0)
    r_near, r_far, flag = _convert(press, cal)
    assert flag == ""
    assert np.allclose(r_near, near, rtol=0.02, atol=1e-4)
    # reading the same counts as if taken at the factory drive is wrong by the LED's output at
    # that drive against the factory drive's: P(I) / P(I_f), P(I) = I / (1 + I / I0) (droop)
    wrong, _, _ = reflectance_from_counts(
        press.dark_before, press.dark_after, press.flashes, press.temperature_c, True,
        cal.to_dict(), cal.led_drive,
    )  # fmt: skip
    ratio = droop_factor(press.led_drive, cal.led_drive, cal.unit["droop_ma"])
    assert np.allclose(wrong, r_near * ratio, rtol=1e-9)
    assert np.all(ratio < np.asarray(press.led_drive) / np.asarray(cal.led_drive))
    for bad in ([0] * 6, [200] * 5, ["x"] * 6):
        out = reflectance_from_counts(press.dark_before, press.dark_after, press.flashes, 25.0,
                                      True, cal.to_dict(), bad)  # fmt: skip
        assert out[2] == "malformed_counts"


@pytest.mark.unit
def test_far_detector_noise_on_dark_skin_is_below_the_calibration_floor():
    """Repeated presses on one dark-skinned, jaundiced baby: the far blue reflectance scatters
    by less than the calibration file's floor (1e-4 of the phantom), thanks to the drive."""
    cal, dev = _unit()
    near, far = _skin(dev, "dark", 20.0)
    r = np.array([_convert(dev.press(near, far), cal)[1] for _ in range(60)])
    assert np.all(np.isfinite(r))
    assert np.std(r[:, 0]) < 1e-4 and np.std(r[:, 1]) < 1e-4


@pytest.mark.unit
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


@pytest.mark.unit
def test_device_with_a_calibration_from_another_unit_stays_consistent():
    cal = random_factory_calibration(3)
    dev = TcbDeviceModel(cal, seed=99)
    near, far = np.full(6, 0.4), np.full(6, 0.2)
    r_near, r_far, flag = _convert(dev.press(near, far, temperature_c=25.0), cal)
    assert flag == ""
    assert np.allclose(r_near, near, rtol=0.02) and np.allclose(r_far, far, rtol=0.05)


def _firmware_measure(scene, factory_drive):
    """The firmware's measure() under the MicroPython Unix port, on the simulation HAL."""
    import json
    from pathlib import Path

    from simulators.fleet import FIRMWARE_DIR
    from tests.harness.micropython import run_micropython

    script = Path(__file__).parent / "mpy" / "tcb_cycle_check.py"
    job = json.dumps({"scene": scene, "factory_drive": list(factory_drive)})
    # in the fleet's heap (simulators/fleet.py HEAP): the script imports main.py first, as a
    # board runs it, so the store is taken before the heap fragments (with the HAL imported
    # first the 16 KiB store needed 136 KiB, and more from a longer path: it failed in CI)
    return json.loads(run_micropython(script, FIRMWARE_DIR, stdin=job))


@pytest.mark.system
@pytest.mark.parametrize("group,bili", [("light", 3.0), ("dark", 20.0)])
def test_firmware_cycle_is_the_device_models_cycle(group, bili):
    """With the noise switched off, the firmware's exposure control and the device model's
    choose the same drives and read the same counts: the benchmark measures the firmware."""
    cal, dev = _unit()
    scene = dev.scene(*_skin(dev, group, bili), temperature_c=25.0)
    scene.update(read_noise=[0.0, 0.0], shot=[0.0, 0.0])
    fw = _firmware_measure(scene, cal.led_drive)
    model = dev.measure(scene)
    assert tuple(fw["led_drive"]) == model.led_drive
    assert fw["flashes"] == model.flashes
    assert tuple(fw["dark_before"]) == model.dark_before
    assert fw["bits"] == 1  # contact, nothing else
    r_near, r_far, flag = _convert(model, cal)
    assert flag == ""


@pytest.mark.system
def test_firmware_flags_flicker_and_the_gateway_gives_no_number():
    cal, dev = _unit()
    scene = dev.scene(*_skin(dev, "light", 8.0), ambient=0.02)
    fw = _firmware_measure(scene, cal.led_drive)
    r_near, r_far, flag = reflectance_from_counts(
        fw["dark_before"], fw["dark_after"], fw["flashes"], fw["temperature_c"], True,
        cal.to_dict(), fw["led_drive"],
    )  # fmt: skip
    assert flag == "flashes_disagree"
    assert estimate_tcb(r_near, r_far).tcb_mg_dl is None


@pytest.mark.unit
def test_flash_noise_follows_the_photon_transfer_model():
    """Flash-to-flash scatter = shot noise + read noise + quantisation, nothing tuned on top;
    a dark frame (8 conversions) is sqrt(8) quieter than one conversion."""
    from simulators.tcb_device import (
        ADC_STEP_COUNTS,
        DARK_CONVERSIONS,
        READ_NOISE_COUNTS,
        SHOT_VARIANCE_PER_COUNT,
    )

    cal, dev = _unit()
    presses = [dev.press(np.full(6, 0.5), np.full(6, 0.05)) for _ in range(200)]
    for det in (0, 1):
        counts = np.array([[p.flashes[led][det] for led in range(6)] for p in presses], float)
        light = counts.mean(axis=(0, 2)) - cal.dark_offset[det]
        sd = counts.std(axis=2, ddof=1).mean(axis=0) / 0.94  # E[s] = 0.94 sigma for n = 5
        model = np.sqrt(
            SHOT_VARIANCE_PER_COUNT[det] * light
            + READ_NOISE_COUNTS[det] ** 2
            + ADC_STEP_COUNTS**2 / 12
        )
        assert np.allclose(sd, model, rtol=0.1)
        dark = np.array([p.dark_before[det] for p in presses], float)
        assert np.std(dark) < 1.3 * READ_NOISE_COUNTS[det] / np.sqrt(DARK_CONVERSIONS) + 0.3


@pytest.mark.system
def test_dark_skin_through_the_firmware_gives_a_number():
    """Noise on: a dark-skinned, jaundiced baby measured by the firmware's own cycle (drives
    chosen under MicroPython) is read, not flagged."""
    cal, dev = _unit()
    near, far = _skin(dev, "dark", 18.0)
    fw = _firmware_measure(dev.scene(near, far), cal.led_drive)
    assert fw["bits"] == 1
    assert fw["led_drive"][0] == DRIVE_MAX_CODE  # blue on dark skin: the LED's limit
    r_near, r_far, flag = reflectance_from_counts(
        fw["dark_before"], fw["dark_after"], fw["flashes"], fw["temperature_c"], True,
        cal.to_dict(), fw["led_drive"],
    )  # fmt: skip
    assert flag == ""
    assert np.allclose(r_near, near, rtol=0.03, atol=2e-4)
    assert np.allclose(r_far[1:], far[1:], rtol=0.05, atol=1e-4)
    # 450 nm at the far detector reads a few tens of counts above dark on this skin, so its
    # own noise is large: over noise seeds 1-20 two of them read it 17 % low and 16 % high
    # (the 5 % this test asked of it made the test fail about one run in ten; the firmware's
    # noise is now seeded, tests/mpy/tcb_cycle_check.py)
    assert abs(r_far[0] / far[0] - 1) < 0.25, r_far[0] / far[0]
    assert estimate_tcb(r_near, r_far).tcb_mg_dl is not None
