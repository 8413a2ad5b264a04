"""Board targets (firmware/lib/pins.py, chosen by firmware/lib/board.py): every pin map keeps the
chip's rules (no strapping, flash, PSRAM, console or USB pin; analogue inputs on ADC1; no DAC
on the ESP32-S3), each HAL sets up exactly its board's pins, and a board with PSRAM keeps over
7 minutes in the fetal monitor's resend store."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from simulators.fleet import FIRMWARE_DIR
from tests.harness.micropython import run_micropython

MPY = Path(__file__).parent / "mpy"
PINS = runpy.run_path(str(FIRMWARE_DIR / "lib" / "pins.py"))
MAPS = {"fetal_heart": PINS["FETAL_HEART"], "jaundice": PINS["JAUNDICE"]}
TARGETS = ("esp32_wroom", "esp32_wrover", "esp32_s3")
# Signed ADPCM Doppler at MTU 247 (438 samples, 246 bytes stored) and PPG (25 samples, 74).
BYTES_PER_S = 4000 / 438 * 246 + 2 * 74
FRAMES_PER_S = 4000 / 438 + 2


@pytest.mark.unit
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("device", sorted(MAPS))
def test_pin_maps_keep_the_chips_rules(device, target):
    pins = MAPS[device][target]
    used = list(pins.values())
    assert len(used) == len(set(used)), f"{device} {target}: a pin used twice"
    assert not set(used) & PINS["RESERVED"][target], (device, target)
    for key, pin in pins.items():
        if key.endswith("_adc"):
            assert pin in PINS["ADC1"][target], (device, target, key)
        if key.endswith("_in"):
            assert pin not in PINS["NO_PULL"][target], (device, target, key)  # needs a pull-up
        if "dac" in key:
            assert pin in PINS["DAC"][target], (device, target, key)
    if target != "esp32_s3":
        assert 12 not in used  # the review's case: GPIO12 sets the flash voltage at reset
    if target == "esp32_wrover":
        assert not {16, 17} & set(used)  # the PSRAM's
    if device == "jaundice":  # an LED current setpoint: the DAC, or a PWM where there is none
        assert ("led_dac" in pins) == bool(PINS["DAC"][target]), (target, pins)
        assert ("led_pwm" in pins) != ("led_dac" in pins)


@pytest.mark.system
def test_each_hal_sets_up_exactly_its_boards_pins():
    out = json.loads(run_micropython(MPY / "boards_check.py", str(FIRMWARE_DIR), str(MPY),
                                     heap="512K"))  # fmt: skip
    for target in TARGETS:
        assert out[target]["cpu_hz"] == 240_000_000
        for device, maps in MAPS.items():
            assert out[target][device] == sorted(maps[target].values()), (target, device)


@pytest.mark.system
@pytest.mark.parametrize("heap", ["4M", "8M"])  # ESP32-WROVER (4 MB PSRAM), ESP32-S3 N8R8
def test_a_psram_board_keeps_over_seven_minutes_of_doppler(heap):
    out = json.loads(run_micropython(MPY / "budget_check.py", str(FIRMWARE_DIR), heap=heap))
    held_s = min(out["store_bytes"] / BYTES_PER_S, out["slots"] / FRAMES_PER_S)
    assert out["store_bytes"] == 1 << 20, out
    assert held_s > 7 * 60, (held_s, out)  # the bytes decide, not the index (was 1024 slots)
