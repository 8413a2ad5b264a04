"""A Mosquitto configured exactly as deploy/mosquitto/ (TLS, client authentication, per-gateway
ACL), on free loopback ports, with throw-away certificates: for the security tests and trials.

Only the file locations, the ports and (unless `persistence_dir` is given) persistence differ
from the deployed configuration; the security and persistence settings are read from
deploy/mosquitto/mosquitto.conf and acl unchanged.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devtools.broker import Broker, _wait_listening, free_port, mosquitto_binary

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
_ETC = "/etc/mosquitto/perimon/"


@dataclass
class TlsBroker:
    broker: Broker
    cert_port: int  # TLS, client certificate required (CN = username = client id)
    password_port: int  # TLS, username and password (username = client id)
    hospital_port: int  # TLS, the hospital's services: username and password, any client id
    certs: Path  # ca.crt, server.*, and NAME.crt / NAME.key per client

    def stop(self) -> None:
        self.broker.stop()


def make_certs(out: Path, names: list[str]) -> Path:
    """A throw-away CA, server certificate and client certificates (deploy script)."""
    subprocess.run(
        ["sh", str(DEPLOY / "make-test-certs.sh"), str(out), *names],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return out


def make_passwords(path: Path, users: dict[str, str]) -> None:
    exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    path.write_text("")
    for user, password in users.items():
        subprocess.run([str(exe), "-b", str(path), user, password], check=True, timeout=30)


def start_tls_broker(workdir: Path, certs: Path, passwords: dict[str, str],
                     persistence_dir: Path | None = None,
                     hospital_passwords: dict[str, str] | None = None) -> TlsBroker:  # fmt: skip
    """Start it; with `persistence_dir`, persisting there as deployed (autosave and queue
    settings included), else without persistence. `passwords` for the gateways' password
    listener, `hospital_passwords` for the hospital services' one."""
    workdir.mkdir(parents=True, exist_ok=True)
    exe = mosquitto_binary()
    if exe is None:
        raise RuntimeError("Mosquitto is not installed")
    etc = workdir / "etc"
    etc.mkdir(exist_ok=True)
    for name in ("ca.crt", "server.crt", "server.key"):
        (etc / name).write_bytes((certs / name).read_bytes())
    (etc / "acl").write_text((DEPLOY / "acl").read_text())
    make_passwords(etc / "passwd", passwords)
    make_passwords(etc / "hospital-passwd", hospital_passwords or {})
    p1, p2, p3 = free_port(), free_port(), free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    conf = conf.replace(_ETC, f"{etc}/")
    conf = conf.replace("listener 8883\n", f"listener {p1} 127.0.0.1\n")
    conf = conf.replace("listener 8884\n", f"listener {p2} 127.0.0.1\n")
    conf = conf.replace("listener 8885\n", f"listener {p3} 127.0.0.1\n")
    if persistence_dir is None:
        conf = conf.replace("persistence true\n", "persistence false\n")
        conf = conf.replace("persistence_location /var/lib/mosquitto/\n", "")
    else:
        persistence_dir.mkdir(parents=True, exist_ok=True)
        conf = conf.replace("persistence_location /var/lib/mosquitto/\n",
                            f"persistence_location {persistence_dir}/\n")  # fmt: skip
        assert f"persistence_location {persistence_dir}/" in conf
    if os.geteuid() == 0:  # started as root, it would switch to a user who cannot read tmp
        conf = f"user {pwd.getpwuid(0).pw_name}\n" + conf
    assert all(f"listener {p}" in conf for p in (p1, p2, p3)) and _ETC not in conf
    path = workdir / "mosquitto.conf"
    path.write_text(conf)
    log = open(workdir / "broker.log", "ab")
    proc = subprocess.Popen([exe, "-c", str(path)], stdout=log, stderr=log)
    _wait_listening("127.0.0.1", p1, proc, 10.0)
    _wait_listening("127.0.0.1", p2, proc, 10.0)
    _wait_listening("127.0.0.1", p3, proc, 10.0)
    return TlsBroker(Broker("127.0.0.1", p1, "mosquitto", proc, "5"), p1, p2, p3, certs)
