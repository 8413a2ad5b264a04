# Simulation HAL of the jaundice meter for the Unix port. The simulator sends each press as the
# light on the photodiodes (simulators/tcb_device.py, TcbDeviceModel.scene: dark offsets, counts
# per LED drive code for each LED and photodiode and the LEDs' droop, ambient light and its mains
# flicker, the noise model), then closes the contact switch; this HAL turns each LED flash the firmware asks for,
# at the drive it chooses, into ADC counts with the same arithmetic as the device model.
import asyncio
import json
import math
import random
import struct
import sys

# The simulation's own modules (sim_feed, radio_sim, bluetooth_sim) are in firmware/sim, which a
# board never holds: this HAL is what puts them on the path.
sys.path.append((__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/../sim")

import board_radio
from board_sim import cpu_ms, note_reset, reset, reset_cause, watchdog  # noqa: F401
import sim_feed
from micropython import const

DRIVE_STEP = const(4)  # LED driver codes (0.1 mA) per DAC step
DRIVE_MAX = const(1020)  # 102 mA (docs/jaundice.md, "Exposure control")
SATURATION = const(65000)  # counts at or above this are clipped (16-bit, within 0.8 %)
_DARK_CONVERSIONS = const(8)  # per photodiode and dark frame: ~20 ms, two flicker periods
_CONVERSION_S = 1.0 / 860.0 + 0.2e-3  # ADC conversion + bus transfer
_SETTLE_S = 0.4e-3
_ADC_MAX = const(65535)

_state = {"mv": 4000, "contact": False, "scene": None, "t": 0.0}
_contact_ev = asyncio.Event()
_scene_ev = asyncio.Event()


def _battery(b):
    _state["mv"] = struct.unpack("<H", b)[0]


def _contact(b):
    _state["contact"] = bool(b[0])
    _contact_ev.set()


def _press(b):
    _state["scene"] = json.loads(b)
    _state["t"] = 0.0
    _scene_ev.set()


async def settled():
    """The front end is ready to measure: here, once the simulator has sent the first scene
    (the probe in its holder, over the built-in white tile)."""
    await _scene_ev.wait()


def fixture(settings_path):
    """The factory's calibration fixture: the simulated fixture writes the scene of whatever
    target the probe sits on to <device.json>.fixture before each MEASURE."""
    with open(settings_path + ".fixture") as f:
        _press(f.read())


feed = sim_feed.Feed(
    {sim_feed.CH_BATTERY: _battery, sim_feed.CH_CONTACT: _contact, sim_feed.CH_PRESS: _press}
)


def contact():
    return _state["contact"]


async def wait_contact(closed):
    while _state["contact"] != closed:
        _contact_ev.clear()
        await _contact_ev.wait()


def _gauss():
    u = random.random() or 1e-12  # Box-Muller
    return math.sqrt(-2.0 * math.log(u)) * math.cos(2.0 * math.pi * random.random())


def _convert(det, light):
    """One ADC conversion of photodiode det (0 near, 1 far) with `light` counts from the LEDs."""
    s = _state["scene"]
    t = _state["t"]
    _state["t"] = t + _CONVERSION_S
    amb = s["ambient"][det] * (
        1.0 + s["flicker_depth"] * math.sin(2 * math.pi * s["flicker_hz"] * t + s["phase"])
    )
    light = max(light + amb, 0.0)
    sigma = math.sqrt(s["shot"][det] * light + s["read_noise"][det] ** 2)
    v = s["dark"][det] + light + sigma * _gauss()
    step = s["step"]
    return int(min(_ADC_MAX, max(0, step * round(v / step))))


def read_dark():
    """Both photodiodes with every LED off: (near, far) counts, each the mean of several
    conversions over about two mains flicker periods."""
    if _state["scene"] is None:
        return (0, 0)
    _state["t"] += _SETTLE_S
    acc = [0, 0]
    for _ in range(_DARK_CONVERSIONS):
        acc[0] += _convert(0, 0.0)
        acc[1] += _convert(1, 0.0)
    half = _DARK_CONVERSIONS // 2
    return ((acc[0] + half) // _DARK_CONVERSIONS, (acc[1] + half) // _DARK_CONVERSIONS)


def flash(led, drive):
    """Pulse one LED at `drive` (codes of 0.1 mA) and read both photodiodes: (near, far)."""
    s = _state["scene"]
    if s is None:
        return (0, 0)
    _state["t"] += _SETTLE_S
    per = s["per_code"][led]
    droop = s.get("droop_code")  # LED output P(I) = I / (1 + I / I0): droop at high current
    light = drive / (1.0 + drive / droop[led]) if droop else drive
    return (_convert(0, per[0] * light), _convert(1, per[1] * light))


def temperature_c():
    s = _state["scene"]
    return s["temperature_c"] if s else 25.0


def battery_mv():
    if _radio[0] is not None:  # the Battery service follows the gauge
        _radio[0].set_battery((_state["mv"] - 3300) * 100 // 850)
    return _state["mv"]


_radio = [None]


def make_radio(settings, adv):
    if settings.get("radio_kind") == "serial":  # the USB cable: a tty, as the board's choice
        _radio[0] = board_radio.make_radio(settings, adv)
    else:  # the socket link, or radio_ble on the simulated `bluetooth` module
        import radio_sim

        _radio[0] = radio_sim.make_radio(settings, adv)
    return _radio[0]


def background_tasks():
    return [feed.run()]


def stopped():
    return feed.eof
