"""The Raspberry Pi service: the unit passes systemd's own checks, and the gateway speaks
sd_notify (ready, watchdog, stopping) even while its broker is unreachable."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.broker import free_port
from tests.harness.wait import eventually

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[1]


def render_unit(tmp_path: Path) -> Path:
    text = (REPO / "deploy" / "systemd" / "perimon-gateway.service.in").read_text()
    prefix = tmp_path / "opt"  # as scripts/install-pi.sh lays it out: PREFIX/venv
    prefix.mkdir()
    (prefix / "venv").symlink_to(Path(sys.executable).parents[1])
    text = (
        text.replace("@PREFIX@", str(prefix))
        .replace("@CONFIG@", str(REPO / "docs" / "perimon.example.toml"))
        .replace("@DATA@", str(tmp_path))
    )
    unit = tmp_path / "perimon-gateway.service"
    unit.write_text(text)
    return unit


def test_unit_passes_systemd_analyze_verify(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze is part of Debian's systemd"
    unit = render_unit(tmp_path)
    assert Path(sys.executable).with_name("perimon").exists()
    res = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line for line in (res.stdout + res.stderr).splitlines() if "perimon-gateway.service" in line
    ]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr
    text = unit.read_text()
    for needed in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "WantedBy=multi-user"):
        assert needed in text


def test_unit_sandbox_scores_under_4(tmp_path):
    """systemd's own measure of how much a compromised service could reach: 8.5 before
    (only NoNewPrivileges, ProtectSystem, ProtectHome and PrivateTmp)."""
    unit = render_unit(tmp_path)
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=39", str(unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    score = float(res.stdout.rsplit("exposure level for perimon-gateway.service:", 1)[1].split()[0])
    assert score < 4.0 and res.returncode == 0, res.stdout
    assert "UMask=0077" in unit.read_text()


def test_the_gateway_makes_its_files_for_itself_only(tmp_path):
    """Another user on the gateway's host reads nothing the gateway wrote: the outbox (the
    readings not yet sent), the sessions, the history are 0600 (0644 before), whatever the
    umask it was started with."""
    cfg = tmp_path / "perimon.toml"
    data = tmp_path / "data"
    cfg.write_text(
        f'[gateway]\nid = "gw-files"\ndata_dir = "{data}"\n'
        f"[mqtt]\nport = {free_port()}\n"
        f'[radio]\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "gateway", "--config", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.umask(0o022),  # a usual login's umask
    )  # fmt: skip
    try:
        names = ("outbox.sqlite", "sessions.sqlite", "history.sqlite")
        eventually(lambda: all((data / n).exists() for n in names), 30, "no databases made")
    finally:
        proc.kill()  # (how it stops is another test's)
        proc.wait(30)
    made = list(data.rglob("*"))
    assert made
    open_to_others = {str(p.relative_to(data)): oct(p.stat().st_mode & 0o777) for p in made
                      if p.stat().st_mode & 0o077}  # fmt: skip
    assert open_to_others == {}
    assert data.stat().st_mode & 0o077 == 0


def test_gateway_notifies_ready_watchdog_and_stopping(tmp_path):
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(20)
    cfg = tmp_path / "perimon.toml"
    closed_port = free_port()  # nothing listens: the broker is unreachable
    cfg.write_text(
        f'[gateway]\nid = "gw-sd"\ndata_dir = "{tmp_path}/data"\n'
        f"[mqtt]\nport = {closed_port}\n"
        f'[radio]\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="1000000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "gateway", "--config", str(cfg)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    got = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and got.count(b"WATCHDOG=1") < 3:
            got.append(server.recv(256))
        assert got[0] == b"READY=1", got
        assert got.count(b"WATCHDOG=1") >= 3
        proc.send_signal(signal.SIGTERM)
        while b"STOPPING=1" not in got:
            got.append(server.recv(256))
        assert proc.wait(30) == 0, proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
