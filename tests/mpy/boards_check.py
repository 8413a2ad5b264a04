# Run under the MicroPython Unix port: each device's board HAL (hal_esp32.py, on
# tests/mpy/fake_machine.py) on each board target, recording the pins it sets up.
# argv: firmware dir, this directory. Prints one JSON line: {target: {device: [pins]}}.
import sys

sys.path.append(sys.argv[1] + "/lib")
sys.path.append(sys.argv[2])
import json

import fake_machine

sys.modules["machine"] = fake_machine  # before board.py imports it
import board  # noqa: E402

dac = fake_machine.DAC
out = {}
for name in board.TARGETS:
    board.target = lambda name=name: name  # the chip says which on a board
    if name == "esp32_s3":
        del fake_machine.DAC  # the S3's machine module has none
    else:
        fake_machine.DAC = dac
    out[name] = {}
    for device in ("fetal_heart", "jaundice"):
        del fake_machine.pins[:]
        sys.path.insert(0, sys.argv[1] + "/" + device)
        sys.modules.pop("hal_esp32", None)
        import hal_esp32  # noqa: F401

        sys.path.pop(0)
        out[name][device] = sorted(set(p for p, _mode in fake_machine.pins))
    out[name]["cpu_hz"] = fake_machine.freq()
print(json.dumps(out))
