# Run under the MicroPython Unix port: firmware/lib/supervisor.py with a HAL that records what
# it is asked (the watchdog's feeds, notes, resets). argv: firmware dir. Prints one JSON line.
import sys

sys.path.append(sys.argv[1] + "/lib")
sys.path.append(sys.argv[1] + "/fetal_heart")
import asyncio
import json
import time

import supervisor


class Reset(Exception):
    pass


class Hal:
    def __init__(self):
        self.fed = 0
        self.notes = []
        self.resets = []

    def reset_cause(self):
        return "watchdog", "task doppler ended"

    def cpu_ms(self):
        return time.ticks_ms()

    def watchdog(self, timeout_ms):
        self.timeout = timeout_ms
        hal = self

        class Wdt:
            def feed(self):
                hal.fed += 1

        return Wdt()

    def note_reset(self, note):
        self.notes.append(note)

    def reset(self, note):
        self.resets.append(note)
        raise Reset(note)  # a board never comes back from machine.reset()


out = {}
log = []


async def ends_after(ms):
    await asyncio.sleep_ms(ms)


async def forever():
    while True:
        await asyncio.sleep_ms(10)


async def blocks(ms):
    await asyncio.sleep_ms(100)
    time.sleep_ms(ms)  # a long computation holding the loop
    while True:
        await asyncio.sleep_ms(10)


async def a_task_ends():
    hal = Hal()
    sup = supervisor.Supervisor(hal, log=log.append)
    out["boot_line"] = log[0]
    sup.start("radio", forever())
    sup.start("doppler", ends_after(1500))
    sup.start("slow", blocks(150))
    runner = asyncio.create_task(sup.run())
    await asyncio.sleep_ms(3000)
    out["supervisor_done"] = runner.done()  # it stopped: no more feeding
    out["fed_before"] = hal.fed  # about once a second until the task ended
    await asyncio.sleep_ms(1500)
    out["fed_after"] = hal.fed
    out["notes"] = hal.notes
    out["wdt_ms"] = hal.timeout
    out["lag_max_ms"] = sup.lag_max_ms
    out["log"] = log[1:]


raising = Hal()


async def a_task_raises():
    sup = supervisor.Supervisor(raising, log=log.append)

    async def fails():
        await asyncio.sleep_ms(50)
        raise ValueError("bad")

    asyncio.get_event_loop().set_exception_handler(sup.on_exception)
    sup.start("status", fails())
    await asyncio.sleep_ms(500)


asyncio.run(a_task_ends())
try:
    asyncio.run(a_task_raises())
except Reset:
    pass  # the handler's reset leaves the loop, as machine.reset() would
out["resets"] = raising.resets
hal = Hal()


def main_fails():
    raise OSError(5)


try:
    supervisor.boot(hal, main_fails)
except Reset:
    pass
out["boot_resets"] = hal.resets


# A control write the app fails on is dropped, printed and counted: the radio's task goes on.
import link as L  # noqa: E402
import protocol as p  # noqa: E402
from framestore import FrameStore  # noqa: E402


class Radio:
    connected = True
    mtu = 247
    on_write = None


def failing(op, rid, args):
    raise KeyError("app bug")


lk = L.Link(Radio(), FrameStore(4096, 32), p.DT_FETAL_HEART, 1, failing)
lk._on_write(p.encode_frame(0, 0, p.S_CONTROL, 0, 1, 0, bytes((p.OP_GET_INFO, 1))))
out["write_errors"] = lk.write_errors
print(json.dumps(out))
