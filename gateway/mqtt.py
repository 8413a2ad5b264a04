"""Publishing to the hospital over MQTT 5 with paho-mqtt.

Topics and payloads are specified in docs/mqtt.md. The gateway's availability is a retained
message with a Last Will, so subscribers learn of an unclean loss from the broker itself.
paho's network loop runs in its own thread; publish() is safe to call from asyncio code.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import MqttSection

log = logging.getLogger(__name__)

QOS_READING = 1  # readings and alerts: at least once, de-duplicated by msg_id downstream
QOS_TRACE = 0  # the live trace is superseded every second; loss is shown as a gap


def gateway_topic(prefix: str, gateway_id: str, *parts: str) -> str:
    return "/".join([prefix, gateway_id, *parts])


class Publisher:
    def __init__(self, cfg: MqttSection, gateway_id: str) -> None:
        self.cfg = cfg
        self.gateway_id = gateway_id
        self.connected = threading.Event()
        self._stopping = False
        self.published = 0
        self.v5 = cfg.protocol == "5"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"perimon-{gateway_id}",
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        )
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls:
            self.client.tls_set(
                ca_certs=cfg.ca_file or None,
                certfile=cfg.cert_file or None,
                keyfile=cfg.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self.client.will_set(
            self.topic("status"), self._status_payload("offline", "connection lost"), 1, True
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(1, 30)
        self.client.max_queued_messages_set(0)  # paho keeps QoS>0 messages while offline

    def topic(self, *parts: str) -> str:
        return gateway_topic(self.cfg.topic_prefix, self.gateway_id, *parts)

    def _status_payload(self, state: str, reason: str = "") -> str:
        return json.dumps(
            {
                "gateway_id": self.gateway_id,
                "state": state,
                "reason": reason,
                "t": _iso(time.time()),
            }
        )

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker refused the connection: %s", reason_code)
            return
        log.info("connected to MQTT broker %s:%d", self.cfg.host, self.cfg.port)
        client.publish(self.topic("status"), self._status_payload("online"), 1, True)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if self._stopping:
            return
        log.warning("MQTT disconnected (%s); reconnecting", reason_code)

    def start(self) -> None:
        """Connect in the background; an unreachable broker is retried, never fatal."""
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        info = self.client.publish(
            self.topic("status"), self._status_payload("offline", "shutdown"), 1, True
        )
        if self.connected.is_set():
            info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def publish(
        self,
        parts: tuple[str, ...],
        payload: dict[str, Any],
        *,
        qos: int = QOS_READING,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> None:
        props = None
        if self.v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ContentType = "application/json"
            if expiry_s is not None:
                props.MessageExpiryInterval = expiry_s
            if "msg_id" in payload:
                props.UserProperty = [("msg_id", str(payload["msg_id"]))]
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        self.client.publish(self.topic(*parts), body, qos, retain, props)
        self.published += 1


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


iso_time = _iso
