"""Firmware code under the MicroPython Unix port, with an ESP32-class heap."""

from __future__ import annotations

import subprocess
from pathlib import Path

from simulators.fleet import FIRMWARE_DIR, HEAP, micropython_binary

FIRMWARE_LIB = FIRMWARE_DIR / "lib"


def run_micropython(script: Path, *args: str, stdin: str = "", heap: str = HEAP) -> str:
    """Run a script under MicroPython (in the simulated fleet's heap unless told otherwise);
    its standard output, or a failure with its errors."""
    res = subprocess.run(
        [micropython_binary(), "-X", f"heapsize={heap}", str(script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout
