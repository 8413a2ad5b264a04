"""Firmware code under the MicroPython Unix port, with an ESP32-class heap."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from simulators.fleet import FIRMWARE_DIR, FIRMWARE_LINK, HEAP, link_firmware, micropython_binary

FIRMWARE_LIB = FIRMWARE_DIR / "lib"
# the firmware's lib as a script run by run_micropython names it (its folder holds the link)
RUN_LIB = f"{FIRMWARE_LINK}/lib"
MPY = Path(__file__).resolve().parents[1] / "mpy"  # the scripts the tests run on the Unix port
_MPY_LINK = "mpy"


def firmware_argv(workdir: Path, *args: str | Path, heap: str = HEAP) -> list[str]:
    """The command line that runs `args` under the Unix port from `workdir`, as the fleet runs
    its devices: paths into the firmware and tests/mpy go through short links made in `workdir`
    and paths inside it become relative. Every module keeps its file name in the heap, so with
    whole paths the heap a script needs grew with the folder perimon was cloned into (the
    jaundice meter's 16 KiB store found no room at 136 KiB under /check/work/main)."""
    link = workdir / _MPY_LINK
    if not link.is_symlink():
        link.symlink_to(MPY, target_is_directory=True)
    roots = [(FIRMWARE_DIR.resolve(), link_firmware(workdir)), (MPY, _MPY_LINK),
             (workdir.resolve(), ".")]  # fmt: skip

    def short(arg: str | Path) -> str:
        text = str(arg)
        if not text.startswith("/"):
            return text
        real = os.path.realpath(text)  # a checkout reached through a symlink too
        for root, name in roots:
            if real == str(root) or real.startswith(str(root) + "/"):
                return name + real[len(str(root)) :]
        return text

    return [micropython_binary(), "-X", f"heapsize={heap}", *(short(a) for a in args)]


def run_micropython(script: Path, *args: str | Path, stdin: str = "", heap: str = HEAP) -> str:
    """Run a script under MicroPython (in the simulated fleet's heap unless told otherwise) from
    a scratch folder (firmware_argv); its standard output, or a failure with what it printed."""
    with tempfile.TemporaryDirectory(prefix="mpy-") as scratch:
        res = subprocess.run(
            firmware_argv(Path(scratch), script, *args, heap=heap),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=scratch,
        )
    # the Unix port prints an uncaught exception's traceback on standard output
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr}"
    return res.stdout
