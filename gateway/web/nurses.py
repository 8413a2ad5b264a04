"""Nurse accounts kept on the gateway: `{data_dir}/nurses.json`, passwords hashed with scrypt
(RFC 7914, Python's hashlib) with a random salt per password. Never stored or logged in clear."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from pathlib import Path
from typing import Any

# scrypt cost: N=2^14, r=8, p=1 (16 MiB, about 50 ms on a Raspberry Pi 4 class CPU); the
# parameters are stored with each hash so they can be raised later without breaking logins.
_N, _R, _P = 2**14, 8, 1
_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
MIN_PASSWORD = 10


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    salt = os.urandom(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)
    return f"scrypt${n}${r}${p}${salt.hex()}${dk.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, want = stored.split("$")
        if kind != "scrypt":
            return False
        dk = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                            p=int(p), maxmem=64 * 1024 * 1024)  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk.hex(), want)


_DUMMY = hash_password("no such nurse: spend the same time")


class NurseAccounts:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._cached: tuple[tuple[int, int, int], dict[str, dict[str, Any]]] | None = None

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
        return hashlib.sha256(str(rec.get("password", "")).encode()).hexdigest()[:16]

    def users(self) -> list[str]:
        return sorted(self._load())

    def add(self, user: str, password: str) -> None:
        """Add a nurse or set a new password (ValueError for a bad name or short password)."""
        if not _USER_RE.match(user):
            raise ValueError("user name: 1-32 letters, digits, '.', '_' or '-'")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"password: at least {MIN_PASSWORD} characters")
        data = dict(self._load())
        data[user] = {"password": hash_password(password), "set_at": int(time.time())}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        tmp.replace(self.path)

    def remove(self, user: str) -> bool:
        data = dict(self._load())
        if data.pop(user, None) is None:
            return False
        self.path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        return True

    def check(self, user: str, password: str) -> bool:
        try:
            rec = self._load().get(user)
        except (OSError, ValueError):
            rec = None
        if not rec:
            verify_password(password, _DUMMY)  # same time for unknown users
            return False
        return verify_password(password, str(rec.get("password", "")))
