"""A private D-Bus bus, and the virtual BlueZ as a child process on it (tests, demo, benchmark)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from devtools.process import cpu_seconds, stop_process, tied_to_parent

_REPO = Path(__file__).resolve().parents[2]

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>perimon-test</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
  <limit name="max_incoming_unix_fds">1024</limit>
</busconfig>
"""


def dbus_daemon_binary() -> str | None:
    return shutil.which("dbus-daemon") or (
        "/usr/bin/dbus-daemon" if Path("/usr/bin/dbus-daemon").exists() else None
    )


class PrivateBus:
    """A dbus-daemon of our own: nothing else on it, gone when stopped."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="perimon-bus-")
            workdir = Path(self._tmp.name)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self.proc: subprocess.Popen | None = None

    def start(self, tied: bool = False) -> PrivateBus:
        """`tied`: it ends when this process does (devtools.process.tied_to_parent)."""
        daemon = dbus_daemon_binary()
        if daemon is None:
            raise FileNotFoundError("dbus-daemon is not installed (Debian package: dbus)")
        conf = self.dir / "bus.conf"
        conf.write_text(_BUS_CONFIG.format(socket=self.socket))
        self.proc = subprocess.Popen(
            tied_to_parent([daemon, f"--config-file={conf}", "--nofork", "--nopidfile",
                            "--print-address"], tied),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"dbus-daemon did not start: {self.proc.stderr.read()}")
        self.address = line.split(",")[0] if line.startswith("unix:") else self.address
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)
        if self._tmp is not None:
            self._tmp.cleanup()


class VirtualBluezProcess:
    """`python -m simulators.virtual_bluez` as a child process, for tests, demo, benchmark."""

    def __init__(self, bus_address: str, listen: str = "127.0.0.1:0", max_links: int = 7,
                 log_file: Path | None = None) -> None:  # fmt: skip
        self.bus_address = bus_address
        self.listen = listen
        self.max_links = max_links
        self.log_file = log_file
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def radio(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, tied: bool = False) -> VirtualBluezProcess:
        """`tied`: it ends when this process does (devtools.process.tied_to_parent)."""
        err = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            tied_to_parent([sys.executable, "-m", "simulators.virtual_bluez", "--bus",
                            self.bus_address, "--listen", self.listen, "--max-links",
                            str(self.max_links)], tied),
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=_REPO,
            env={**os.environ, "PYTHONPATH": str(_REPO)},
        )  # fmt: skip
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            raise RuntimeError("virtual BlueZ did not start")
        self.port = int(line[1])
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)
