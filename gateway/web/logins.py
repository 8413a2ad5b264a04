"""How many password guesses the nurse view takes, and from whom: a pure state machine, time
passed in (docs/security.md, "Nurse view").

A login attempt is counted when it arrives, before its password is hashed: parallel guesses
cannot all read the same count while the hashes run. Three limits, over the last LOCKOUT_S:

* per user name: MAX_PER_NAME failures, then that name is locked;
* per client address: MAX_PER_CLIENT failures, whatever the names;
* all together: MAX_GLOBAL failures, then only recognised browsers may try.

A **recognised browser** is one a nurse logged in with before: it holds a cookie naming her,
MACed under the gateway's key (`BrowserTokens`). Its attempts for her name are counted against
that browser alone, and neither a lock of her name nor a busy address or gateway stops them: a
stranger guessing her password cannot lock her out of her own browser. The table of failures
holds at most MAX_KEYS entries; when full, unrecognised attempts wait for old ones to expire.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections import deque
from dataclasses import dataclass
from pathlib import Path

LOCKOUT_S = 300.0
MAX_PER_NAME = 5
MAX_PER_CLIENT = 20
MAX_GLOBAL = 100
MAX_KEYS = 1024  # names, addresses and browsers with a recent failure
BROWSER_COOKIE = "perimon_browser"
BROWSER_DAYS = 365
_KEY_LEN = 32


@dataclass(frozen=True)
class Attempt:
    """A login admitted to the password check, counted already; `succeeded` takes it back."""

    name_key: str
    client_key: str | None  # None: a recognised browser, not counted by address or globally
    at: float


class LoginLimits:
    def __init__(self) -> None:
        self._fails: dict[str, deque[float]] = {}
        self._global: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._fails)

    def _prune(self, now: float) -> None:
        for key, times in list(self._fails.items()):
            while times and now - times[0] >= LOCKOUT_S:
                times.popleft()
            if not times:
                del self._fails[key]
        while self._global and now - self._global[0] >= LOCKOUT_S:
            self._global.popleft()

    def _count(self, key: str) -> int:
        return len(self._fails.get(key, ()))

    def admit(self, user: str, client: str, browser: str | None, now: float) -> Attempt | str:
        """Count an attempt for `user` from `client` (`browser`: the id of her recognised
        browser, if it is one): the Attempt to check the password for, or why not ("locked",
        "busy")."""
        self._prune(now)
        if browser is not None:
            key = "browser " + browser
            if self._count(key) >= MAX_PER_NAME:
                return "locked"
            self._fails.setdefault(key, deque()).append(now)
            return Attempt(key, None, now)
        name_key, client_key = "user " + user, "client " + client
        if self._count(name_key) >= MAX_PER_NAME or self._count(client_key) >= MAX_PER_CLIENT:
            return "locked"
        new_keys = (name_key not in self._fails) + (client_key not in self._fails)
        if len(self._global) >= MAX_GLOBAL or len(self._fails) + new_keys > MAX_KEYS:
            return "busy"
        self._fails.setdefault(name_key, deque()).append(now)
        self._fails.setdefault(client_key, deque()).append(now)
        self._global.append(now)
        return Attempt(name_key, client_key, now)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the name's (or browser's) failures are forgotten, and this
        attempt no longer counts against its address or the gateway."""
        self._fails.pop(attempt.name_key, None)
        if attempt.client_key is None:
            return
        times = self._fails.get(attempt.client_key)
        if times is not None and attempt.at in times:
            times.remove(attempt.at)
            if not times:
                del self._fails[attempt.client_key]
        if attempt.at in self._global:
            self._global.remove(attempt.at)


class BrowserTokens:
    """The recognised-browser cookie: `user.id.mac`, the MAC under a key kept in `key_file`
    (made on first use, mode 0600), so it survives a restart."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._key: bytes | None = None

    def _secret(self) -> bytes:
        if self._key is None:
            try:
                key = self.key_file.read_bytes()
            except FileNotFoundError:
                key = b""
            if len(key) != _KEY_LEN:
                key = secrets.token_bytes(_KEY_LEN)
                self.key_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.key_file.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(key)
                tmp.replace(self.key_file)
            self._key = key
        return self._key

    def _mac(self, user: str, browser_id: str) -> str:
        msg = f"perimon-v1 browser|{user}|{browser_id}".encode()
        return hmac.new(self._secret(), msg, hashlib.sha256).hexdigest()[:32]

    def issue(self, user: str) -> str:
        browser_id = secrets.token_hex(8)
        return f"{user}.{browser_id}.{self._mac(user, browser_id)}"

    def browser(self, cookie: str | None, user: str) -> str | None:
        """The browser id in `cookie` if it is a genuine one of `user`'s."""
        parts = (cookie or "").rsplit(".", 2)  # a user name may hold a '.'
        if len(parts) != 3 or parts[0] != user or len(parts[1]) != 16:
            return None
        if not hmac.compare_digest(parts[2], self._mac(user, parts[1])):
            return None
        return parts[1]
