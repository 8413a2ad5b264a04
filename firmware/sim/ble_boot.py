# Start a device's main.py under the Unix port with its BLE radio already loaded, as on a board
# where radio_ble is frozen into flash and the NimBLE host runs outside the MicroPython heap:
# the app then sizes its buffers from a heap that already holds them.
#   micropython -X heapsize=192K firmware/sim/ble_boot.py firmware/<kind>/main.py device.json
# bluetooth_sim becomes the `bluetooth` module; the settings' radio_kind "ble" selects it.
import sys

_here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.append(_here)  # firmware/sim: bluetooth_sim
sys.path.append(_here + "/../lib")  # radio_ble
import bluetooth_sim

sys.modules["bluetooth"] = bluetooth_sim
import radio_ble  # noqa: E402, F401

sys.argv.pop(0)
_main = sys.argv[0]
with open(_main) as _f:
    _code = compile(_f.read(), _main, "exec")  # the source is freed before the app sizes its heap
exec(_code, {"__name__": "__main__", "__file__": _main})
