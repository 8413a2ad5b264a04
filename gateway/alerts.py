"""Alerts as state changes: each condition is raised once and cleared once, not repeated
every second, so a nurse's phone does not ring for a condition already known."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.mqtt import QOS_READING, iso_time


class AlertTracker:
    escalate = False  # set per device from its risk colour (gateway/downlink.py): medium -> high

    def __init__(self, device_id: str, publish: Callable[..., None]) -> None:
        self.device_id = device_id
        self.publish = publish
        self._active: dict[str, float] = {}  # kind -> raised at (unix s)

    def active(self) -> list[str]:
        return sorted(self._active)

    def set(self, kind: str, active: bool, detail: str, severity: str = "medium") -> None:
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
