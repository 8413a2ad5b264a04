"""A man in the middle of a button pairing, against the real firmware under MicroPython.

The attacker sits between the gateway and the monitor. It learns the gateway's code once (by
answering the gateway's commitment itself), then plays the gateway to the monitor: if it could
commit again and again, each commitment would give it a new B, hence a new code, and it would
keep committing until the monitor's code equals the gateway's (the review found equal codes
after 2,335 re-commits in 50 s). One COMMIT per press: a second one, or an exchange left
half-way, closes the window and shows red on the monitor."""

from __future__ import annotations

import json
import subprocess

import pytest

from simulators.fleet import FIRMWARE_LINK
from tests.harness.micropython import firmware_argv

pytestmark = pytest.mark.system

_PRELUDE = """
import sys, json, hashlib
sys.path.append(%(lib)r)
import pairing

class FakeTime:
    # the window's clock, moved by the test
    now = 0
    def ticks_ms(self): return self.now
    def ticks_add(self, a, b): return a + b
    def ticks_diff(self, a, b): return a - b

clock = FakeTime()
pairing.time = clock

class Radio:
    def readvertise(self): pass

class Fb:
    pairing = False

class Hal:
    shown = []
    def led(self, c, blink): self.shown.append(c)
    def tone(self, f, ms): self.shown.append(f)

hal = Hal()
fb = Fb()
log = []
adv = {}
pr = pairing.Pairing({"id": "fh-t"}, %(path)r, None, Radio(), adv, fb, hal, log=log.append)

def step(args, rid=[0]):
    rid[0] += 1
    return pr.handle(10, rid[0], args)  # (op, rid, status, data...)
"""

_BRUTE_FORCE = """
# the code the gateway shows: the attacker learnt it by answering the gateway itself
target = "9999"
pr.press()
codes = set()
for i in range(%(tries)d):
    a = hashlib.sha256(b"attacker" + bytes((i,))).digest() * 8  # the attacker's A for this try
    r = step(bytes((1,)) + hashlib.sha256(pairing.LABEL_COMMIT + a).digest())
    if r[2] != 0:
        break
    b = b""
    for half in (0, 1):
        g = step(bytes((2, half)))
        if g[2] != 0:
            break
        b += bytes(g[3:])
    if len(b) != 256:
        break
    codes.add(pairing.code_of(a, b))  # known before revealing a: keep it or commit again
print(json.dumps({"codes": len(codes), "state": pr.state, "adv": adv.get("pairing"),
                  "red": "red" in hal.shown, "log": log,
                  "after": step(bytes((2, 0)))[2]}))
"""

_ABANDONED = """
pr.press()
a = hashlib.sha256(b"attacker").digest() * 8
step(bytes((1,)) + hashlib.sha256(pairing.LABEL_COMMIT + a).digest())
step(bytes((2, 0)))
step(bytes((2, 1)))
before = pr.state
clock.now += %(wait_ms)d  # the attacker keeps B and never reveals A: its code did not match
pr.tick()
print(json.dumps({"before": before, "state": pr.state, "red": "red" in hal.shown,
                  "fb": fb.pairing, "log": log, "open": pr.is_open()}))
clock.now += 10000
pr.tick()
print(json.dumps({"fb": fb.pairing}))
"""


def _run(tmp_path, body: str, **values: object) -> list[dict]:
    settings = tmp_path / "device.json"
    settings.write_text(json.dumps({"id": "fh-t"}))
    script = tmp_path / "mitm.py"
    argv = firmware_argv(tmp_path, script)  # run from tmp_path: the firmware is "fw" there
    values = {"lib": f"{FIRMWARE_LINK}/lib", "path": settings.name, **values}
    script.write_text((_PRELUDE + body) % values)
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr}"
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def test_a_man_in_the_middle_gets_one_code_per_button_press(tmp_path):
    (out,) = _run(tmp_path, _BRUTE_FORCE, tries=40)
    # Before: 40 re-commits gave 40 codes in one window (a 1-in-6561 match within minutes).
    assert out["codes"] == 1, out
    assert out["state"] == 0 and out["adv"] is None  # the second COMMIT closed the window...
    assert out["red"] and "PAIR closed second commit" in out["log"]  # ...and says so
    assert out["after"] == 3  # nothing more to take until the user presses again


def test_an_exchange_left_half_way_closes_the_window_and_shows_it(tmp_path):
    out, later = _run(tmp_path, _ABANDONED, wait_ms=31000)
    assert out["before"] == 2  # committed, B handed out
    assert out["state"] == 0 and not out["open"], out
    assert out["red"] and "PAIR closed abandoned" in out["log"]
    assert out["fb"]  # the red light holds the LED for a while...
    assert not later["fb"]  # ...then the usual signal-quality light comes back
