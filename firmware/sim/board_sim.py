# The chip under the Unix port, as firmware/lib/board.py is on a board: resets and their causes,
# and a watchdog that runs on a thread of its own, as the hardware's runs beside the CPU, so a
# loop that has stopped cannot keep it fed. A reset ends the process at once (SIGKILL from
# whichever thread, as a chip reset stops everything) after printing "RESET <cause> <note>";
# the simulator may start the device again. What RTC memory keeps on a board (the cause and the
# note) is a file beside the device's settings (<settings>.reset), read once at the next boot.
import _thread
import os
import sys
import time

from micropython import const

_POLL_MS = const(100)
_settings = sys.argv[1] if len(sys.argv) > 1 else "device.json"
_RESET_FILE = _settings.rsplit(".", 1)[0] + ".reset"
_state = {"note": "", "fed": 0, "timeout": 0}


def reset_cause():
    """(cause, note) of the last reset; ("power_on", "") after a start from nothing."""
    try:
        with open(_RESET_FILE) as f:
            cause, note = (f.read().split("\n", 1) + [""])[:2]
        os.remove(_RESET_FILE)
        return cause, note
    except OSError:
        return "power_on", ""


def cpu_ms():
    """The process's CPU time in ms: the host's other work is not the firmware's."""
    return int(time.clock() * 1000)


def note_reset(note):
    _state["note"] = note


def _reset(cause, note):
    with open(_RESET_FILE, "w") as f:
        f.write(cause + "\n" + note)
    print("RESET %s %s" % (cause, note))
    with open("/proc/self/stat") as f:
        pid = f.read().split()[0]
    os.system("kill -9 " + pid)
    while True:  # until the signal lands
        time.sleep_ms(100)


def reset(note):
    """machine.reset(): a reset the firmware asked for (cause "hard", as on an ESP32)."""
    _reset("hard", note)


class _Watchdog:
    def feed(self):
        _state["fed"] = time.ticks_ms()


def _watch():
    while True:
        time.sleep_ms(_POLL_MS)
        if time.ticks_diff(time.ticks_ms(), _state["fed"]) > _state["timeout"]:
            _reset("watchdog", _state["note"])


def watchdog(timeout_ms):
    _state["timeout"] = timeout_ms
    _state["fed"] = time.ticks_ms()
    _thread.start_new_thread(_watch, ())
    return _Watchdog()
