"""`perimon-ingest`'s settings: a TOML file, environment variables and the command line.

Every setting has one name, used everywhere: `port` is `port = 8883` under `[mqtt]` in the file,
`PERIMON_INGEST_PORT=8883` in the environment and `--port 8883` on the command line. The command
line wins over the environment, which wins over the file, which wins over the defaults below.
Secrets belong in the environment (a systemd `EnvironmentFile=` readable by the service only) or
in a file only the service reads, not on a command line that `ps` shows.

An example file with every key is hospital/ingest.example.toml. A wrong key or value is one
line naming it: `ingest.toml: [mqtt] port: an integer from 1 to 65535, got "x"`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

ENV_PREFIX: Final = "PERIMON_INGEST_"
_MAX_EXPIRY_H: Final = 24 * 365  # MQTT 5 allows up to 2^32 - 1 s; a year is plenty
# A worker's name is its MQTT client id and a level of its reply topic: no / + # or spaces.
_WORKER_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(ValueError):
    """A setting that cannot be used, described in one line."""


@dataclass(frozen=True)
class IngestConfig:
    # [mqtt]: the broker (or the regional cluster's address) and this worker's session
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    tls_ca: str = ""  # the CA that signed the broker's certificate: connect with TLS
    tls_cert: str = ""  # this worker's client certificate (brokers with require_certificate)
    tls_key: str = ""
    prefix: str = "perimon/v1"  # the topic prefix (docs/mqtt.md)
    group: str = "perimon-ingest"  # the shared-subscription group: workers of one group share
    worker: str = ""  # this worker's client id; with one, the broker keeps its session
    session_expiry_h: float = 24.0  # how long the broker keeps a named worker's session
    # messages the broker may send before this worker acknowledges them (MQTT 5 Receive
    # Maximum): the in-flight window, and the most one batch can hold
    in_flight: int = 2000
    # [database]
    db: str = "perimon-ingest.sqlite"  # a SQLite file (or sqlite:///path), or postgresql://...
    # [ingest]
    batch_max: int = 1000  # messages written in one transaction at most
    ack_alerts: bool = True  # acknowledge each newly raised alert to its gateway
    # an acknowledgement its gateway has not answered is sent again after this (a broker may
    # drop a command: a bridge's link down), at most ACK_TRIES times in all; 0: never again
    ack_retry_s: float = 30.0
    receipts: bool = True  # after each commit, tell each gateway what of its messages is stored
    schemas: str = ""  # a directory of JSON Schemas (default: the ones installed)

    @property
    def session_expiry_s(self) -> int:
        """0 (a clean session) for a worker without a name."""
        return round(self.session_expiry_h * 3600) if self.worker else 0


SECTIONS: Final = {
    "mqtt": ("host", "port", "username", "password", "tls_ca", "tls_cert", "tls_key", "prefix",
             "group", "worker", "session_expiry_h", "in_flight"),
    "database": ("db",),
    "ingest": ("batch_max", "ack_alerts", "ack_retry_s", "receipts", "schemas"),
}  # fmt: skip
_DEFAULTS: Final = {f.name: f.default for f in fields(IngestConfig)}
_SECTION_OF: Final = {key: section for section, keys in SECTIONS.items() for key in keys}
_RANGES: Final = {"port": (1, 65535), "in_flight": (1, 65535), "batch_max": (1, 100_000),
                  "session_expiry_h": (0, _MAX_EXPIRY_H), "ack_retry_s": (0, 86400)}  # fmt: skip


def _value(key: str, value: Any, where: str) -> Any:
    """`value` as the type of `key`'s default (from TOML, or text from the environment)."""
    default = _DEFAULTS[key]
    lo_hi = _RANGES.get(key)
    span = f" from {lo_hi[0]} to {lo_hi[1]}" if lo_hi else ""
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            value = value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: true or false, got {value!r}")
        return value
    if isinstance(default, int | float):
        kind = "an integer" if isinstance(default, int) else "a number"
        try:
            number = (int if isinstance(default, int) else float)(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {kind}{span}, got {value!r}") from None
        if isinstance(value, bool) or (isinstance(value, float) and isinstance(default, int)):
            raise ConfigError(f"{where}: {kind}{span}, got {value!r}")
        if lo_hi and not lo_hi[0] <= number <= lo_hi[1]:
            raise ConfigError(f"{where}: {kind}{span}, got {value!r}")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{where}: a string, got {value!r}")
    return value


def from_file(path: Path) -> dict[str, Any]:
    """The settings a file gives (only those it names)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    out: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for key, value in table.items():
            if _SECTION_OF.get(key) != section:
                known = ", ".join(SECTIONS[section])
                raise ConfigError(f"{path}: [{section}] unknown key {key!r} (known: {known})")
            out[key] = _value(key, value, f"{path}: [{section}] {key}")
    return out


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The settings the environment gives: PERIMON_INGEST_{KEY}."""
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name.removeprefix(ENV_PREFIX).lower()
        if key not in _DEFAULTS:
            raise ConfigError(f"{name}: not a perimon-ingest setting (known: "
                              f"{', '.join(ENV_PREFIX + k.upper() for k in _DEFAULTS)})")  # fmt: skip
        out[key] = _value(key, value, name)
    return out


def load(path: Path | None, env: Mapping[str, str], given: Mapping[str, Any]) -> IngestConfig:
    """The defaults, overridden by the file at `path` (if any; else PERIMON_INGEST_CONFIG), by
    the environment, then by `given` (the command line's settings, None where not given)."""
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    settings = from_file(path) if path is not None else {}
    settings |= from_env(env)
    for key, value in given.items():
        if value is not None:
            settings[key] = _value(key, value, "--" + key.replace("_", "-"))
    cfg = replace(IngestConfig(), **settings)
    if cfg.worker and not _WORKER_RE.match(cfg.worker):
        raise ConfigError(f"worker: letters, digits, _ . - (at most 64), got {cfg.worker!r}")
    if (cfg.tls_cert or cfg.tls_key) and not (cfg.tls_cert and cfg.tls_key and cfg.tls_ca):
        raise ConfigError("tls_cert and tls_key go together, with tls_ca")
    return cfg
