"""Per-device settings kept on the gateway, and what applying them changes.

`DeviceSettings` holds what is assigned per device on the gateway (bed or visit label, the
baby's birth time and gestational age, risk colour, measurement interval) in
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
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.times import parse_time

if TYPE_CHECKING:
    from gateway.context import GatewayContext

log = logging.getLogger(__name__)

RISK_COLOURS = ("green", "yellow", "orange", "red", "purple")  # China NHC 2017, above
ESCALATING_COLOURS = ("orange", "red", "purple")  # medium alerts raised as high
BABY_KEYS = (
    "label",
    "birth_time",
    "ga_weeks",
    "risk_factors",
)  # what the jaundice assessment reads


class DeviceSettings:
    """Per-device settings kept on the gateway, validated, persisted as JSON."""

    KEYS = (
        "label",
        "birth_time",
        "ga_weeks",
        "risk_factors",
        "risk_colour",
        "measurement_interval_min",
    )

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
        """Validated copy of `changes`; raises ValueError with a message a person can read."""
        out: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in DeviceSettings.KEYS:
                raise ValueError(f"unknown setting {key!r}")
            if value is None or value == "":
                out[key] = None  # cleared
                continue
            if key == "label":
                if not isinstance(value, str) or len(value) > 40:
                    raise ValueError("label: text of at most 40 characters")
                out[key] = value.strip()
            elif key == "birth_time":
                t = parse_time(value) if isinstance(value, str) else None
                if t is None:
                    raise ValueError("birth_time: an ISO 8601 time with a time zone")
                if t > time.time() + 300:
                    raise ValueError("birth_time: in the future")
                out[key] = value
            elif key == "ga_weeks":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError("ga_weeks: a number of weeks")
                if not (math.isfinite(value) and 35 <= value <= 45):
                    raise ValueError(
                        "ga_weeks: 35 to 45 (the AAP 2022 thresholds cover 35 weeks or more)"
                    )
                out[key] = float(value)
            elif key == "risk_factors":
                if not isinstance(value, bool):
                    raise ValueError("risk_factors: true or false")
                out[key] = value
            elif key == "risk_colour":
                if value not in RISK_COLOURS:
                    raise ValueError(f"risk_colour: one of {', '.join(RISK_COLOURS)}")
                out[key] = value
            elif key == "measurement_interval_min":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError("measurement_interval_min: a number of minutes")
                if not 1 <= value <= 7 * 24 * 60:
                    raise ValueError("measurement_interval_min: 1 minute to 7 days")
                out[key] = float(value)
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
    escalates alerts; the measurement interval is shown as "next due". The nurse view and the
    hospital's commands both come here.
    """
    result = ctx.history.settings.update(device_id, changes)
    baby = baby_profile(ctx.cfg.devices.get(device_id, {}), result)
    ctx.cfg.devices[device_id] = baby
    session = ctx.sessions.get(device_id)
    if session is not None and session.processor is not None:
        session.processor.apply_settings(result, baby)
    return result
