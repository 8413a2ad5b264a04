# Run under the MicroPython Unix port: the fetal monitor's board HAL (hal_esp32.py on
# tests/mpy/fake_machine.py) given a short and a long press on its button pin, edges through
# the IRQ handler it registered, polled as the button task polls. argv: firmware dir, this
# directory. Prints JSON: the IRQ's trigger and each press as [kind, ms from its start].
import sys

sys.path.append(sys.argv[1] + "/lib")
sys.path.append(sys.argv[1] + "/fetal_heart")
sys.path.append(sys.argv[2])
import json
import time

import fake_machine

sys.modules["machine"] = fake_machine
import hal_esp32 as hal  # noqa: E402

pin = hal._button
pin.value(1)  # pulled up: not pressed


def hold(ms):
    """Press for `ms`, polling every 50 ms as the task does; the presses it gives."""
    out = []
    t0 = time.ticks_ms()
    pin.value(0)
    pin.handler(pin)  # falling edge
    while time.ticks_diff(time.ticks_ms(), t0) < ms:
        time.sleep_ms(50)
        got = hal.button()
        if got is not None:
            out.append([got[0], time.ticks_diff(got[1], t0)])
    pin.value(1)
    pin.handler(pin)  # rising edge
    for _ in range(3):
        time.sleep_ms(50)
        got = hal.button()
        if got is not None:
            out.append([got[0], time.ticks_diff(got[1], t0)])
    return out


print(json.dumps({"trigger": pin.trigger, "short": hold(300), "long": hold(2300)}))
