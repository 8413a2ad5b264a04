"""The README's demo: readings reach the subscriber within 10 s of start, over each radio."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.system, pytest.mark.alone]  # a wall-clock deadline


@pytest.mark.parametrize("radio", ["sim", "ble", "serial"])
def test_demo_shows_fhr_and_bilirubin_within_10_seconds(radio):
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--seconds", "14", "--radio", radio],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first_fhr = first_tcb = None
    page = None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        now = time.monotonic() - t0
        if first_fhr is None and re.search(r"FHR +\d+\.\d bpm", line):
            first_fhr = now
        if first_tcb is None and "TcB" in line:
            first_tcb = now
        m = re.search(r"nurse view: (http://\S+)", line)
        if m and page is None:
            with urllib.request.urlopen(m.group(1) + "login", timeout=10) as resp:
                page = (resp.status, resp.read().decode())
    assert proc.wait(60) == 0, "\n".join(lines)
    assert first_fhr is not None and first_fhr < 10, lines
    assert first_tcb is not None and first_tcb < 10, lines
    assert lines[-1] == "demo stopped"
    assert page is not None and page[0] == 200 and "password" in page[1].lower()
    assert not any("Traceback" in x for x in lines)
