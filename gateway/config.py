"""Gateway configuration: one TOML file, every key documented here with its default.

A wrong key or value raises ConfigError with a one-line message naming it, e.g.
`perimon.toml: [mqtt] port: expected an integer from 1 to 65535, got "eighty"`.
See docs/configuration.md for an annotated example.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gateway.schemas import SchemaCheck


class ConfigError(ValueError):
    """A configuration problem, described in one line."""


_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
BILIRUBIN_UNITS = ("mg/dL", "umol/L")  # dsp/bilirubin_units.py UNITS (a leaf cannot import it)


@dataclass(frozen=True)
class GatewaySection:
    id: str = "gw-local"  # opaque gateway id used in MQTT topics; never a place or person name
    data_dir: str = "var/gateway"  # state kept on the gateway (relative to the config file)
    history_h: float = 24.0  # what was published is kept this long for the nurse view


@dataclass(frozen=True)
class MqttSection:
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "perimon/v1"
    protocol: str = "5"  # "5" (MQTT 5, the contract) or "3.1.1" for brokers that lack 5
    keepalive_s: int = 30
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    # keep readings and alerts until the hospital's receipt says they are stored, not only until
    # the broker's PUBACK (docs/mqtt.md, "Receipts"); only for a hospital that sends receipts
    await_receipts: bool = False
    receipt_timeout_s: float = 60.0  # an unconfirmed message is sent again after this, then later


@dataclass(frozen=True)
class RadioSection:
    transport: str = "sim"  # "ble" (BlueZ via bleak), "serial" (USB), "sim" (loopback TCP)
    listen: str = "127.0.0.1:7600"  # sim transport: where virtual devices connect
    att_mtu: int = 247  # ATT MTU granted to devices (23 is BLE's minimum, 247 its usual maximum)
    enrolled: str = ""  # ble: device ids to connect, comma-separated ("" accepts any perimon)
    ble_adapter: str = "hci0"
    ble_max_connections: int = 7  # a Pi's built-in radio holds about 7 links reliably
    ble_scan_mode: str = "active"  # "active" or "passive" (BlueZ advertisement monitor)
    serial_ports: str = ""  # serial: device paths, comma-separated (e.g. /dev/ttyACM0)
    serial_baud: int = 115200


@dataclass(frozen=True)
class ProcessingSection:
    fhr_publish_interval_s: float = 1.0  # FHR points are batched and published this often
    ctg_interval_s: float = 60.0  # CTG findings over the rolling window, this often
    ctg_window_min: float = 30.0
    gap_timeout_s: float = 15.0  # how long a missing range may be awaited from the device
    status_interval_s: float = 5.0


@dataclass(frozen=True)
class WebSection:
    enabled: bool = False  # the nurse view (docs/nurse-view.md), served by `perimon gateway`
    listen: str = "127.0.0.1:8080"  # HOST:PORT; use 0.0.0.0:8443 with a certificate on a ward
    cert_file: str = ""  # PEM certificate: HTTPS when set (with key_file)
    key_file: str = ""
    session_minutes: float = 30.0  # a nurse's login expires after this long without activity
    help_phone: str = ""  # the hospital's number shown on the mother's page (docs/home.md)
    hospital: str = ""  # the hospital (and ward) at the head of every session report
    bilirubin_unit: str = "mg/dL"  # "mg/dL" or "umol/L": every bilirubin amount the view shows


@dataclass(frozen=True)
class SecuritySection:
    enrolment_file: str = ""  # enrolled devices and their keys (default data_dir/enrolment.json)


@dataclass(frozen=True)
class OutboxSection:
    path: str = "outbox.sqlite"  # the persistent outbox (docs/reliability.md), under data_dir
    max_bytes: int = 512 * 1024 * 1024  # beyond this the oldest live trace goes first
    max_age_h: float = 72.0  # older messages are dropped (and counted), 0: no age limit


@dataclass(frozen=True)
class Config:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    radio: RadioSection = field(default_factory=RadioSection)
    processing: ProcessingSection = field(default_factory=ProcessingSection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    security: SecuritySection = field(default_factory=SecuritySection)
    web: WebSection = field(default_factory=WebSection)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    base_dir: Path = Path(".")

    @property
    def data_dir(self) -> Path:
        return (self.base_dir / self.gateway.data_dir).resolve()

    @property
    def outbox_path(self) -> Path:
        return (self.data_dir / self.outbox.path).resolve()


_SECTIONS = {
    "gateway": GatewaySection,
    "mqtt": MqttSection,
    "radio": RadioSection,
    "processing": ProcessingSection,
    "outbox": OutboxSection,
    "security": SecuritySection,
    "web": WebSection,
}

# Per-device keys the nurse or the hospital may set (see docs/perimon.example.toml).
_DEVICE_KEYS: dict[str, type | tuple[type, ...]] = {
    "label": str,
    "birth_time": str,
    "ga_weeks": (int, float),
    "risk_factors": bool,
}
# Their values follow the rules the nurse view's and the hospital's settings follow
# (docs/schemas/command.schema.json `$defs/settings`): a birth time the jaundice assessment
# cannot read (no time zone, not ISO 8601) or a gestation outside the guideline would leave
# every TcB reading unassessed and raise no alert, so the file is refused instead.
_DEVICE_VALUES = SchemaCheck("command", "settings")


def _check_value(where: str, name: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} {name}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} {name}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} {name}: expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where} {name}: expected a string, got {value!r}")
    return value


def _validate(cfg: Config, src: str) -> None:
    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{src}: {msg}")

    if not _ID_RE.match(cfg.gateway.id):
        raise bad(f"[gateway] id: {cfg.gateway.id!r} must be 1-64 letters, digits, '-' or '_'")
    if not 1 <= cfg.gateway.history_h <= 168:
        raise bad(f"[gateway] history_h: expected 1 to 168 hours, got {cfg.gateway.history_h}")
    if not 1 <= cfg.mqtt.port <= 65535:
        raise bad(f"[mqtt] port: expected 1 to 65535, got {cfg.mqtt.port}")
    if not cfg.mqtt.host:
        raise bad("[mqtt] host: must not be empty")
    if cfg.mqtt.protocol not in ("5", "3.1.1"):
        raise bad(f'[mqtt] protocol: expected "5" or "3.1.1", got {cfg.mqtt.protocol!r}')
    if "#" in cfg.mqtt.topic_prefix or "+" in cfg.mqtt.topic_prefix:
        raise bad("[mqtt] topic_prefix: must not contain MQTT wildcards")
    if not 1 <= cfg.mqtt.receipt_timeout_s <= 86400:
        raise bad(f"[mqtt] receipt_timeout_s: 1 to 86400, got {cfg.mqtt.receipt_timeout_s}")
    if cfg.radio.transport not in ("sim", "ble", "serial"):
        raise bad(f"[radio] transport: {cfg.radio.transport!r} is not one of: sim, ble, serial")
    if cfg.radio.ble_scan_mode not in ("active", "passive"):
        raise bad(f'[radio] ble_scan_mode: "active" or "passive", not {cfg.radio.ble_scan_mode!r}')
    if not 1 <= cfg.radio.ble_max_connections <= 32:
        raise bad(f"[radio] ble_max_connections: 1 to 32, not {cfg.radio.ble_max_connections}")
    if not 23 <= cfg.radio.att_mtu <= 517:
        raise bad(f"[radio] att_mtu: expected 23 to 517, got {cfg.radio.att_mtu}")
    host, _, port = cfg.radio.listen.rpartition(":")
    if not host or not port.isdigit():
        raise bad(f"[radio] listen: expected HOST:PORT, got {cfg.radio.listen!r}")
    w_host, _, w_port = cfg.web.listen.rpartition(":")
    if not w_host or not w_port.isdigit() or not 0 <= int(w_port) <= 65535:
        raise bad(f"[web] listen: expected HOST:PORT, got {cfg.web.listen!r}")
    if bool(cfg.web.cert_file) != bool(cfg.web.key_file):
        raise bad("[web] cert_file and key_file: set both for HTTPS, or neither")
    if cfg.web.bilirubin_unit not in BILIRUBIN_UNITS:
        raise bad(f'[web] bilirubin_unit: "mg/dL" or "umol/L", not {cfg.web.bilirubin_unit!r}')
    if not cfg.web.session_minutes > 0:
        raise bad("[web] session_minutes: must be greater than 0")
    if not cfg.outbox.path:
        raise bad("[outbox] path: must not be empty")
    if not cfg.outbox.max_bytes >= 1024 * 1024:
        raise bad(f"[outbox] max_bytes: expected at least 1 MiB, got {cfg.outbox.max_bytes}")
    if not 0 <= cfg.outbox.max_age_h <= 24 * 365:
        raise bad(f"[outbox] max_age_h: expected 0 to 8760, got {cfg.outbox.max_age_h}")
    p = cfg.processing
    for name in ("fhr_publish_interval_s", "ctg_interval_s", "ctg_window_min", "gap_timeout_s"):
        if not getattr(p, name) > 0:
            raise bad(f"[processing] {name}: must be greater than 0")
    for dev_id, dev in cfg.devices.items():
        if not _ID_RE.match(dev_id):
            raise bad(f"[devices] {dev_id!r}: not a valid device id")
        for key, value in dev.items():
            if key not in _DEVICE_KEYS:
                raise bad(f"[devices.{dev_id}] unknown key {key!r}")
            typ = _DEVICE_KEYS[key]
            if not isinstance(value, typ) or isinstance(value, bool) != (typ is bool):
                raise bad(f"[devices.{dev_id}] {key}: wrong type {type(value).__name__}")
            problem = _DEVICE_VALUES.problem({key: value})  # "<key>: <what it must be>"
            if problem is not None:
                raise bad(f"[devices.{dev_id}] {problem}, got {repr(value)[:50]}")


def config_from_dict(
    raw: dict[str, Any], src: str = "config", base_dir: Path = Path(".")
) -> Config:
    kwargs: dict[str, Any] = {"base_dir": base_dir}
    for name, value in raw.items():
        if name == "devices":
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise ConfigError(f"{src}: [devices] must be a table of tables")
            kwargs["devices"] = value
            continue
        if name not in _SECTIONS:
            known = ", ".join([*_SECTIONS, "devices"])
            raise ConfigError(f"{src}: unknown section [{name}] (known: {known})")
        if not isinstance(value, dict):
            raise ConfigError(f"{src}: [{name}] must be a table")
        cls = _SECTIONS[name]
        defaults = cls()
        keys = {f.name for f in fields(cls)}
        section: dict[str, Any] = {}
        for key, v in value.items():
            if key not in keys:
                raise ConfigError(f"{src}: [{name}] unknown key {key!r}")
            section[key] = _check_value(f"{src}: [{name}]", key, getattr(defaults, key), v)
        kwargs[name] = cls(**section)
    cfg = Config(**kwargs)
    _validate(cfg, src)
    return cfg


def load_config(path: str | Path | None) -> Config:
    """Read and check a config file; None gives the documented defaults."""
    if path is None:
        return config_from_dict({})
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return config_from_dict(raw, str(path), path.parent)
