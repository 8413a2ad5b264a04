"""The gateway's enrolment list: which devices it serves, and each one's secret key.

A JSON file (by default `enrolment.json` in the gateway's data_dir, mode 0600) written by
`perimon provision` (or by the simulator fleet for virtual devices):

    {"devices": {"fh-01": {"type": "fetal_heart", "key": "<64 hex digits>",
                           "enrolled": "2026-11-23T10:00:00Z"}}}

Devices not in the list are refused at connection and reported; they are never connected. The
file is re-read when it changes, so enrolling a device needs no gateway restart.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import protocol as p

if TYPE_CHECKING:
    from gateway.config import Config

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # 1-64: letters, digits, - _
_TYPES = {"fetal_heart": p.DeviceType.FETAL_HEART, "jaundice": p.DeviceType.JAUNDICE}
_LOCK = threading.Lock()


class EnrolmentError(ValueError):
    """The enrolment list is unreadable or an entry is invalid (one-line message)."""


@dataclass(frozen=True)
class Enrolled:
    device_id: str
    device_type: int
    key: bytes


def enrolment_path(cfg: Config) -> Path:
    """Where a gateway configuration keeps its list ([security] enrolment_file or data_dir)."""
    name = cfg.security.enrolment_file or "enrolment.json"
    return (cfg.data_dir / name).resolve()


class Enrolment:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._devices: dict[str, Enrolled] = {}

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._devices, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)  # replaced files get a new inode
        if stamp == self._stamp:
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            devices = raw["devices"]
            out = {}
            for dev_id, e in devices.items():
                out[dev_id] = _entry(dev_id, e)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EnrolmentError(f"{self.path}: unreadable enrolment list ({exc})") from None
        self._devices, self._stamp = out, stamp

    def get(self, device_id: str) -> Enrolled | None:
        self._load()
        return self._devices.get(device_id)

    def devices(self) -> dict[str, Enrolled]:
        self._load()
        return dict(self._devices)

    def enrol(self, device_id: str, device_type: str, key: bytes) -> None:
        """Add or replace a device (atomically; the file stays readable only by its owner)."""
        _entry(device_id, {"type": device_type, "key": key.hex()})
        with _LOCK:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raw = {"devices": {}}
            except (OSError, ValueError) as exc:
                raise EnrolmentError(f"{self.path}: unreadable enrolment list ({exc})") from None
            raw.setdefault("devices", {})[device_id] = {
                "type": device_type,
                "key": key.hex(),
                "enrolled": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(raw, f, indent=1)
            os.replace(tmp, self.path)

    def remove(self, device_id: str) -> bool:
        with _LOCK:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return False
            if raw.get("devices", {}).pop(device_id, None) is None:
                return False
            tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(raw, f, indent=1)
            os.replace(tmp, self.path)
            return True


def _entry(dev_id: str, e: dict[str, Any]) -> Enrolled:
    if not DEVICE_ID_RE.match(dev_id):
        raise EnrolmentError(f"{dev_id!r} is not a valid device id")
    if e.get("type") not in _TYPES:
        raise EnrolmentError(f"{dev_id}: type must be one of {', '.join(_TYPES)}")
    try:
        key = bytes.fromhex(e["key"])
    except (KeyError, ValueError, TypeError):
        raise EnrolmentError(f"{dev_id}: key must be {p.KEY_LEN} bytes of hex") from None
    if len(key) != p.KEY_LEN:
        raise EnrolmentError(f"{dev_id}: key must be {p.KEY_LEN} bytes of hex")
    return Enrolled(dev_id, _TYPES[e["type"]], key)
