"""A local MQTT broker for the demo and the tests: Mosquitto when installed, else amqtt.

Production gateways connect to the hospital's broker; this exists so the demo runs on a bare
machine and the tests run against a real broker on a free loopback port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devtools.process import stop_process, tied_to_parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


@dataclass
class Broker:
    host: str
    port: int
    kind: str  # "mosquitto" | "amqtt"
    proc: subprocess.Popen[bytes]
    protocol: str  # the newest MQTT version it speaks: "5" or "3.1.1"

    def stop(self) -> None:
        stop_process(self.proc)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"MQTT broker exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"MQTT broker did not listen on {host}:{port} within {timeout_s} s")


def start_broker(
    workdir: Path, port: int | None = None, extra_conf: str = "", tied: bool = False
) -> Broker:
    """Start a broker on 127.0.0.1 (a free port unless given) and wait until it listens.
    `tied`: it ends when this process does, however it ends (devtools.process.tied_to_parent)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    exe = mosquitto_binary()
    log = open(workdir / "broker.log", "ab")
    if exe:
        conf = workdir / "mosquitto.conf"
        # As root it would drop to the mosquitto user, which also clears a parent-death signal
        keep_root = tied and os.geteuid() == 0 and "user " not in extra_conf
        as_root = f"user {pwd.getpwuid(0).pw_name}\n" if keep_root else ""
        conf.write_text(
            f"{as_root}listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"{extra_conf}"
        )
        proc = subprocess.Popen(tied_to_parent([exe, "-c", str(conf)], tied), stdout=log,
                                stderr=log)  # fmt: skip
        kind, protocol = "mosquitto", "5"
    else:
        conf = workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        amqtt = Path(sys.executable).parent / "amqtt"
        proc = subprocess.Popen(tied_to_parent([str(amqtt), "-c", str(conf)], tied), stdout=log,
                                stderr=log)  # fmt: skip
        kind, protocol = "amqtt", "3.1.1"
    _wait_listening("127.0.0.1", port, proc, 10.0)
    return Broker("127.0.0.1", port, kind, proc, protocol)
