# Supervision (docs/firmware.md): the app's long-running tasks are started here and watched.
# The hardware watchdog is fed only while every one of them runs and the loop keeps time; an
# exception that no one awaited resets the board (a monitor limping on without its sender or
# its ADC task is worse than one that is back in a second, and says why in its device info);
# the loop's worst lateness is measured, against a budget of half the I2S DMA buffer.
# The HAL provides watchdog(ms) -> .feed(), reset(note) (never returns), note_reset(note) (kept
# for the next boot: RTC memory on a board), reset_cause() -> (cause, note) and cpu_ms(): the
# time the firmware has run (on a board the wall clock: the interpreter owns its core; under
# the Unix port the process's CPU time, so a host that runs other work does not pass for a
# loop the firmware held).
import asyncio
import sys
import time

from micropython import const

# The longest the loop may stall before the board resets: above pairing's two 2048-bit
# exponentiations, which hold the loop for seconds on an ESP32 (docs/firmware.md).
WATCHDOG_MS = const(8000)
_TICK_MS = const(20)  # the lateness probe's period
_FEED_MS = const(1000)


class Supervisor:
    def __init__(self, hal, log=print):
        self.hal = hal
        self.log = log
        self.tasks = []  # (name, Task), the app's tasks that must run for good
        self.lag_max_ms = 0  # the loop's worst lateness since boot, caused by the firmware
        self.lag_wall_max_ms = 0  # ... as the wall clock saw it (a simulation host's pauses too)
        self.reset_cause, self.reset_note = hal.reset_cause()
        self.stopping = None  # () -> True when the app is being stopped on purpose (simulation)
        log("BOOT reset_cause %s %s" % (self.reset_cause, self.reset_note))

    def start(self, name, coro):
        """Start a task that must run as long as the device does."""
        task = asyncio.create_task(coro)
        self.tasks.append((name, task))
        return task

    def on_exception(self, loop, context):
        """asyncio's exception handler: a task raised and nobody awaited it."""
        exc = context.get("exception")
        self.log("EXCEPTION " + context.get("message", ""))
        if exc is not None:
            sys.print_exception(exc)
        self.hal.reset("exception: %s" % (repr(exc)[:40],))

    def _dead(self):
        for name, task in self.tasks:
            if task.done():
                return name
        return None

    async def run(self):
        """Feed the watchdog while the app is whole; measure the loop's lateness."""
        wdt = self.hal.watchdog(WATCHDOG_MS)
        last = fed = time.ticks_ms()
        last_cpu = self.hal.cpu_ms()
        while True:
            await asyncio.sleep_ms(_TICK_MS)
            now = time.ticks_ms()
            cpu = self.hal.cpu_ms()
            wall = time.ticks_diff(now, last) - _TICK_MS
            lag = min(wall, time.ticks_diff(cpu, last_cpu))  # late, and running meanwhile
            last = now
            last_cpu = cpu
            if wall > self.lag_wall_max_ms:
                self.lag_wall_max_ms = wall
            if lag > self.lag_max_ms:
                self.lag_max_ms = lag
                self.log("LOOP lag_max_ms %d wall_ms %d" % (lag, self.lag_wall_max_ms))
            dead = self._dead()
            if dead is not None and not (self.stopping and self.stopping()):
                note = "task %s ended" % dead
                self.log("SUPERVISOR " + note + ": the watchdog will reset")
                self.hal.note_reset(note)
                return  # no more feeding: the watchdog resets the board
            if time.ticks_diff(now, fed) >= _FEED_MS:
                wdt.feed()
                fed = now


def boot(hal, start):
    """Run the app (`start()`: asyncio.run(main), or the provisioning console) for good. On a
    board nothing may end in the REPL, which would take the UART the serial radio and the
    provisioning console use: Ctrl-C is data, and an exception or a return resets."""
    import micropython

    micropython.kbd_intr(-1)
    try:
        start()
    except Exception as e:  # the last barrier: on a board the REPL must never get the UART
        sys.print_exception(e)
        hal.reset("main: %s" % (repr(e)[:40],))
    if sys.platform == "esp32":
        hal.reset("main returned")  # a board's app never ends (provisioning: boot with the key)
