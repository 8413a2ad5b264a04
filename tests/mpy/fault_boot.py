# Start a device's main.py under the Unix port with a fault to be injected through its sensor
# feed, for the supervision tests: channel 9 with body 1 raises in the feed's task (an exception
# no one awaits), with body 2 blocks the loop for 30 s (the watchdog's case).
#   micropython tests/mpy/fault_boot.py firmware/<kind>/main.py device.json
import sys
import time

sys.argv.pop(0)
sys.path.append(sys.argv[0].rsplit("/", 1)[0] + "/../sim")
import sim_feed  # noqa: E402 (after the argv shift)

_main = sys.argv[0]

CH_FAULT = 9
_init = sim_feed.Feed.__init__


def _fault(body):
    if body[0] == 1:
        raise RuntimeError("injected")
    time.sleep(30)  # the loop stops here


def _with_fault(self, handlers):
    handlers[CH_FAULT] = _fault
    _init(self, handlers)


sim_feed.Feed.__init__ = _with_fault
with open(_main) as _f:
    _code = compile(_f.read(), _main, "exec")  # the source is freed before the app sizes its heap
exec(_code, {"__name__": "__main__", "__file__": _main})
