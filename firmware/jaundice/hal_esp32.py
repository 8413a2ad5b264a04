# ESP32 HAL of the jaundice meter. Six LEDs (450-650 nm) are driven through a constant-current
# DAC and a 1-of-8 LED switch; two photodiode transimpedance amplifiers (near 0.7 mm, far
# 2.0 mm) go to a 16-bit I2C ADC (ADS1115 class); a pressure switch closes on skin contact; an
# I2C temperature sensor sits by the LEDs. Pins: the board's map in firmware/lib/pins.py (the
# ESP32-S3 has no DAC: its LED setpoint is a PWM through an RC filter); addresses are the
# reference board's.
import asyncio
import time

import machine
from micropython import const

import board
import board_radio
from board import cpu_ms, note_reset, reset, reset_cause, watchdog  # noqa: F401

board.full_speed()
_P = board.pins_of("jaundice")
_PWM_HZ = const(40000)  # the S3's setpoint PWM, filtered by a two-pole RC (pins.py)
_ADC_ADDR = const(0x48)
_TEMP_ADDR = const(0x18)
_SETTLE_US = const(400)  # LED and amplifier settling before a conversion
_CONV_MS = const(2)  # ADS1115 at 860 SPS
_DARK_CONVERSIONS = const(8)  # per photodiode and dark frame: ~20 ms, two mains flicker periods
DRIVE_STEP = const(4)  # LED driver codes (0.1 mA) per DAC step: 8-bit DAC over 0-102 mA
DRIVE_MAX = const(1020)  # 102 mA for ~20 ms per LED: mid-power LEDs (docs/jaundice.md)
# The ADC runs on its +-4.096 V range (125 uV per code, counts = code x 2); on a 3.3 V supply
# the amplifiers' outputs stop near 3.2 V = 51200 counts, so that is where clipping starts.
SATURATION = const(50000)

_i2c = machine.I2C(0, sda=machine.Pin(_P["i2c_sda"]), scl=machine.Pin(_P["i2c_scl"]), freq=400_000)
_contact = machine.Pin(_P["contact_in"], machine.Pin.IN, machine.Pin.PULL_UP)
_led_en = machine.Pin(_P["led_en"], machine.Pin.OUT, value=0)
_led_sel = [
    machine.Pin(_P[k], machine.Pin.OUT, value=0) for k in ("led_sel0", "led_sel1", "led_sel2")
]
if "led_dac" in _P:  # the classic ESP32's DAC
    _dac = machine.DAC(machine.Pin(_P["led_dac"]))
    _setpoint = _dac.write
else:  # an 8-bit setpoint as a PWM duty, filtered to a voltage
    _pwm = machine.PWM(machine.Pin(_P["led_pwm"]), freq=_PWM_HZ, duty_u16=0)

    def _setpoint(code):
        _pwm.duty_u16(code * 257)


_bat_adc = machine.ADC(machine.Pin(_P["battery_adc"]), atten=machine.ADC.ATTN_11DB)
_radio = [None]
_stop = asyncio.Event()


def _convert(channel):
    """One single-shot conversion of an ADC input (0 near, 1 far), as unsigned counts."""
    mux = 4 + channel  # AINx against GND
    config = 0x8000 | (mux << 12) | (1 << 9) | 0x0100 | (7 << 5) | 0x0003  # +-4.096 V, 860 SPS
    _i2c.writeto_mem(_ADC_ADDR, 1, bytes((config >> 8, config & 0xFF)))
    time.sleep_ms(_CONV_MS)
    hi, lo = _i2c.readfrom_mem(_ADC_ADDR, 0, 2)
    v = (hi << 8) | lo
    return 0 if v & 0x8000 else v * 2  # single-ended: negative means below ground, 0


def contact():
    return _contact.value() == 0


async def wait_contact(closed):
    while contact() != closed:
        await asyncio.sleep_ms(20)


def read_dark():
    """Both photodiodes, LEDs off: the mean of several conversions each, which spans about two
    mains flicker periods, so the dark level is the ambient's average, not one phase of it."""
    _led_en.value(0)
    time.sleep_us(_SETTLE_US)
    near = far = 0
    for _ in range(_DARK_CONVERSIONS):
        near += _convert(0)
        far += _convert(1)
    half = _DARK_CONVERSIONS // 2
    return ((near + half) // _DARK_CONVERSIONS, (far + half) // _DARK_CONVERSIONS)


def flash(led, drive):
    """Pulse one LED at `drive` (codes of 0.1 mA, a multiple of DRIVE_STEP) and read both."""
    for i, pin in enumerate(_led_sel):
        pin.value((led >> i) & 1)
    _setpoint(min(255, drive // DRIVE_STEP))
    _led_en.value(1)
    time.sleep_us(_SETTLE_US)
    near, far = _convert(0), _convert(1)
    _led_en.value(0)
    return (near, far)


async def settled():
    """LED driver, amplifiers and ADC powered and settled after start-up."""
    await asyncio.sleep_ms(50)


def fixture(settings_path):
    """The calibration fixture's target is real light under the probe: nothing to load."""


def temperature_c():
    hi, lo = _i2c.readfrom_mem(_TEMP_ADDR, 5, 2)  # MCP9808 ambient temperature register
    t = ((hi & 0x0F) << 4) + lo / 16.0
    return t - 256.0 if hi & 0x10 else t


def battery_mv():
    mv = _bat_adc.read_uv() * 2 // 1000
    if _radio[0] is not None:
        _radio[0].set_battery(max(0, min(100, (mv - 3300) * 100 // 850)))
    return mv


def make_radio(settings, adv):
    _radio[0] = board_radio.make_radio(settings, adv, board_radio.console_port)  # BLE or USB
    return _radio[0]


def background_tasks():
    return []


def stopped():
    return _stop
