"""The deployed Mosquitto configuration (deploy/mosquitto/) against a real Mosquitto: TLS only,
every client authenticated, each gateway confined to perimon/v1/<its id>/#."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from devtools.broker_tls import make_certs, start_tls_broker
from tests.harness.wait import eventually

pytestmark = pytest.mark.system

PASSWORDS = {"gw-a": "alpha-secret", "gw-b": "bravo-secret", "hospital-ingest": "ingest-secret"}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    work = tmp_path_factory.mktemp("tls")
    certs = make_certs(work / "certs", ["gw-a", "gw-b", "hospital-ingest"])
    rogue = make_certs(work / "rogue", ["gw-a"])  # the right name, from another CA
    b = start_tls_broker(work / "broker", certs, PASSWORDS)
    b.rogue = rogue
    yield b
    b.stop()


class Client:
    """A paho MQTT 5 client that records what the broker answered."""

    def __init__(self, tls, name=None, *, port=None, cert=True, password=None, ca=None,
                 certdir=None, tls_on=True) -> None:  # fmt: skip
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.connack = None
        self.done = threading.Event()
        self.suback: list = []
        self.puback: dict[int, object] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        certdir = certdir or tls.certs
        if tls_on:
            self.c.tls_set(
                ca_certs=str(ca or tls.certs / "ca.crt"),
                certfile=str(certdir / f"{name}.crt") if cert and name else None,
                keyfile=str(certdir / f"{name}.key") if cert and name else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        if password is not None:
            self.c.username_pw_set(name, password)
        self.c.on_connect = self._on_connect
        self.c.on_connect_fail = lambda c, u: self.done.set()
        self.c.on_disconnect = lambda c, u, f, rc, p: self.done.set()
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.suback.append(rcs)
        self.c.on_publish = lambda c, u, mid, rc, p: self.puback.__setitem__(mid, rc)
        self.c.on_message = self._on_message
        self.port = port or tls.cert_port

    def _on_connect(self, c, u, flags, rc, props) -> None:
        self.connack = rc
        self.done.set()

    def _on_message(self, c, u, m) -> None:
        with self.lock:
            self.messages.append((m.topic, m.payload))

    def connect(self) -> bool:
        try:
            self.c.connect("127.0.0.1", self.port)
        except (OSError, ssl.SSLError):
            return False
        self.c.loop_start()
        self.done.wait(10)
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> list:
        n = len(self.suback)
        self.c.subscribe(topic, qos=1)
        eventually(lambda: len(self.suback) > n, 10, f"no SUBACK to {topic}", every_s=0.02)
        return self.suback[-1]

    def publish(self, topic: str, payload: bytes) -> object:
        info = self.c.publish(topic, payload, qos=1)
        eventually(lambda: info.mid in self.puback, 10, f"no PUBACK on {topic}", every_s=0.02)
        return self.puback[info.mid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _connected(tls, *args, **kw) -> Client:
    c = Client(tls, *args, **kw)
    assert c.connect(), f"{args} {kw} was refused: {c.connack}"
    return c


def test_a_gateway_publishes_only_under_its_own_id_and_reads_only_its_own(tls):
    hospital = _connected(tls, "hospital-ingest")
    a = _connected(tls, "gw-a")
    b = _connected(tls, "gw-b")
    try:
        assert not hospital.subscribe("perimon/v1/#")[0].is_failure
        assert not a.subscribe("perimon/v1/gw-a/#")[0].is_failure
        a.subscribe("perimon/v1/gw-b/#")  # may be granted; its messages must never arrive
        a.subscribe("perimon/v1/#")
        assert not a.publish("perimon/v1/gw-a/device/fh-01/fhr", b"own").is_failure
        spoof = a.publish("perimon/v1/gw-b/device/fh-01/fhr", b"spoofed")
        assert spoof is not None and spoof.is_failure  # PUBACK: not authorized
        assert b.publish("perimon/v1/gw-b/device/fh-02/tcb", b"b-data").value == 0
        assert hospital.publish("perimon/v1/gw-a/device/fh-01/fhr", b"x").is_failure
        eventually(lambda: len(hospital.messages) >= 2, 5, "the allowed messages did not arrive")
        time.sleep(0.5)  # a window for anything wrongly routed to arrive in: none may
        got = sorted(hospital.messages)
        assert got == [("perimon/v1/gw-a/device/fh-01/fhr", b"own"),
                       ("perimon/v1/gw-b/device/fh-02/tcb", b"b-data")]  # fmt: skip
        assert {t for t, _ in a.messages} == {"perimon/v1/gw-a/device/fh-01/fhr"}
    finally:
        for c in (hospital, a, b):
            c.close()


def test_password_listener_confines_gateways_the_same_way(tls):
    a = _connected(tls, "gw-a", port=tls.password_port, cert=False, password="alpha-secret")
    try:
        assert not a.publish("perimon/v1/gw-a/status", b"{}").is_failure
        assert a.publish("perimon/v1/gw-b/status", b"{}").is_failure
    finally:
        a.close()
    wrong = Client(tls, "gw-a", port=tls.password_port, cert=False, password="guess")
    assert not wrong.connect()
    wrong.close()


@pytest.mark.parametrize(
    "how",
    ["anonymous_tls", "anonymous_password_port", "rogue_ca_cert", "untrusted_server"],
)
def test_unauthenticated_clients_are_refused(tls, how):
    if how == "anonymous_tls":  # TLS but no client certificate
        c = Client(tls, None, cert=False)
    elif how == "anonymous_password_port":  # TLS, no username
        c = Client(tls, None, port=tls.password_port, cert=False)
    elif how == "rogue_ca_cert":  # a certificate for "gw-a" from a CA the broker does not trust
        c = Client(tls, "gw-a", certdir=tls.rogue)
    else:  # the client does not trust the server: a man in the middle is detected
        c = Client(tls, "gw-a", ca=tls.rogue / "ca.crt")
    assert not c.connect()
    assert c.connack is None or c.connack.is_failure
    c.close()


@pytest.mark.parametrize("port_attr", ["cert_port", "password_port"])
def test_plain_text_mqtt_is_refused(tls, port_attr):
    """An MQTT CONNECT in clear text gets no CONNACK: the listeners speak only TLS."""
    connect = bytes.fromhex("101000044d5154540402003c0004") + b"anon"
    with socket.create_connection(("127.0.0.1", getattr(tls, port_attr)), timeout=5) as s:
        s.sendall(connect)
        try:
            reply = s.recv(64)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert not reply.startswith(b"\x20")  # 0x20 would be a CONNACK
