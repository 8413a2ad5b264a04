# The chip, for every board's HAL: resets and their causes, the watchdog (docs/firmware.md,
# "Supervision"). Only the board HALs import it; under the Unix port firmware/sim/board_sim.py
# plays it.
import time

import machine
from micropython import const

_NOTE_MAX = const(64)  # bytes of the reset note kept in RTC memory
_CAUSES = {
    machine.PWRON_RESET: "power_on",
    machine.HARD_RESET: "hard",  # machine.reset() (the firmware's own), a panic, the reset pin
    machine.WDT_RESET: "watchdog",
    machine.DEEPSLEEP_RESET: "deep_sleep",
    machine.SOFT_RESET: "soft",
}


def reset_cause():
    """(cause, note): why the chip last reset, and what the firmware noted before it (RTC
    memory survives every reset but a power cut). The note is cleared for the next boot."""
    rtc = machine.RTC()
    note = bytes(rtc.memory()).decode("utf-8", "replace")
    rtc.memory(b"")
    return _CAUSES.get(machine.reset_cause(), "unknown"), note


def note_reset(note):
    """Kept for the next boot's reset_cause(): why the firmware is about to be reset."""
    machine.RTC().memory(note.encode()[:_NOTE_MAX])


def reset(note):
    """Reset the chip now, noting why. Never returns."""
    note_reset(note)
    print("RESET " + note)
    machine.reset()


def watchdog(timeout_ms):
    """The task watchdog (machine.WDT): once started it cannot be stopped; unfed for
    `timeout_ms` it resets the chip, and reset_cause() then says "watchdog"."""
    return machine.WDT(timeout=timeout_ms)


def cpu_ms():
    """The time the firmware has run: the wall clock, since the interpreter owns its core."""
    return time.ticks_ms()
