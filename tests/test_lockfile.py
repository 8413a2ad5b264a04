"""The hashed lock files agree with pyproject.toml, and the install scripts take nothing else.

scripts/bootstrap.sh installs requirements/dev.lock and scripts/install-pi.sh
requirements/gateway.lock with pip's --require-hashes: a package, a version or a file that is
not in the lock is refused. So the lock must hold every package pyproject.toml pins, at the same
version, each with its files' sha256, and nothing without one. A dependency changed in
pyproject.toml without `scripts/lock.sh` fails here. docs/security.md, "Dependencies".
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.harness.lockfile import LOCKS, Locked, read_lock

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def pinned(requirements: list[str]) -> dict[str, str]:
    """name -> version of pyproject.toml requirements, each of which must be pinned exactly."""
    out = {}
    for text in requirements:
        req = Requirement(text)
        (pin,) = req.specifier
        assert pin.operator == "==", f"pyproject.toml: pin {text!r} exactly (==)"
        out[canonicalize_name(req.name)] = pin.version
    return out


PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _everything_pinned() -> dict[str, str]:
    reqs = list(PROJECT["project"]["dependencies"])
    for extra in PROJECT["project"].get("optional-dependencies", {}).values():
        reqs += extra
    for group in PROJECT.get("dependency-groups", {}).values():
        reqs += [r for r in group if isinstance(r, str)]  # {include-group = ...} adds no pin
    return pinned(reqs)


def _versions(lock: list[Locked]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for e in lock:
        out.setdefault(e.name, set()).add(e.version)
    return out


def test_every_lock_line_is_a_pinned_requirement_with_sha256_hashes():
    locks = sorted(LOCKS.glob("*.lock"))
    assert {p.name for p in locks} >= {"dev.lock", "gateway.lock", "lock-tool.lock"}
    for path in locks:
        entries = read_lock(path)
        assert entries, path
        assert sum(len(e.hashes) for e in entries) >= len(entries)


def test_a_line_without_a_hash_or_a_pin_is_refused(tmp_path):
    # the checker itself: each of these is what --require-hashes would refuse, or worse
    for bad in ("numpy==2.4.6\n", "numpy>=2 --hash=sha256:" + "0" * 64 + "\n",
                "-e .\n", "--index-url https://example.org/simple\n",
                "numpy==2.4.6 --hash=md5:" + "0" * 32 + "\n"):  # fmt: skip
        lock = tmp_path / "bad.lock"
        lock.write_text("# a lock\n" + bad)
        with pytest.raises((AssertionError, ValueError)):
            read_lock(lock)


def test_the_dev_lock_holds_every_pin_of_every_extra_and_group_at_its_version():
    locked = _versions(read_lock(LOCKS / "dev.lock"))
    wanted = _everything_pinned()
    assert "pytest" in wanted and "numpy" in wanted and "psycopg" in wanted
    wrong = {n: (v, sorted(locked.get(n, ()))) for n, v in wanted.items()
             if locked.get(n) != {v}}  # fmt: skip
    assert not wrong, f"pyproject.toml's pin, the lock's: {wrong}; run scripts/lock.sh"


def test_the_gateway_lock_holds_the_packages_dependencies_at_the_dev_locks_versions():
    gateway = read_lock(LOCKS / "gateway.lock")
    locked = _versions(gateway)
    wanted = pinned(PROJECT["project"]["dependencies"])
    wrong = {n: (v, sorted(locked.get(n, ()))) for n, v in wanted.items()
             if locked.get(n) != {v}}  # fmt: skip
    assert not wrong, f"pyproject.toml's pin, the lock's: {wrong}; run scripts/lock.sh"
    # a Pi runs what the tests ran: each of its packages at a version of dev.lock, same files
    # (the markers may differ: fewer packages ask for it, on fewer platforms)
    dev = {(e.name, e.version): e.hashes for e in read_lock(LOCKS / "dev.lock")}
    for e in gateway:
        assert dev.get((e.name, e.version)) == e.hashes, e.line
    assert "pytest" not in locked and "playwright" not in locked  # not on a Pi


def test_both_locks_hold_the_build_backend_so_no_build_fetches_an_unhashed_one():
    for name in ("dev.lock", "gateway.lock"):
        locked = _versions(read_lock(LOCKS / name))
        for text in PROJECT["build-system"]["requires"]:
            req = Requirement(text)
            versions = locked.get(canonicalize_name(req.name), set())
            assert len(versions) == 1, (name, text, versions)
            assert req.specifier.contains(Version(versions.pop())), (name, text)


def test_the_install_scripts_install_only_from_the_locks():
    # every pip step either installs a lock with --require-hashes or installs perimon itself
    # with --no-deps and, when it builds, the locked setuptools (--no-build-isolation)
    steps = {"bootstrap.sh": "requirements/dev.lock", "install-pi.sh": "requirements/gateway.lock"}
    for script, lock in steps.items():
        text = (REPO / "scripts" / script).read_text()
        pip_steps = re.findall(r'^\s*"\$\{pip\[@\]\}" ((?:install|wheel|download)\b.*)$', text,
                               re.M)  # fmt: skip
        assert any("--require-hashes -r" in s and lock in s for s in pip_steps), script
        for step in pip_steps:
            if "--require-hashes" in step:
                continue
            assert "--no-deps" in step, (script, step)
            if step.startswith("wheel") or " -e " in step:
                assert "--no-build-isolation" in step, (script, step)
        assert not re.search(r"-m pip (install|wheel|download)", text), script  # no other way
