"""requirements/gateway.lock installs on a 64-bit Raspberry Pi: for every package it names
there, PyPI has a wheel for aarch64 at the locked version whose sha256 the lock holds.

No Pi is at hand, so pip fetches what an install there would take (`pip download --platform`,
with --require-hashes as scripts/install-pi.sh runs it, and --only-binary: a package without
an aarch64 wheel would be built on the Pi, which has no compiler, and fails here instead).
Raspberry Pi OS bookworm has Python 3.11 and glibc 2.36; trixie, 3.13 and glibc 2.41. The
wheels are kept under ~/.cache/perimon-test/ (or $PERIMON_TEST_CACHE), one folder per lock:
a later run checks their hashes again without downloading. Needs PyPI.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import parse_wheel_filename

from tests.harness.lockfile import LOCKS, Locked, read_lock

pytestmark = pytest.mark.install

CACHE = Path(os.environ.get("PERIMON_TEST_CACHE", Path.home() / ".cache" / "perimon-test"))
PI_OS = {  # Raspberry Pi OS release: (Python, glibc)
    "bookworm": ("3.11.2", (2, 36)),
    "trixie": ("3.13.5", (2, 41)),
}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("release", PI_OS)
def test_every_locked_package_has_an_aarch64_wheel_with_the_locked_hash(release, tmp_path):
    python, (major, glibc) = PI_OS[release]
    cp = "cp" + "".join(python.split(".")[:2])
    lock = LOCKS / "gateway.lock"
    key = hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    dest = CACHE / f"pi-wheels-{release}-{key}"
    for old in CACHE.glob(f"pi-wheels-{release}-*"):  # an older lock's wheels
        if old != dest:
            shutil.rmtree(old, ignore_errors=True)
    platforms = [f"manylinux_{major}_{minor}_aarch64" for minor in range(17, glibc + 1)]
    platforms += ["manylinux2014_aarch64", "linux_aarch64"]
    # what a Pi takes: each locked package whose marker holds there. pip would judge the
    # markers by the Python running it, not the Pi's: they are judged here, and pip is given
    # the chosen requirements with their hashes and without markers.
    pi = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
          "platform_machine": "aarch64", "implementation_name": "cpython",
          "platform_python_implementation": "CPython", "python_full_version": python,
          "python_version": python.rsplit(".", 1)[0]}  # fmt: skip
    chosen = [e for e in read_lock(lock) if not e.marker or Marker(e.marker).evaluate(pi)]
    wanted = {(e.name, e.version) for e in chosen}
    if _wheels(dest, chosen, platforms) != wanted:  # else all kept from an earlier run
        requirements = tmp_path / "pi.txt"
        requirements.write_text("".join(f"{e.name}=={e.version} {' '.join(e.hashes)}\n"
                                        for e in chosen))  # fmt: skip
        res = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--require-hashes", "--no-deps", "-r", str(requirements), "--only-binary=:all:",
             "-d", str(dest), *(f"--platform={p}" for p in platforms),
             f"--python-version={python}", "--implementation=cp", f"--abi={cp}", "--abi=abi3",
             "--abi=none"],
            capture_output=True, text=True, timeout=540,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
    found = _wheels(dest, chosen, platforms)
    assert found == wanted, sorted(wanted - found)
    built = {n for n, _ in found if _is_built(dest, n)}
    assert {"numpy", "scipy", "contourpy", "pillow", "dbus-fast"} <= built, sorted(built)


def _wheels(dest: Path, chosen: list[Locked], platforms: list[str]) -> set[tuple[str, str]]:
    """(name, version) of the chosen requirements that have a wheel in dest built for one of
    the platforms (or pure Python) whose sha256 is one the lock holds."""
    by_key = {(e.name, e.version): e for e in chosen}
    found = set()
    for path in dest.glob("*.whl") if dest.exists() else ():
        name, version, _, tags = parse_wheel_filename(path.name)
        entry = by_key.get((name, str(version)))
        if entry is None or not {t.platform for t in tags} & {"any", *platforms}:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if f"--hash=sha256:{digest}" in entry.hashes:
            found.add((entry.name, entry.version))
    return found


def _is_built(dest: Path, name: str) -> bool:
    """Whether a wheel of the package in dest is for a platform (not pure Python)."""
    return any(not path.name.endswith("-any.whl") and parse_wheel_filename(path.name)[0] == name
               for path in dest.glob("*.whl"))  # fmt: skip
