"""Alerts as state changes: each condition is raised once and cleared once, not repeated
every second, so a nurse's phone does not ring for a condition already known. A condition
that comes and goes (signal loss) goes through `Hysteresis` first, so that neither a brief
one nor a brief break in a long one makes a raise/clear pair."""

from __future__ import annotations

import time
from typing import Any, Protocol, TypedDict, Unpack

from gateway.publish.mqtt import QOS_READING
from gateway.times import iso_time


class PublishOptions(TypedDict, total=False):
    """The options of `Publisher.publish` (gateway/publish/mqtt.py), passed by keyword."""

    qos: int
    retain: bool
    expiry_s: int | None


class Publish(Protocol):
    """How processing hands a message to the gateway (`Gateway.publish`): the topic's parts
    after `{prefix}/{gateway}/`, the JSON payload and `Publisher.publish`'s options."""

    def __call__(
        self, parts: tuple[str, ...], payload: dict[str, Any], **options: Unpack[PublishOptions]
    ) -> None: ...


# Every alert kind the gateway raises, with what it means: the MQTT contract (docs/mqtt.md)
# and the nurse view's labels (gateway/web/static/js/alerts.js) list the same kinds, checked by
# tests/test_contract.py, so a new kind cannot reach a nurse unexplained.
ALERT_KINDS = {
    "signal_loss": "no fetal heart rate for most of the last 90 s during a recording session",
    "maternal_coincidence": "the Doppler rate follows the mother's pulse",
    "maternal_unmonitored": "the mother's pulse (PPG) gives no reading for most of the last "
    "minute: fetal rates are withheld until it does",
    "bradycardia": "running FHR below 110 bpm for 3 min",
    "tachycardia": "running FHR above 160 bpm for 3 min",
    "ctg_pathological": "FIGO 2015 class pathological over the rolling window",
    "sample_rate": "the device samples at the wrong rate: its rates are withheld",
    "tcb_above_exchange": "TcB at or above the AAP 2022 exchange-transfusion threshold",
    "tcb_escalation_of_care": "TcB within 2 mg/dL of the exchange threshold",
    "tcb_above_phototherapy": "TcB at or above the AAP 2022 phototherapy threshold",
    "serum_bilirubin_advised": "the AAP 2022 rule asks for a serum bilirubin to confirm",
    "tcb_rapid_rise": "TcB rising faster than the AAP 2022 rate for haemolysis",
    "device_unverified": "an enrolled device does not prove its enrolled key, or its frames fail "
    "verification",
}


class AlertTracker:
    def __init__(self, device_id: str, publish: Publish) -> None:
        self.device_id = device_id
        self.publish = publish
        self.escalate = False  # from the device's risk colour (gateway/state/settings.py)
        self._active: dict[str, float] = {}  # kind -> raised at (unix s)

    def active(self) -> list[str]:
        return sorted(self._active)

    def set(self, kind: str, active: bool, detail: str, severity: str = "medium") -> None:
        if kind not in ALERT_KINDS:
            raise ValueError(f"alert kind {kind!r} is not in ALERT_KINDS")
        if active == (kind in self._active):
            return
        if self.escalate and severity == "medium":
            severity = "high"
        now = time.time()
        if active:
            self._active[kind] = now
            raised = now
        else:
            raised = self._active.pop(kind)
        self.publish(
            ("device", self.device_id, "alert"),
            {
                "msg_id": f"{self.device_id}:alert:{kind}:{int(raised * 1000)}:"
                + ("raised" if active else "cleared"),
                "device_id": self.device_id,
                "alert": kind,
                "state": "raised" if active else "cleared",
                "severity": severity,
                "detail": detail,
                "t": iso_time(now),
                "raised_at": iso_time(raised),
            },
            qos=QOS_READING,
        )


class Hysteresis:
    """Whether a condition measured as a level (the share of the last minute without a rate,
    say) is on, with hysteresis and minimum durations: it comes on once the level has stayed at
    or above `on_at` for `on_after_s`, and goes off once it has stayed at or below `off_at` for
    `off_after_s`. A condition that goes off and comes back within `off_after_s` is one
    condition (one raise, one clear). Pure: time (seconds, any origin) is passed in."""

    __slots__ = ("off_after_s", "off_at", "on", "on_after_s", "on_at", "_since")

    def __init__(self, on_at: float, on_after_s: float, off_at: float, off_after_s: float) -> None:
        if off_at > on_at:
            raise ValueError("off_at must not be above on_at")
        self.on_at, self.on_after_s = on_at, on_after_s
        self.off_at, self.off_after_s = off_at, off_after_s
        self.on = False
        self._since: float | None = None  # the level has been past the next threshold since

    def update(self, level: float, now_s: float) -> bool:
        """The level at `now_s` (not before the last update's); returns whether it is on."""
        past = level <= self.off_at if self.on else level >= self.on_at
        if not past:
            self._since = None
            return self.on
        if self._since is None:
            self._since = now_s
        if now_s - self._since >= (self.off_after_s if self.on else self.on_after_s):
            self.on = not self.on
            self._since = None
        return self.on

    def reset(self) -> None:
        """Off at once, nothing remembered (the condition no longer applies)."""
        self.on = False
        self._since = None
