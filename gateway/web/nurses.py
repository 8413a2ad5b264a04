"""Nurse accounts kept on the gateway: `{data_dir}/nurses.json`, passwords hashed with scrypt
(RFC 7914, Python's hashlib) with a random salt per password. Never stored or logged in clear."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple


class Scrypt(NamedTuple):
    n: int
    r: int
    p: int


# scrypt cost, from the OWASP Password Storage Cheat Sheet (2025: N=2^17, r=8, p=1, or an
# equal-cost line of its table): N=2^16, r=8, p=2 costs the same time as 2^17/8/1 with half
# the memory (64 MiB), kinder to a gateway's MemoryMax; about 1.5 s of one core here (a Pi 4
# is similar). The parameters are stored with each hash; a hash made with others is made
# again with these at its nurse's next login.
SCRYPT = Scrypt(n=2**16, r=8, p=2)
_MAXMEM = 256 * 1024 * 1024  # above 128 * r * n for the parameters above and for 2^17/8/1
_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
MIN_PASSWORD = 10


def hash_password(password: str, cost: Scrypt | None = None) -> str:
    n, r, p = cost or SCRYPT
    salt = os.urandom(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM)
    return f"scrypt${n}${r}${p}${salt.hex()}${dk.hex()}"


def cost_of(stored: str) -> Scrypt | None:
    """The parameters a stored hash was made with."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return None
    return Scrypt(int(parts[1]), int(parts[2]), int(parts[3]))


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, want = stored.split("$")
        if kind != "scrypt":
            return False
        dk = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                            p=int(p), maxmem=_MAXMEM)  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk.hex(), want)


_dummies: dict[Scrypt, str] = {}


def _dummy() -> str:
    """A hash at today's cost, to spend the same time on a user who does not exist."""
    if SCRYPT not in _dummies:
        _dummies[SCRYPT] = hash_password("no such nurse: spend the same time")
    return _dummies[SCRYPT]


class NurseAccounts:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._cached: tuple[tuple[int, int, int], dict[str, dict[str, Any]]] | None = None
        # two logins at once (the nurse view checks passwords on worker threads) may both make
        # a hash again: one read-change-write of the file at a time
        self._writing = threading.Lock()

    def _load(self) -> dict[str, dict[str, Any]]:
        """The accounts as the file has them now (read again only when it changed: the nurse
        view asks at every request)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._cached is not None and self._cached[0] == seen:
            return self._cached[1]
        data = json.loads(self.path.read_text(encoding="utf-8"))
        data = data if isinstance(data, dict) else {}
        self._cached = (seen, data)
        return data

    def stamp(self, user: str) -> str | None:
        """What a login of `user` is valid for: changes when her password is set again, None
        once she is removed (the nurse view ends her sessions at their next request)."""
        try:
            rec = self._load().get(user)
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict):
            return None
        if "stamp" in rec:  # kept when the hash was only made again at a new cost
            return str(rec["stamp"])
        return hashlib.sha256(str(rec.get("password", "")).encode()).hexdigest()[:16]

    def users(self) -> list[str]:
        return sorted(self._load())

    def add(self, user: str, password: str) -> None:
        """Add a nurse or set a new password (ValueError for a bad name or short password)."""
        if not _USER_RE.match(user):
            raise ValueError("user name: 1-32 letters, digits, '.', '_' or '-'")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"password: at least {MIN_PASSWORD} characters")
        rec = {"password": hash_password(password), "set_at": int(time.time())}
        with self._writing:
            self._save({**self._load(), user: rec})

    def _rehash(self, user: str, password: str, stored: str) -> None:
        """The same password at today's cost; her logins stay valid (same stamp). Left as it
        is if her hash changed meanwhile (set again, or already made again by another login)."""
        new = hash_password(password)  # the slow part, outside the lock
        with self._writing:
            data = dict(self._load())
            rec = data.get(user)
            if not isinstance(rec, dict) or rec.get("password") != stored:
                return
            data[user] = {**rec, "password": new, "stamp": self.stamp(user)}
            self._save(data)

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        """Atomically, mode 0600 (the hashes are secrets too), through a file of its own so
        that a reader never sees half of it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp makes it 0600
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove(self, user: str) -> bool:
        with self._writing:
            data = dict(self._load())
            if data.pop(user, None) is None:
                return False
            self._save(data)
        return True

    def check(self, user: str, password: str) -> bool:
        try:
            rec = self._load().get(user)
        except (OSError, ValueError):
            rec = None
        if not rec:
            verify_password(password, _dummy())  # same time for unknown users
            return False
        stored = str(rec.get("password", ""))
        if not verify_password(password, stored):
            return False
        if cost_of(stored) != SCRYPT:  # made at an older cost: made again at today's
            self._rehash(user, password, stored)
        return True
