"""Who may be whom on the deployed broker (deploy/mosquitto/, a real Mosquitto): a client id
belongs to one identity, and each hospital identity may send only its own commands.

A compromised gateway that connects with another gateway's client id must not disconnect it
(nor make the broker publish its "offline" Last Will); the gateway itself keeps one connection
under its identity, on which its commands come and are answered; the hospital's ingest service
may acknowledge alerts and nothing else (no risk colour set to green), its commander may send
every command."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devtools.broker_tls import make_certs, start_tls_broker
from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.harness.chain import gateway_config, running_gateway
from tests.harness.wait import eventually, eventually_async

pytestmark = pytest.mark.system

PASSWORDS = {"gw-a": "alpha-secret", "gw-b": "bravo-secret"}
HOSPITAL_PASSWORDS = {"hospital-ingest": "ingest-secret"}
NAMES = ["gw-a", "gw-b", "gw-test", "hospital-ingest", "hospital-commander"]


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    work = tmp_path_factory.mktemp("ids")
    certs = make_certs(work / "certs", NAMES)
    b = start_tls_broker(work / "broker", certs, PASSWORDS,
                         hospital_passwords=HOSPITAL_PASSWORDS)  # fmt: skip
    b.log = work / "broker" / "broker.log"
    yield b
    b.stop()


class Client:
    """A paho MQTT 5 client over TLS that records its connection's fate and what it got."""

    def __init__(self, tls, name: str, client_id: str, *, port=None, password=None,
                 will: str | None = None, subscribe: str | None = None) -> None:  # fmt: skip
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)  # fmt: skip
        cert = password is None
        self.c.tls_set(ca_certs=str(tls.certs / "ca.crt"),
                       certfile=str(tls.certs / f"{name}.crt") if cert else None,
                       keyfile=str(tls.certs / f"{name}.key") if cert else None,
                       cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
        if password is not None:
            self.c.username_pw_set(name, password)
        if will:
            self.c.will_set(will, b"offline", 1, False)
        self.connacks: list = []
        self.disconnects = 0
        self.suback = threading.Event()
        self.puback: dict[int, object] = {}
        self.messages: list[tuple[str, bytes, bytes | None]] = []
        self.c.on_connect = self._on_connect
        self.topic = subscribe
        self.c.on_disconnect = lambda c, u, f, rc, p: setattr(self, "disconnects",
                                                               self.disconnects + 1)  # fmt: skip
        self.c.on_subscribe = lambda *a: self.suback.set()
        self.c.on_publish = lambda c, u, mid, rc, p: self.puback.__setitem__(mid, rc)
        self.c.on_message = lambda c, u, m: self.messages.append(
            (m.topic, bytes(m.payload), getattr(m.properties, "CorrelationData", None))
        )
        self.c.connect_async("127.0.0.1", port or tls.cert_port)
        self.c.loop_start()

    def _on_connect(self, c, u, f, rc, p) -> None:
        self.connacks.append(rc)
        if self.topic and not rc.is_failure:  # at every connection: no session is kept
            c.subscribe(self.topic, qos=1)

    def connected(self) -> bool:
        return bool(self.connacks) and not self.connacks[-1].is_failure

    def publish(self, topic: str, body: dict, reply_to: str | None = None, corr: bytes = b""):
        props = Properties(PacketTypes.PUBLISH)
        if reply_to:
            props.ResponseTopic = reply_to
            props.CorrelationData = corr
        info = self.c.publish(topic, json.dumps(body), 1, False, props)
        eventually(lambda: info.mid in self.puback, 10, f"no PUBACK on {topic}", every_s=0.02)
        return self.puback[info.mid]

    def answer(self, corr: bytes) -> dict:
        got = eventually(lambda: [p for _, p, c in self.messages if c == corr], 10,
                         f"no answer to {corr!r}", every_s=0.05)  # fmt: skip
        return json.loads(got[0])

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.mark.parametrize("how", ["certificate", "password"])
def test_a_gateway_cannot_take_another_gateways_connection(tls, how):
    port, pw = (tls.cert_port, {}) if how == "certificate" else (tls.password_port, PASSWORDS)
    hospital = Client(tls, "hospital-ingest", "hospital-watch", subscribe="perimon/v1/+/status")
    eventually(hospital.suback.is_set, 10, "the hospital did not subscribe")
    b = Client(tls, "gw-b", "perimon-gw-b", port=port, password=pw.get("gw-b"),
               will="perimon/v1/gw-b/status")  # fmt: skip
    eventually(b.connected, 10, "gw-b did not connect")
    # gw-a, compromised, connects with gw-b's client id (and with gw-b's name as one), again
    rogues = [Client(tls, "gw-a", cid, port=port, password=pw.get("gw-a"))
              for cid in ("perimon-gw-b", "gw-b", "perimon-gw-b")]  # fmt: skip
    try:
        eventually(lambda: all(r.connacks for r in rogues), 10, "the rogue got no CONNACK")
        time.sleep(1.0)  # what a takeover does (disconnect, Last Will) happens within this
        # Before: gw-b was disconnected at each rogue connection and the broker published its
        # "offline" Last Will each time.
        assert b.disconnects == 0 and b.connected()
        assert not [m for m in hospital.messages if m[0] == "perimon/v1/gw-b/status"]
    finally:
        for c in (*rogues, b, hospital):
            c.close()


def test_the_hospitals_services_share_an_identity_only_on_their_own_listener(tls):
    port, pw = tls.hospital_port, HOSPITAL_PASSWORDS["hospital-ingest"]
    workers = [Client(tls, "hospital-ingest", f"ingest-{i}", port=port, password=pw)
               for i in range(2)]  # fmt: skip
    gateway = Client(tls, "gw-a", "gw-a-elsewhere", port=port, password=PASSWORDS["gw-a"])
    try:
        eventually(lambda: all(w.connected() for w in workers), 10, "a worker did not connect")
        eventually(lambda: gateway.connacks or gateway.disconnects, 10, "no answer to gw-a")
        time.sleep(0.5)
        assert all(w.disconnects == 0 for w in workers)  # two connections, one identity
        assert not gateway.connected()  # no gateway can connect there, so choose a client id
    finally:
        for c in (*workers, gateway):
            c.close()


def _gateway(tmp_path, tls):
    mqtt_cfg = {"host": "127.0.0.1", "port": tls.cert_port, "tls": True,
                "ca_file": str(tls.certs / "ca.crt"), "cert_file": str(tls.certs / "gw-test.crt"),
                "key_file": str(tls.certs / "gw-test.key")}  # fmt: skip
    raw = gateway_config(tmp_path, "gw-test", mqtt=mqtt_cfg)
    raw["devices"] = {"fh-01": {}}
    return Gateway(config_from_dict(raw))


def test_the_gateway_keeps_one_connection_and_answers_commands_on_it(tls, tmp_path):
    cmd = "perimon/v1/gw-test/device/fh-01/cmd"
    reply = "perimon/v1/gw-test/reply/"

    async def main():
        async with running_gateway(_gateway(tmp_path, tls)) as gw:
            await eventually_async(lambda: gw.downlink.subscribed, 10, "no subscription")
            hospital = Client(tls, "hospital-commander", "hospital", subscribe=reply + "#")
            try:
                await eventually_async(hospital.suback.is_set, 10, "the hospital not ready")
                hospital.publish(cmd, {"command": "get_settings"}, reply + "h", b"1")
                answer = await asyncio.to_thread(hospital.answer, b"1")
                await asyncio.sleep(1.0)  # a second connection of gw-test would replace it
                # Before: the command handler's own connection and the publisher's, of one
                # identity, would each take the other's place again and again.
                return answer, tls.log.read_text().count("gw-test already connected")
            finally:
                hospital.close()

    answer, takeovers = asyncio.run(main())
    assert answer["status"] == "ok" and takeovers == 0


def test_the_ingest_identity_cannot_set_a_risk_colour_and_the_commander_can(tls, tmp_path):
    cmd = "perimon/v1/gw-test/device/fh-01/cmd"
    reply = "perimon/v1/gw-test/reply/"
    green = {"command": "set_settings", "settings": {"risk_colour": "green"}}
    red = {"command": "set_settings", "settings": {"risk_colour": "red"}}
    ack = {"command": "ack_alert", "alert_id": "fh-01:alert:bradycardia:1", "by": "ward"}

    async def main():
        async with running_gateway(_gateway(tmp_path, tls)) as gw:
            await eventually_async(lambda: gw.downlink.subscribed, 10, "no subscription")
            ingest = Client(tls, "hospital-ingest", "ingest-9", port=tls.hospital_port,
                            password=HOSPITAL_PASSWORDS["hospital-ingest"],
                            subscribe=reply + "#")  # fmt: skip
            commander = Client(tls, "hospital-commander", "commander", subscribe=reply + "#")
            try:
                for c in (ingest, commander):
                    await eventually_async(c.suback.is_set, 10, "a hospital client not ready")
                # the ingest service: to the topic of every command, refused by the broker
                # (before: accepted, and the colour became green)
                out = {"green": ingest.publish(cmd, green, reply + "i", b"2")}
                assert out["green"].is_failure, "the ingest identity may send set_settings"
                # the commander may set a risk colour
                out["red"] = commander.publish(cmd + "/set_settings", red, reply + "c", b"1")
                out["red_answer"] = await asyncio.to_thread(commander.answer, b"1")
                # the ingest service's set_settings on its own topic, refused by the gateway
                out["green_as_ack"] = ingest.publish(cmd + "/ack_alert", green, reply + "i", b"3")
                out["green_as_ack_answer"] = await asyncio.to_thread(ingest.answer, b"3")
                # what it may do: acknowledge (an unknown alert here: answered, not applied)
                out["ack"] = ingest.publish(cmd + "/ack_alert", ack, reply + "i", b"4")
                out["ack_answer"] = await asyncio.to_thread(ingest.answer, b"4")
                await asyncio.sleep(0.5)  # the refused one would have been applied by now
                out["colour"] = gw.history.settings.get("fh-01").get("risk_colour")
                out["answers_to_2"] = [m for m in ingest.messages if m[2] == b"2"]
                return out
            finally:
                ingest.close()
                commander.close()

    out = asyncio.run(main())
    assert not out["red"].is_failure and out["red_answer"]["status"] == "ok"
    assert out["green_as_ack"].value == 0
    assert out["green_as_ack_answer"]["status"] == "rejected"
    assert "ack_alert only" in out["green_as_ack_answer"]["error"]
    assert out["colour"] == "red" and out["answers_to_2"] == []
    assert out["ack"].value == 0 and out["ack_answer"]["error"] == "unknown alert"
