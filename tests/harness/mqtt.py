"""A real Mosquitto for a test, and the subscriber that watches what reaches it."""

from __future__ import annotations

import json
import ssl
import threading
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devtools.broker import Broker, mosquitto_binary, start_broker
from tests.harness.wait import eventually

PREFIX = "perimon/v1"

# A broker that keeps its subscribers' sessions across a kill -9 (saved after every change), for
# a subscriber with a persistent session: what the gateway publishes while the subscriber is
# still reconnecting waits for it in the broker. Its database is {dir}/mosquitto.db.
PERSISTENT_BROKER = (
    "user root\npersistence true\npersistence_location {dir}/\nautosave_interval 1\nautosave_on_changes true\n"
    "max_queued_messages 0\nmax_queued_bytes 0\n"
)


def start_mosquitto(workdir: Path, port: int | None = None, persistent: bool = False) -> Broker:
    """Mosquitto on 127.0.0.1 (a free port unless given), listening when this returns; with
    `persistent`, PERSISTENT_BROKER with its database in `workdir` (the same `workdir` and
    port after a kill is the same broker, restarted)."""
    assert mosquitto_binary(), "Mosquitto is not installed: run scripts/test (it installs it)"
    conf = PERSISTENT_BROKER.format(dir=workdir) if persistent else ""
    b = start_broker(workdir, port, conf)
    assert b.kind == "mosquitto"
    return b


def session_props(expiry_s: int = 3600) -> Properties:
    """CONNECT properties of a persistent session: the broker keeps it `expiry_s` after a drop."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    return props


def saves_after(db: Path, n: int, timeout_s: float) -> None:
    """Wait until Mosquitto has replaced its database file `n` times from now (each save writes
    a new file and renames it over the old one). Two saves: the second began after this call."""

    def stamp():
        try:
            st = db.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    seen = [stamp()]

    def replaced() -> bool:
        now = stamp()
        if now is not None and now != seen[-1]:
            seen.append(now)
        return len(seen) > n

    eventually(replaced, timeout_s, f"the broker did not save {db.name} {n} times")


class Message(NamedTuple):
    topic: str
    payload: dict[str, Any]
    retain: bool


class Subscriber:
    """An MQTT 5 client subscribed to everything under perimon/ at QoS 1, keeping every message
    in arrival order (`messages`, and `user_properties` beside them). `persistent`: a session the
    broker keeps across a drop of either side, reconnecting at once (the hospital of the fault
    tests). `tls`: a devtools.broker_tls broker, reached with the hospital's certificate."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        gateway: str = "gw-test",
        client_id: str = "",
        persistent: bool = False,
        tls=None,
    ) -> None:
        self.gateway = gateway
        self.messages: list[Message] = []
        self.user_properties: list[dict[str, str]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.certs / "ca.crt"),
                                certfile=str(tls.certs / "hospital-ingest.crt"),
                                keyfile=str(tls.certs / "hospital-ingest.key"),
                                cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("perimon/#", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        if persistent:
            self.client.reconnect_delay_set(0.2, 1)
            self.client.connect(host, port, clean_start=False, properties=session_props())
        else:
            self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(10), "the subscription was not acknowledged"

    def _on_message(self, client, userdata, m) -> None:
        props = dict(getattr(m.properties, "UserProperty", []) or [])
        with self.lock:
            self.messages.append(Message(m.topic, json.loads(m.payload), m.retain))
            self.user_properties.append(props)

    def topic(self, *parts: str) -> str:
        return "/".join((PREFIX, self.gateway, *parts))

    def on(self, *parts: str) -> list[dict]:
        """The payloads published on the gateway's topic `parts` ("status"; "device", id, kind)."""
        topic = self.topic(*parts)
        with self.lock:
            return [m.payload for m in self.messages if m.topic == topic]

    def of(self, device: str, kind: str) -> list[dict]:
        """What the gateway published about `device` under `kind` (fhr, tcb, status, alert...)."""
        return self.on("device", device, kind)

    def kinds(self, device: str) -> set[str]:
        start = self.topic("device", device) + "/"
        with self.lock:
            return {m.topic.rsplit("/", 1)[1] for m in self.messages if m.topic.startswith(start)}

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def subscribed_and_saved(broker: Broker, workdir: Path, **kw) -> Subscriber:
    """A persistent Subscriber on a PERSISTENT_BROKER in `workdir`, returned once the broker's
    database on disk holds its subscription: a kill -9 from then on does not lose it."""
    sub = Subscriber(broker.host, broker.port, persistent=True, **kw)
    db = workdir / "mosquitto.db"
    eventually(lambda: db.exists() and b"perimon/#" in db.read_bytes(), 10,
               "the broker did not save the subscription")  # fmt: skip
    return sub
