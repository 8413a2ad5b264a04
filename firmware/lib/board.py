# The board, for every device's HAL: which target this is and its pin map (pins.py), the
# clock, resets and their causes, the watchdog (docs/firmware.md, "Boards", "Supervision").
# Only the board HALs import it; under the Unix port firmware/sim/board_sim.py plays the chip.
import sys
import time

import machine
import pins
from micropython import const

_NOTE_MAX = const(64)  # bytes of the reset note kept in RTC memory
TARGETS = ("esp32_wroom", "esp32_wrover", "esp32_s3")


def target():
    """The board this image runs on, from the chip and its PSRAM as the port names them
    (sys.implementation._machine, "Generic ESP32 module with SPIRAM with ESP32", "Generic
    ESP32S3 module with ESP32S3"): the image built for a board says which it is."""
    m = sys.implementation._machine
    if "ESP32S3" in m:
        return "esp32_s3"
    return "esp32_wrover" if "SPIRAM" in m else "esp32_wroom"


def pins_of(device, name=None):
    """The pin map of `device` ("fetal_heart" or "jaundice") on this board (or on `name`)."""
    table = pins.FETAL_HEART if device == "fetal_heart" else pins.JAUNDICE
    return table[name or target()]


def full_speed():
    """240 MHz, the fastest clock of both chips: headroom for BLE, ADPCM and HMAC."""
    machine.freq(240_000_000)


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
