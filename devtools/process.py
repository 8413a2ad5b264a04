"""Child processes the tooling starts (broker, D-Bus, virtual BlueZ): tying them to their
parent, stopping them and reading their CPU time, written once."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def tied_to_parent(argv: list[str], tied: bool) -> list[str]:
    """`argv` run so that the child gets SIGTERM when its parent dies, by SIGKILL too (Linux's
    parent-death signal, set by util-linux's setpriv and kept across exec): a demo killed with
    kill -9 left its broker and D-Bus daemon running. The signal comes when the *thread* that
    started the child ends, so only for children started from a thread that lives as long as
    the process (the demo's main thread); `tied` False, or no setpriv: `argv` unchanged."""
    setpriv = shutil.which("setpriv") if tied else None
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
