"""Per-device settings kept on the gateway, and what applying them changes.

`DeviceSettings` holds what is assigned per device on the gateway (bed or visit label, the
baby's birth time and gestational age, risk colour, measurement interval, CTG mode) in
`{data_dir}/devices.json`. None of it ever goes into an MQTT topic or payload. Nurses set them
in the nurse view, the hospital over MQTT (gateway/publish/downlink.py); both go through
`apply_settings`, so a setting means the same whichever way it arrived.

Risk colour: the five-colour pregnancy risk grading of China's National Health Commission
(NHC General Office, "Work specification for pregnancy risk assessment and management",
Guo Wei Ban Fu You Fa [2017] No. 35): green low risk, yellow general risk, orange relatively
high risk, red high risk, purple infectious disease. That specification sets who manages a
pregnancy and where, not CTG or bilirubin cut-offs, so perimon changes no clinical threshold
with the colour. What it changes (the project's choice, documented in docs/mqtt.md): for
orange, red and purple, alerts that would be raised as `medium` are raised as `high`.

CTG mode: which analysis heads a fetal monitor's CTG messages, nurse view and session report:
`antenatal` (the Dawes-Redman criteria; the default, home monitoring is before labour) or
`intrapartum` (FIGO 2015). Both analyses are always computed and published (docs/fhr.md).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.schemas import SchemaCheck, load_schema
from gateway.times import parse_time

if TYPE_CHECKING:
    from gateway.context import GatewayContext

log = logging.getLogger(__name__)

# China NHC 2017 (above), as the command schema lists them for the hospital
RISK_COLOURS: tuple[str, ...] = tuple(load_schema("command")["$defs"]["risk_colour"]["enum"])
ESCALATING_COLOURS = ("orange", "red", "purple")  # medium alerts raised as high
CTG_MODES: tuple[str, ...] = tuple(load_schema("command")["$defs"]["ctg_mode"]["enum"])
DEFAULT_CTG_MODE = "antenatal"  # home monitors record before labour
BABY_KEYS = (
    "label",
    "birth_time",
    "ga_weeks",
    "risk_factors",
)  # what the jaundice assessment reads
_SETTINGS = SchemaCheck("command", "settings")  # nurse view and hospital: one set of rules
_BIRTH_TIME_SLACK_S = 300.0  # a clock a few minutes ahead of the gateway's is not the future


class DeviceSettings:
    """Per-device settings kept on the gateway, validated, persisted as JSON. Which settings
    there are and what each may be: `$defs/settings` of docs/schemas/command.schema.json."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.values: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(raw, dict):
                    self.values = {k: v for k, v in raw.items() if isinstance(v, dict)}
            except (OSError, ValueError) as exc:
                log.error("cannot read %s (%s): device settings start empty", path, exc)

    @staticmethod
    def check(changes: dict[str, Any]) -> dict[str, Any]:
        """Validated copy of `changes`; raises ValueError with a message a person can read.

        The rules are docs/schemas/command.schema.json's `$defs/settings`; null or "" clears a
        setting (None here), numbers are stored as floats, labels stripped."""
        _SETTINGS.check(changes)
        out: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None or value == "":
                out[key] = None  # cleared
            elif key == "birth_time":
                # "not in the future" needs the time now, which a schema cannot know
                if (parse_time(value) or 0.0) > time.time() + _BIRTH_TIME_SLACK_S:
                    raise ValueError("birth_time: in the future")
                out[key] = value
            elif key in ("ga_weeks", "measurement_interval_min"):
                out[key] = float(value)
            elif key == "label":
                out[key] = value.strip()
            else:
                out[key] = value
        return out

    def get(self, device_id: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.values.get(device_id, {}))

    def update(self, device_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        checked = self.check(changes)
        with self.lock:
            cur = self.values.setdefault(device_id, {})
            for k, v in checked.items():
                if v is None:
                    cur.pop(k, None)
                else:
                    cur[k] = v
            result = dict(cur)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.values, indent=1, sort_keys=True), "utf-8")
                tmp.replace(self.path)
        return result


def escalates(settings: dict[str, Any]) -> bool:
    """Whether a device's risk colour raises its medium alerts as high."""
    return settings.get("risk_colour") in ESCALATING_COLOURS


def ctg_mode(settings: dict[str, Any]) -> str:
    """Which CTG analysis heads a device's messages and reports: its setting, else antenatal."""
    mode = settings.get("ctg_mode")
    return mode if mode in CTG_MODES else DEFAULT_CTG_MODE


def baby_profile(configured: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The baby's details the jaundice assessment reads: the configuration file's, replaced by
    whatever nurses or the hospital set on the gateway (a cleared setting clears it)."""
    baby = dict(configured)
    for key in BABY_KEYS:
        if key in settings:
            baby[key] = settings[key]
        else:
            baby.pop(key, None)
    return baby


def apply_settings(ctx: GatewayContext, device_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Store settings for a device and apply them to its running processor (ValueError if bad).

    Birth time, gestational age and risk factors feed the jaundice assessment; the risk colour
    escalates alerts; the measurement interval is shown as "next due"; the CTG mode chooses the
    headline analysis. The nurse view and the hospital's commands both come here.
    """
    result = ctx.history.settings.update(device_id, changes)
    baby = baby_profile(ctx.cfg.devices.get(device_id, {}), result)
    ctx.cfg.devices[device_id] = baby
    session = ctx.sessions.get(device_id)
    if session is not None and session.processor is not None:
        session.processor.apply_settings(result, baby)
    return result
