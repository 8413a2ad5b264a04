"""A console subscriber that shows what a hospital server receives (used by the demo)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def describe(topic: str, msg: dict[str, Any]) -> str | None:
    """One readable line per message, or None for messages not worth a line."""
    kind = topic.rsplit("/", 1)[-1]
    dev = msg.get("device_id", "")
    if kind == "fhr":
        vals = [v for v in msg.get("fhr_bpm", []) if v is not None]
        q = msg.get("quality") or [0]
        rate = f"{sum(vals) / len(vals):5.1f} bpm" if vals else "  --- (no signal)"
        return f"{dev:8s} FHR {rate}  quality {max(q):.2f}  [{msg['t_start']}]"
    if kind == "tcb":
        if msg.get("tcb_mg_dl") is None:
            return f"{dev:8s} TcB flagged: {msg.get('flag')}"
        a = msg.get("assessment") or {}
        zone = f"  Bhutani {a['bhutani_zone']}" if a.get("bhutani_zone") else ""
        return (
            f"{dev:8s} TcB {msg['tcb_mg_dl']:5.1f} mg/dL "
            f"({msg['ci_low_mg_dl']:.1f}-{msg['ci_high_mg_dl']:.1f}){zone}"
        )
    if kind == "alert":
        return f"{dev:8s} ALERT {msg['alert']} {msg['state']}: {msg['detail']}"
    if kind == "ctg":
        return f"{dev:8s} CTG baseline {msg.get('baseline_bpm')} bpm, FIGO {msg.get('figo_class')}"
    if kind == "status" and "gateway_id" in msg and "device_id" not in msg:
        return f"gateway {msg['gateway_id']} {msg['state']}"
    return None


class ConsoleSubscriber:
    def __init__(self, host: str, port: int, prefix: str, protocol: str = "5",
                 out: Callable[[str], None] = print) -> None:  # fmt: skip
        self.out = out
        self.prefix = prefix
        self.seen = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        )
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect_async(host, port)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            msg = json.loads(message.payload)
        except ValueError:
            self.out(f"(unreadable message on {message.topic})")
            return
        line = describe(message.topic, msg)
        if line:
            self.seen.set()
            self.out(line)

    def start(self) -> None:
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
