# Simulation HAL of the jaundice meter for the Unix port. The simulator sends each press as the
# counts the photodiodes will produce (dark frames and five flashes per LED and detector, from
# simulators/tcb_device.py), then closes the contact switch; the firmware reads them back in the
# order the real measurement cycle drives the LEDs and ADC.
import asyncio
import json
import struct

import board_radio
import sim_feed

_state = {"mv": 4000, "contact": False, "scene": None, "dark_reads": 0, "flash_i": {}}
_contact_ev = asyncio.Event()


def _battery(b):
    _state["mv"] = struct.unpack("<H", b)[0]


def _contact(b):
    _state["contact"] = bool(b[0])
    _contact_ev.set()


def _press(b):
    _state["scene"] = json.loads(b)
    _state["dark_reads"] = 0
    _state["flash_i"] = {}


feed = sim_feed.Feed(
    {sim_feed.CH_BATTERY: _battery, sim_feed.CH_CONTACT: _contact, sim_feed.CH_PRESS: _press}
)


def contact():
    return _state["contact"]


async def wait_contact(closed):
    while _state["contact"] != closed:
        _contact_ev.clear()
        await _contact_ev.wait()


def read_dark():
    """Both photodiodes with every LED off: (near, far) counts."""
    s = _state["scene"]
    _state["dark_reads"] += 1
    if s is None:
        return (0, 0)
    d = s["dark_before"] if _state["dark_reads"] == 1 else s["dark_after"]
    return (d[0], d[1])


def flash(led, drive):
    """Pulse one LED at `drive` and read both photodiodes: (near, far) counts."""
    s = _state["scene"]
    if s is None:
        return (0, 0)
    i = _state["flash_i"].get(led, 0)
    _state["flash_i"][led] = i + 1
    f = s["flashes"][led]
    return (f[0][i % len(f[0])], f[1][i % len(f[1])])


def temperature_c():
    s = _state["scene"]
    return s["temperature_c"] if s else 25.0


def battery_mv():
    if _radio[0] is not None:  # the Battery service follows the gauge
        _radio[0].set_battery((_state["mv"] - 3300) * 100 // 850)
    return _state["mv"]


_radio = [None]


def make_radio(settings, adv):
    _radio[0] = board_radio.make_radio(settings, adv)  # socket, BLE or a USB cable (a tty)
    return _radio[0]


def background_tasks():
    return [feed.run()]


def stopped():
    return feed.eof
