"""The deployed broker keeps what it acknowledged: Debian's Mosquitto with the persistence and
queue settings of deploy/mosquitto/mosquitto.conf (TLS, ACL and all), a hospital subscriber
with a persistent session that is away, a gateway whose QoS 1 messages are acknowledged, one
autosave, kill -9, a restart: the subscriber gets every acknowledged message."""

from __future__ import annotations

import os
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest

from devtools.broker_tls import make_certs, start_tls_broker
from tests.harness.mqtt import saves_after, session_props
from tests.harness.wait import eventually

pytestmark = pytest.mark.system

N = 1500  # more than Mosquitto's default queue of 1000 messages a client
TOPIC = "perimon/v1/gw-a/device/fh-01/alert"


def _client(tb, name: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(tb.certs / "ca.crt"), certfile=str(tb.certs / f"{name}.crt"),
              keyfile=str(tb.certs / f"{name}.key"), cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
    return c


def test_acknowledged_messages_survive_a_broker_kill(tmp_path):
    certs = make_certs(tmp_path / "certs", ["gw-a", "hospital-ingest"])
    store = tmp_path / "persist"
    tb = start_tls_broker(tmp_path / "broker", certs, {}, persistence_dir=store)
    try:
        # the hospital subscribes with a persistent session, then goes away
        hospital = _client(tb, "hospital-ingest")
        subscribed = threading.Event()
        hospital.on_connect = lambda c, u, f, rc, p: c.subscribe("perimon/v1/#", qos=1)
        hospital.on_subscribe = lambda *a: subscribed.set()
        hospital.connect(
            tb.broker.host, tb.cert_port, clean_start=False, properties=session_props()
        )
        hospital.loop_start()
        assert subscribed.wait(10)
        hospital.disconnect()
        hospital.loop_stop()

        # the gateway publishes; every message is acknowledged
        gw = _client(tb, "gw-a")
        acked: list[int] = []
        gw.on_publish = lambda c, u, mid, rc, p: acked.append(mid) if not rc.is_failure else None
        gw.max_inflight_messages_set(100)
        gw.connect(tb.broker.host, tb.cert_port)
        gw.loop_start()
        for i in range(N):
            gw.publish(TOPIC, f'{{"seq": {i + 1}}}', 1)
        eventually(lambda: len(acked) == N, 30, lambda: f"{len(acked)} of {N} acknowledged")
        gw.disconnect()
        gw.loop_stop()

        # the save window (docs/reliability.md): wait for a save that began after the last PUBACK
        saves_after(store / "mosquitto.db", 2, 10)
        tb.broker.kill()  # SIGKILL: no save on the way out
        tb = start_tls_broker(tmp_path / "broker", certs, {}, persistence_dir=store)

        got: list[bytes] = []
        present: list[bool] = []
        hospital = _client(tb, "hospital-ingest")
        hospital.on_connect = lambda c, u, f, rc, p: present.append(f.session_present)
        hospital.on_message = lambda c, u, m: got.append(bytes(m.payload))
        hospital.connect(
            tb.broker.host, tb.cert_port, clean_start=False, properties=session_props()
        )
        hospital.loop_start()
        eventually(lambda: len(set(got)) >= N, 30,
                   lambda: f"{N - len(set(got))} acknowledged messages lost")  # fmt: skip
        hospital.disconnect()
        hospital.loop_stop()
        assert present == [True]  # the session (and its subscription) survived the kill
        assert len(set(got)) == N, f"{N - len(set(got))} acknowledged messages lost"
        assert sorted(set(got)) == sorted(f'{{"seq": {i + 1}}}'.encode() for i in range(N))
    finally:
        tb.stop()
    assert os.path.exists(store / "mosquitto.db")
