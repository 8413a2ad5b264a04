"""scripts/install-pi.sh run for real, twice, in a clean Debian 12 (bookworm) chroot, as on a
Raspberry Pi: the package from this checkout and its dependencies from PyPI, the configuration,
the service user, the systemd unit enabled at boot, the data directory; then the installed
gateway runs as its service user and writes its outbox there.

A chroot cannot boot systemd: starting at boot, restart on failure and the watchdog are checked
by `systemd-analyze verify` on the installed unit and by tests/test_systemd.py (sd_notify), not
by a running systemd. docs/home.md, "Installing on a Raspberry Pi".

The Debian base (debootstrap --variant=minbase) is cached as a tarball under
~/.cache/perimon-test/ (or $PERIMON_TEST_CACHE), keyed by suite, mirror and package list, and
so are pip's and apt's downloads: the first run takes a few minutes, later ones well under one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from devtools.broker import free_port

REPO = Path(__file__).resolve().parents[1]
SUITE = "bookworm"  # Raspberry Pi OS 12 is bookworm
MIRROR = "http://deb.debian.org/debian"
# Raspberry Pi OS Lite has these; the installer adds what else it needs (python3-venv, bluez).
BASE_PACKAGES = ("systemd", "python3", "ca-certificates")
CACHE = Path(os.environ.get("PERIMON_TEST_CACHE", Path.home() / ".cache" / "perimon-test"))
UNIT = "perimon-gateway.service"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = [
    pytest.mark.install,
    pytest.mark.skipif(os.geteuid() != 0, reason="a chroot needs root"),
]


def _base_tarball() -> Path:
    """The minimal Debian, built once by debootstrap and kept as a tarball."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    assert Path(debootstrap).exists(), "debootstrap: run scripts/bootstrap.sh --system"
    key = hashlib.sha256(f"{SUITE} {MIRROR} minbase {','.join(BASE_PACKAGES)}".encode())
    tarball = CACHE / f"debootstrap-{SUITE}-{key.hexdigest()[:12]}.tar.zst"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time
        if tarball.exists():
            return tarball
        build = CACHE / f"build-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        try:
            subprocess.run(
                [debootstrap, "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
                 SUITE, str(build), MIRROR],
                check=True, capture_output=True, timeout=400, env={"PATH": PATH},
            )  # fmt: skip
            for deb in (build / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            tmp = tarball.with_name(tarball.name + ".tmp")
            subprocess.run(["tar", "-C", str(build), "-I", "zstd -T0 -3", "-cf", str(tmp), "."],
                           check=True, timeout=200)  # fmt: skip
            tmp.rename(tarball)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return tarball


class Chroot:
    """A fresh Debian tree; commands run inside it with /proc, /dev and the download caches
    mounted in a private mount namespace (gone when the command ends)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.binds = {
            CACHE / "pip": "root/.cache/pip",
            CACHE / "apt-archives": "var/cache/apt/archives",
        }

    def popen(self, script: str, **kw) -> subprocess.Popen:
        r = str(self.root)
        mounts = [f"mount -t proc proc {r}/proc", f"mount --rbind /dev {r}/dev"]
        for host, inside in self.binds.items():
            host.mkdir(parents=True, exist_ok=True)
            (self.root / inside).mkdir(parents=True, exist_ok=True)
            mounts.append(f"mount --bind {host} {r}/{inside}")
        outer = " && ".join(mounts) + f' && exec chroot {r} /bin/bash -euc "$0"'
        env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8"}  # nothing of this machine's
        return subprocess.Popen(["unshare", "--mount", "--fork", "bash", "-euc", outer, script],
                                env=env, text=True, **kw)  # fmt: skip

    def run(self, script: str, timeout: float = 120) -> str:
        proc = self.popen(script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{script}\n{out}"
        return out

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")


@pytest.fixture
def chroot(tmp_path):
    tarball = _base_tarball()
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-I", "zstd", "-xf", str(tarball)], check=True,
                   timeout=120)  # fmt: skip
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    # certificate authorities this machine added (a site's HTTPS proxy) are trusted inside too,
    # as that site's administrator would do on a Pi
    local_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for ca in local_cas:
        shutil.copy(ca, root / "usr/local/share/ca-certificates" / ca.name)
    chroot = Chroot(root)
    if local_cas:
        chroot.run("update-ca-certificates >/dev/null")
    # the checkout as a clone has it: tracked files, and new ones not ignored
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.split(b"\0")  # fmt: skip
    dest = root / "home/pi/perimon"
    for name in filter(None, files):
        src = REPO / os.fsdecode(name)
        if src.is_file():
            (dest / src.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / src.relative_to(REPO))
    yield chroot
    shutil.rmtree(root, ignore_errors=True)  # about 1 GB with the venv: not kept for pytest


def _passwd(root: Path, name: str) -> list[str] | None:
    for line in (root / "etc/passwd").read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    return None


def _group_members(root: Path, name: str) -> list[str]:
    for line in (root / "etc/group").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == name:
            return parts[3].split(",") if parts[3] else []
    return []


@pytest.mark.timeout(900)
def test_install_script_in_a_clean_debian_chroot_twice(chroot, tmp_path):
    t0 = time.monotonic()
    # what the documentation says to type, on a Pi that has never seen perimon
    out = chroot.run("cd /home/pi/perimon && ./scripts/install-pi.sh", timeout=600)
    first_s = time.monotonic() - t0
    assert "installing Debian packages: python3-venv bluez" in out
    assert "created the service user perimon" in out
    assert "systemd is not running here" in out  # a chroot: nothing to start
    assert "config ok: gateway " in out and "radio ble" in out  # read as the service user

    # the service user: a system account without a login, in the radio and serial groups
    user = _passwd(chroot.root, "perimon")
    assert user is not None and int(user[2]) < 1000 and user[6] == "/usr/sbin/nologin", user
    uid, gid = int(user[2]), int(user[3])
    assert "perimon" in _group_members(chroot.root, "bluetooth")
    assert "perimon" in _group_members(chroot.root, "dialout")

    # the package from this checkout in its own venv, and its command
    version = chroot.run(
        "/opt/perimon/venv/bin/python -c 'import importlib.metadata as m, gateway; "
        'print(m.version("perimon"), gateway.__file__)\''
    ).split()
    want = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version[0] == want
    assert version[1].startswith("/opt/perimon/venv/lib/python3")  # installed, not the checkout
    assert "usage: perimon" in chroot.run(
        "runuser -u perimon -- /opt/perimon/venv/bin/perimon --help"
    )
    labels = chroot.run(  # the pairing labels' QR library came from PyPI too
        "/opt/perimon/venv/bin/python -c 'from gateway.cli.provision_label import write_label; "
        'write_label("/tmp/l.svg", "fh-01", "fetal_heart", bytes(16))\'; grep -c "<path" /tmp/l.svg'
    )
    assert labels.strip() == "1"

    # the configuration: written from the example, readable by the service only
    cfg_path = chroot.path("/etc/perimon/perimon.toml")
    st = cfg_path.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 0, gid)
    cfg = tomllib.loads(cfg_path.read_text())
    assert cfg["gateway"]["data_dir"] == "/var/lib/perimon"
    assert cfg["radio"]["transport"] == "ble"
    # the nurse view over HTTPS with the certificate made for it, its fingerprint printed
    web_dir = "/var/lib/perimon/web"
    assert cfg["web"] == {**cfg["web"], "enabled": True, "listen": "0.0.0.0:8443",
                          "cert_file": f"{web_dir}/nurse-view.crt",
                          "key_file": f"{web_dir}/nurse-view.key"}  # fmt: skip
    assert cfg["mqtt"]["tls"] is True
    fingerprint = (
        chroot.run(f"openssl x509 -in {web_dir}/nurse-view.crt -noout -fingerprint -sha256")
        .strip()
        .split("=")[1]
    )
    assert f"install-pi:   {fingerprint}" in out
    assert "devices" not in cfg  # the example devices are not installed
    loaded = chroot.run(
        "runuser -u perimon -- /opt/perimon/venv/bin/python -c 'from gateway.config import "
        'load_config; c = load_config("/etc/perimon/perimon.toml"); print(c.data_dir)\''
    )
    assert loaded.strip() == "/var/lib/perimon"

    # the data directory: persistent storage (not a tmpfs such as /run or /tmp), the service's
    data = chroot.path("/var/lib/perimon")
    st = data.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (uid, gid, 0o750)
    st = chroot.path(f"{web_dir}/nurse-view.key").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (uid, 0o600)

    # the unit: installed, enabled at boot, and systemd's own checks pass inside the system
    unit = chroot.path(f"/etc/systemd/system/{UNIT}")
    text = unit.read_text()
    link = chroot.path(f"/etc/systemd/system/multi-user.target.wants/{UNIT}")
    assert link.is_symlink() and os.readlink(link) == f"/etc/systemd/system/{UNIT}"
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    assert exec_start == "/opt/perimon/venv/bin/perimon gateway --config /etc/perimon/perimon.toml"
    for line in ("User=perimon", "ReadWritePaths=/var/lib/perimon", "WatchdogSec=",
                 "Restart=on-failure", "Type=notify", "WorkingDirectory=/var/lib/perimon"):  # fmt: skip
        assert line in text
    verify = chroot.run(f"systemd-analyze verify /etc/systemd/system/{UNIT} 2>&1")
    assert UNIT not in verify, verify
    enabled = chroot.run(f"systemctl is-enabled {UNIT}")
    assert enabled.strip() == "enabled"

    # the installed gateway runs as the service would (its user, its venv, its data dir) and
    # speaks sd_notify; the radio is simulated and the broker absent (a chroot has no BlueZ)
    test_cfg = chroot.path("/etc/perimon/chroot-test.toml")
    test_cfg.write_text(
        cfg_path.read_text()
        .replace('transport = "ble"', 'transport = "sim"')
        .replace('listen = "127.0.0.1:7600"', f'listen = "127.0.0.1:{free_port()}"')
        .replace('listen = "0.0.0.0:8443"', f'listen = "127.0.0.1:{free_port()}"')
        .replace("port = 8883", f"port = {free_port()}")
        .replace("tls = true", "tls = false")  # no broker, and no hospital CA, in a chroot
    )
    os.chown(test_cfg, 0, gid)
    test_cfg.chmod(0o640)
    _run_service_once(chroot, exec_start.replace("perimon.toml", "chroot-test.toml"), uid)
    outbox = data / "outbox.sqlite"
    assert outbox.exists() and outbox.stat().st_uid == uid
    test_cfg.unlink()

    # again: idempotent; the configuration (edited by its owner) and the data are kept
    with cfg_path.open("a") as f:
        f.write("# edited after installing\n")
    kept = cfg_path.read_bytes()
    t1 = time.monotonic()
    out = chroot.run("cd /home/pi/perimon && ./scripts/install-pi.sh", timeout=600)
    second_s = time.monotonic() - t1
    assert "installing Debian packages" not in out and "created the service user" not in out
    assert "wrote /etc/perimon" not in out
    assert f"install-pi:   {fingerprint}" in out  # the same certificate, kept
    assert cfg_path.read_bytes() == kept
    assert _passwd(chroot.root, "perimon")[2:4] == user[2:4]
    assert outbox.exists() and outbox.stat().st_uid == uid
    assert link.is_symlink() and unit.read_text() == text
    assert _group_members(chroot.root, "bluetooth").count("perimon") == 1
    print(f"install-pi.sh in a chroot: first run {first_s:.0f} s, second {second_s:.0f} s")


def _run_service_once(chroot: Chroot, command: str, uid: int) -> None:
    """Start the gateway as its user inside the chroot; wait for READY=1 (from that uid), then
    stop it with SIGTERM as systemd would and expect STOPPING=1 and a clean exit."""
    sock_path = chroot.path("/run/perimon-notify.sock")
    sock_path.parent.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    sock_path.chmod(0o666)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    server.settimeout(60)
    proc = chroot.popen(
        f"cd /var/lib/perimon && NOTIFY_SOCKET=/run/perimon-notify.sock WATCHDOG_USEC=2000000 "
        f"exec runuser -u perimon -- {command}",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        msg, anc, _, _ = server.recvmsg(256, socket.CMSG_SPACE(12))
        assert msg == b"READY=1", msg
        creds = [d for lvl, typ, d in anc if typ == socket.SCM_CREDENTIALS]
        pid, sender_uid, _ = struct.unpack("3i", creds[0])
        assert sender_uid == uid  # the service's user, not root
        os.kill(pid, signal.SIGTERM)
        got = []
        while b"STOPPING=1" not in got:
            got.append(server.recv(256))
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.close()
