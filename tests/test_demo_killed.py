"""A demo killed with kill -9 (a closed terminal's SIGHUP does not reach a backgrounded job,
an impatient `kill -9`) leaves nothing running: its broker, D-Bus daemon, virtual BlueZ and
simulated devices end with it. Before, the broker and the D-Bus daemon ran on, orphaned."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.system


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`: their command lines, by pid (Linux /proc)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                out[int(stat.parent.name)] = cmd
        except (OSError, ValueError):
            continue  # gone meanwhile
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; its new parent reaps it


def test_a_demo_killed_with_sigkill_leaves_no_process_behind():
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--seconds", "60", "--radio", "ble"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line.rstrip())
        if "virtual devices started" in line:
            break
    kids = children(proc.pid)
    kinds = " ".join(kids.values())
    assert all(k in kinds for k in ("mosquitto", "dbus-daemon", "virtual_bluez", "micropython")), (
        kids,
        lines,
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(pid) for pid in kids):
        time.sleep(0.2)
    left = {pid: cmd for pid, cmd in kids.items() if alive(pid)}
    for pid in left:  # the test's own clean-up, should it fail
        os.kill(pid, signal.SIGKILL)
    workdir = re.search(r"(/\S*/perimon-demo-[^/\s]+)/", kinds)
    if workdir:  # the demo's temporary directory, which a killed demo cannot remove
        shutil.rmtree(workdir[1], ignore_errors=True)
    assert not left, left
