# Simulation HAL of the fetal-heart monitor for the Unix port: the ADC, PPG front end, battery
# gauge and probe-contact sense are fed by the simulator through sim_feed; the radio is a socket
# (radio_sim), the BLE GATT server on the simulated `bluetooth` module (radio_kind "ble") or a
# pseudo-terminal standing for the USB cable (radio_serial, radio_kind "serial").
import array
import asyncio
import struct
import sys
import time

# The simulation's own modules (sim_feed, radio_sim, bluetooth_sim) are in firmware/sim, which a
# board never holds: this HAL is what puts them on the path.
sys.path.append((__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/../sim")

import board_radio
from adc_clock import AdcClock
from board_sim import cpu_ms, note_reset, reset, reset_cause, watchdog  # noqa: F401
import sim_feed

_DOPPLER_HZ = 4000
_PPG_HZ = 50
_DOPPLER_BUF = 4096  # samples the simulated DMA buffer holds (1 s at 4 kHz)
_CAUGHT_UP_US = 200_000  # the simulator's pushes come every 0.1 s (simulators/fleet.py)


class _Channel:
    """A sample FIFO like an ADC's DMA ring; overflow drops the oldest, like hardware would.

    It also keeps the ADC's clock as the board's HAL does (adc_clock.py): samples are made at
    `hz` from when the reads last caught up, whether or not the process runs. While it is held
    up (a CPU-bound neighbour) the simulator's samples wait in the pipe, not in the ring, and
    the ring alone would make a backlog read late look fresh; its clock says how many samples
    are waiting (`waiting`), so the frame is stamped with its samples' time."""

    def __init__(self, cap, hz):
        self.buf = array.array("h", bytes(2 * cap))
        self.cap = cap
        self.r = 0
        self.n = 0
        self.overruns = 0  # samples dropped, all told
        self.reported = 0  # ... of which take_lost() has told
        self.ev = asyncio.Event()
        self.hz = hz
        self.clock = None  # the ADC's (AdcClock), from its first samples
        self.waiting = 0  # samples made after the block last read and not yet read

    def push(self, data):
        if self.clock is None:  # the ADC starts with its first samples
            self.clock = AdcClock(self.hz, time.ticks_us(), time.ticks_diff)
        clock = self.clock
        buf = self.buf
        cap = self.cap
        for i in range(0, len(data) - 1, 2):
            if self.n == cap:
                self.r = (self.r + 1) % cap
                self.n -= 1
                self.overruns += 1
                clock.read += 1  # made and gone: not waiting any more
            v = data[i] | (data[i + 1] << 8)
            buf[(self.r + self.n) % cap] = v - 65536 if v & 0x8000 else v
            self.n += 1
        self.ev.set()

    async def read(self, out, count):
        empty = self.n < count
        while self.n < count:
            self.ev.clear()
            await self.ev.wait()
        self.take(out, count)
        now = time.ticks_us()
        clock = self.clock  # set by the push this read waited for
        behind = clock.behind(now)
        # Caught up: the ring ran dry and the clock has no more made than this block and the
        # simulator's next two pushes (it writes every 0.1 s). Else what the ring lacks is in
        # the pipe: made while the process was held up (or the simulator late).
        if not (empty and behind <= count + _CAUGHT_UP_US // clock.us_per_sample):
            self.waiting = max(self.n, behind - count)
            clock.read += count
            return
        clock.caught_up(now, self.n)  # what the ring still holds was made before now
        self.waiting = self.n

    def newest_made_ms(self):
        """ticks_ms at which the newest sample pushed was made, by the ADC's clock: the samples
        made since and not yet pushed are still in the pipe. The simulator writes a press right
        after the samples of its moment, so this is when it was pressed, as a board's pin IRQ
        stamps it, however late this process reads its pipe."""
        if self.clock is None:
            return time.ticks_ms()
        in_pipe = max(0, self.clock.behind(time.ticks_us()) - self.n)
        return time.ticks_add(time.ticks_ms(), -(in_pipe * self.clock.us_per_sample // 1000))

    def take(self, out, count):
        """Copy the oldest `count` samples into `out`, sample by sample: no allocation."""
        buf = self.buf
        r = self.r
        cap = self.cap
        for i in range(count):
            out[i] = buf[r]
            r += 1
            if r == cap:
                r = 0
        self.r = r
        self.n -= count

    def take_lost(self):
        """Samples dropped since the last call: all older than what the ring holds now."""
        n = self.overruns - self.reported
        self.reported = self.overruns
        return n


doppler = _Channel(_DOPPLER_BUF, _DOPPLER_HZ)
ppg = _Channel(256, _PPG_HZ)
_state = {"mv": 4000, "skin": True, "speaker": False}
_presses = []  # (kind, ticks_ms) of presses the task has not taken yet


def _battery(b):
    _state["mv"] = struct.unpack("<H", b)[0]


def _contact(b):
    _state["skin"] = bool(b[0])


def _button(b):
    # The simulator says the kind (sim_feed.CH_BUTTON); a board's HAL tells it by the hold time.
    if b and len(_presses) < 8:
        _presses.append((b[0], doppler.newest_made_ms()))


feed = sim_feed.Feed(
    {
        sim_feed.CH_DOPPLER: doppler.push,
        sim_feed.CH_PPG: ppg.push,
        sim_feed.CH_BATTERY: _battery,
        sim_feed.CH_CONTACT: _contact,
        sim_feed.CH_BUTTON: _button,
    }
)


async def doppler_read(out, count):
    await doppler.read(out, count)


def doppler_lost():
    """Samples lost to overruns since the last call, all before the block just read."""
    return doppler.take_lost()


def doppler_waiting():
    """Samples made after the block just read and not yet read (see hal_esp32.py)."""
    return doppler.waiting


def doppler_first_seq():
    """A test hook, not a board's behaviour: the Doppler seq this boot starts at, 0 unless a
    test put a number in <settings>.first_seq (read once and removed, as the next boot must
    count from 0), to start a boot near the wrap its renewal prevents (firmware/lib/renewal.py)."""
    import os

    path = (sys.argv[1] if len(sys.argv) > 1 else "device.json").rsplit(".", 1)[0] + ".first_seq"
    try:
        with open(path) as f:
            seq = int(f.read())
        os.remove(path)
        return seq
    except (OSError, ValueError):
        return 0


async def ppg_read(out, count):
    await ppg.read(out, count)


def ppg_waiting():
    return ppg.waiting


def battery_mv():
    if _radio[0] is not None:  # the Battery service follows the gauge
        _radio[0].set_battery((_state["mv"] - 3300) * 100 // 850)
    return _state["mv"]


def on_skin():
    return _state["skin"]


_radio = [None]


# Indicators: every change goes to the console (the simulator reads "IND ..." lines).


def led(colour, blink):
    print("IND led %s %s" % (colour, "blink" if blink else "steady"))


def tone(freq_hz, ms):
    print("IND tone %d %d" % (freq_hz, ms))


def speaker(samples, count):
    """Doppler sound out; None switches it off. Only on/off changes are logged."""
    on = samples is not None
    if on != _state["speaker"]:
        _state["speaker"] = on
        print("IND speaker " + ("on" if on else "off"))


def button():
    """(PRESS_SHORT or PRESS_LONG, ticks_ms when it began) once per press, else None."""
    return _presses.pop(0) if _presses else None


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
