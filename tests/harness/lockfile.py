"""The requirements/*.lock files read as pip's --require-hashes reads them: each requirement
pinned with `==`, its environment marker, and the sha256 of each file it may be installed from.
tests/test_lockfile.py checks them against pyproject.toml, tests/test_lock_on_a_pi.py against
the files PyPI serves for a Raspberry Pi."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCKS = Path(__file__).resolve().parents[2] / "requirements"
SHA256 = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Locked:
    """One requirement of a lock file: `name==version ; marker`, and its files' hashes."""

    name: str  # canonical (PEP 503): lower case, runs of -_. as one -
    version: str
    marker: str
    hashes: tuple[str, ...]
    line: str


def read_lock(path: Path) -> list[Locked]:
    """The lock's requirements, continuation lines joined; anything that is not a pinned,
    hashed requirement (an option, a URL, a path, an editable) raises with its line."""
    text = re.sub(r"\\\n", " ", path.read_text())
    entries = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *hashes = re.split(r"\s+(?=--hash=)", line)
        assert all(SHA256.fullmatch(h) for h in hashes), f"{path.name}: not sha256: {line}"
        assert hashes, f"{path.name}: a requirement without a hash: {line}"
        req = Requirement(spec)
        (pin,) = req.specifier
        assert pin.operator == "==" and not req.url, f"{path.name}: not pinned: {line}"
        entries.append(Locked(canonicalize_name(req.name), pin.version,
                              str(req.marker or ""), tuple(hashes), line))  # fmt: skip
    return entries
