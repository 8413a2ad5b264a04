# Run under the MicroPython Unix port: the fetal monitor's button classifier (firmware/lib/
# presses.py) fed edges and polled as a board's HAL does, with made-up times. argv: firmware/lib.
# Prints JSON: each scenario's presses as [kind, ms the press began].
import json
import sys

sys.path.append(sys.argv[1])
import time

from presses import Presses

POLL_MS = 50  # the button task's poll


def run(edges, until_ms, start_down=False):
    """`edges`: [(ms, pin reads pressed after it)]; the task polls every POLL_MS from 0."""
    b = Presses()
    down = start_down
    out = []
    pending = list(edges)
    for now in range(0, until_ms, 5):
        while pending and pending[0][0] <= now:
            at, down = pending.pop(0)
            b.edge(at)
        if now % POLL_MS == 0:
            got = b.poll(now, down, time.ticks_diff)
            if got is not None:
                out.append(list(got))
    return out


chatter = [(1000, True), (1005, False), (1010, True), (1020, True)]  # bouncing for 20 ms
print(json.dumps({
    "short": run([(1000, True), (1300, False)], 4000),
    "long": run([(1000, True), (4500, False)], 6000),
    "tap": run([(1000, True), (1020, False)], 2000),
    "bounce": run(chatter + [(1400, False), (1405, True), (1410, False)], 3000),
    "held_on": run([(1500, False)], 3000, start_down=True),
}))  # fmt: skip
