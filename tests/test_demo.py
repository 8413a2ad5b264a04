"""The README's demo: readings reach the subscriber within 10 s of start."""

from __future__ import annotations

import re
import subprocess
import sys
import time


def test_demo_shows_fhr_and_bilirubin_within_10_seconds():
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--seconds", "14"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first_fhr = first_tcb = None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        now = time.monotonic() - t0
        if first_fhr is None and re.search(r"FHR +\d+\.\d bpm", line):
            first_fhr = now
        if first_tcb is None and "TcB" in line:
            first_tcb = now
    assert proc.wait(60) == 0, "\n".join(lines)
    assert first_fhr is not None and first_fhr < 10, lines
    assert first_tcb is not None and first_tcb < 10, lines
    assert lines[-1] == "demo stopped"
    assert not any("Traceback" in x for x in lines)
