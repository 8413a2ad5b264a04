"""The firmware in provisioning mode, its console on a pseudo-terminal as on a USB serial port."""

from __future__ import annotations

import json
import os
import subprocess
import tty
from contextlib import contextmanager
from pathlib import Path

from simulators.fleet import FIRMWARE_DIR
from tests.harness.micropython import firmware_argv


@contextmanager
def provisioning_consoles(tmp_path: Path):
    """Yields `start(kind, settings=None)`, which runs the firmware of `kind` in provisioning
    mode (its settings file written first when given) with its console on the master side of a
    pty, and returns (the slave's path, which is what the host sees, like /dev/ttyACM0; the
    settings file; the process). Every one is ended when the block ends."""
    procs = []

    def start(kind: str, settings: dict | None = None):
        path = tmp_path / f"{kind}.json"
        if settings is not None:
            path.write_text(json.dumps(settings))
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing before the host opens the port
        proc = subprocess.Popen(
            firmware_argv(tmp_path, FIRMWARE_DIR / kind / "main.py", path, "provision"),
            stdin=master, stdout=master, stderr=subprocess.PIPE, cwd=tmp_path,
        )  # fmt: skip
        os.close(master)
        procs.append((proc, slave))
        return os.ttyname(slave), path, proc

    try:
        yield start
    finally:
        for proc, slave in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            os.close(slave)


def gateway_toml(tmp_path: Path, gateway_id: str = "gw-ward3") -> str:
    """A minimal perimon.toml (the gateway's id and data directory) for `perimon provision`."""
    cfg = tmp_path / "perimon.toml"
    cfg.write_text(f'[gateway]\nid = "{gateway_id}"\ndata_dir = "{tmp_path / "gw"}"\n')
    return str(cfg)
