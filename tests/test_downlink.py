"""Hostile commands on the command topic, against a running gateway and a real Mosquitto: each
is refused with a short one-line answer (or, for a response topic inside the perimon tree, not
answered at all), nothing is applied, and the gateway keeps answering the next command."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devtools.broker import free_port
from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.publish.downlink import MAX_ERROR_CHARS, response_topic_error
from gateway.schemas import SchemaCheck

pytestmark = pytest.mark.system

PREFIX = "perimon/v1"
CMD = f"{PREFIX}/gw-test/device/fh-01/cmd"
REPLY_TO = "hospital/replies/ward-3"


class Hospital:
    """Publishes commands and records everything under the reply topic and the perimon tree."""

    def __init__(self, broker) -> None:
        self.got: list[tuple[str, bytes, bytes | None]] = []  # (topic, payload, correlation)
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(REPLY_TO, 1), (f"{PREFIX}/#", 1)])
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert self.ready.wait(5)

    def _on_message(self, c, u, m) -> None:
        corr = getattr(m.properties, "CorrelationData", None)
        with self.lock:
            self.got.append((m.topic, bytes(m.payload), corr))

    def send(self, body: bytes | dict, corr: bytes, reply_to: str = REPLY_TO, *,
             retain: bool = False) -> None:  # fmt: skip
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_to
        props.CorrelationData = corr
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.c.publish(CMD, raw, 1, retain, props).wait_for_publish(5)

    def answers(self, corr: bytes) -> list[tuple[str, bytes]]:
        with self.lock:
            return [(t, p) for t, p, c in self.got if c == corr and not t.endswith("/cmd")]

    async def answer(self, corr: bytes, timeout_s: float = 10.0) -> tuple[str, bytes]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            got = self.answers(corr)
            if got:
                return got[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no answer to {corr!r}")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def run_gateway(broker, tmp_path, during) -> Gateway:
    cfg = config_from_dict({
        "gateway": {"id": "gw-test", "data_dir": str(tmp_path / "gw")},
        "mqtt": {"host": broker.host, "port": broker.port},
        "radio": {"listen": f"127.0.0.1:{free_port()}"},
        "devices": {"fh-01": {}},
    })  # fmt: skip

    async def main() -> Gateway:
        stop = asyncio.Event()
        gw = Gateway(cfg)
        task = asyncio.create_task(gw.run(stop))
        try:
            await asyncio.wait_for(gw.ready.wait(), 10)
            end = time.monotonic() + 10
            while not gw.downlink.subscribed and time.monotonic() < end:
                await asyncio.sleep(0.05)
            assert gw.downlink.subscribed
            await during(gw)
        finally:
            stop.set()
            await task
        return gw

    return asyncio.run(main())


def _body(raw: bytes) -> dict:
    body = json.loads(raw)
    assert "\n" not in body.get("error", "")
    return body


def test_deeply_nested_json_gets_a_one_line_answer(broker, tmp_path):
    hospital = Hospital(broker)
    nested = b"[" * 5000 + b"]" * 5000  # under the size cap, past json's recursion limit

    async def during(gw):
        hospital.send(nested, b"deep")
        hospital.send({"command": "get_settings"}, b"next")
        _, raw = await hospital.answer(b"deep")
        assert _body(raw)["status"] == "rejected"
        assert _body(raw)["error"] == "not JSON: nested too deeply"
        _, raw = await hospital.answer(b"next")
        assert _body(raw)["status"] == "ok"  # the downlink still works

    run_gateway(broker, tmp_path, during)
    hospital.close()


@pytest.mark.parametrize(
    "reply_to",
    [f"{PREFIX}/gw-test/device/fh-01/alert", f"{PREFIX}/gw-other/status", f"{PREFIX}/gw-test",
     f"{PREFIX}/gw-test/reply/"],
)  # fmt: skip
def test_a_response_topic_inside_the_data_tree_is_refused(broker, tmp_path, reply_to):
    hospital = Hospital(broker)

    async def during(gw):
        hospital.send({"command": "set_settings", "settings": {"risk_colour": "red"}},
                      b"forged", reply_to)  # fmt: skip
        # the gateway handles commands in order: once this is answered, the first was handled
        hospital.send({"command": "get_settings"}, b"next", f"{PREFIX}/gw-test/reply/ward-3")
        topic, raw = await hospital.answer(b"next")
        assert topic == f"{PREFIX}/gw-test/reply/ward-3"  # the gateway's own reply subtree
        assert _body(raw)["settings"] == {}  # the refused command was not applied either
        assert hospital.answers(b"forged") == []
        assert gw.downlink.refused == 1

    run_gateway(broker, tmp_path, during)
    hospital.close()


def test_response_topic_rule():
    assert response_topic_error("hospital/replies/w1", PREFIX, "gw-a") is None
    assert response_topic_error(f"{PREFIX}/gw-a/reply/w1", PREFIX, "gw-a") is None
    for bad in (f"{PREFIX}/gw-a/device/x/tcb", f"{PREFIX}/gw-b/reply/w1", PREFIX, "$SYS/x",
                "a/+/b", "a/#", ""):  # fmt: skip
        assert response_topic_error(bad, PREFIX, "gw-a"), bad


def test_error_answers_are_capped(broker, tmp_path):
    hospital = Hospital(broker)
    # 1.4 MB, 120 000 unknown settings: refused on its size
    huge = {"command": "set_settings", "settings": {f"k{i:06d}": 1 for i in range(120_000)}}
    # under the size cap: 25 unknown settings with long names; 3 named, each cut short
    many = {"command": "set_settings", "settings": {f"{'x' * 500}{i}": 1 for i in range(25)}}

    async def during(gw):
        hospital.send(huge, b"huge")
        hospital.send(many, b"many")
        hospital.send({"command": "set_schedule", "sessions_per_day": 1, "duration_min": 20,
                       "risk_colour": "b" * 10_000}, b"value")  # fmt: skip
        for corr in (b"huge", b"many", b"value"):
            _, raw = await hospital.answer(corr)
            body = _body(raw)
            assert body["status"] == "rejected"
            assert len(body["error"]) <= MAX_ERROR_CHARS
            assert len(raw) < 600, (corr, len(raw))
        assert "larger than" in _body((await hospital.answer(b"huge"))[1])["error"]
        assert "and 22 more" in _body((await hospital.answer(b"many"))[1])["error"]

    run_gateway(broker, tmp_path, during)
    hospital.close()


def test_retained_commands_are_refused_live_and_when_replayed(broker, tmp_path):
    hospital = Hospital(broker)
    red = {"command": "set_settings", "settings": {"risk_colour": "red"}}
    hospital.send(red, b"stored", retain=True)  # waits in the broker for the gateway

    async def during(gw):
        _, raw = await hospital.answer(b"stored")  # replayed when the gateway subscribed
        assert "retain" in _body(raw)["error"]
        hospital.send(red, b"live", retain=True)
        _, raw = await hospital.answer(b"live")
        assert _body(raw)["status"] == "rejected" and "retain" in _body(raw)["error"]
        hospital.send({"command": "get_settings"}, b"next")
        _, raw = await hospital.answer(b"next")
        assert _body(raw)["settings"] == {}  # neither was applied
        hospital.c.publish(CMD, b"", 1, True).wait_for_publish(5)  # clear it: no answer
        hospital.send({"command": "get_settings"}, b"after")
        await hospital.answer(b"after")
        assert len([t for t, _, _ in hospital.got if t == REPLY_TO]) == 4  # none for the clear

    run_gateway(broker, tmp_path, during)
    hospital.close()


COMMAND = SchemaCheck("command")


@pytest.mark.parametrize(
    "cmd, error",
    [
        ({"command": "reboot"}, "command: one of set_settings, get_settings, ack_alert, "
         "set_schedule, get_schedule, get_report"),
        ([], "a JSON object"),
        ({"command": "set_settings", "settings": {}}, "settings: an object with risk_colour, "
         "measurement_interval_min and/or ctg_mode (labels, birth times and gestation are set "
         "in the nurse view)"),
        ({"command": "set_settings", "settings": {"label": "Bed 4", "risk_colour": "red"}},
         "settings: label: not accepted; only risk_colour, measurement_interval_min, ctg_mode"),
        ({"command": "set_settings", "settings": {"ctg_mode": "labour"}},
         "ctg_mode: antenatal (Dawes-Redman criteria, the default) or intrapartum (FIGO 2015)"),
        ({"command": "set_settings", "settings": {"risk_colour": "blue"}},
         "risk_colour: one of green, yellow, orange, red, purple"),
        ({"command": "set_settings", "settings": {"measurement_interval_min": float("nan")}},
         "measurement_interval_min: a number of minutes from 1 to 10080 (7 days)"),
        ({"command": "ack_alert", "alert_id": "a", "by": ""},
         "by: who acknowledges: text of 1 to 64 characters (default hospital)"),
        ({"command": "set_schedule", "duration_min": 20, "risk_colour": "red"},
         "exactly one of sessions_per_day, sessions_per_week"),
        ({"command": "set_schedule", "sessions_per_day": 2, "duration_min": 20,
          "risk_colour": "red", "times": ["09:00", "09:00"]},
         "times: local times HH:MM, all different, one per daily session (one if sessions are "
         "weekly)"),
        ({"command": "set_schedule", "sessions_per_week": 2, "duration_min": 20,
          "risk_colour": "red", "from_ga_weeks": 30},
         "from_ga_weeks needs ga_weeks: the gestation today in weeks (with from_ga_weeks), a "
         "number from 4 to 44"),
        ({"command": "get_report"}, "session_id: a session of this device: text of 1 to 200 "
         "characters"),
    ],
)  # fmt: skip
def test_a_rejection_names_the_key_and_what_it_must_be(cmd, error):
    assert COMMAND.problem(cmd) == error


def test_valid_commands_pass_the_schema():
    for cmd in (
        {"command": "get_settings", "request_id": "r-1"},
        {"command": "set_settings", "settings": {"risk_colour": None}},  # cleared
        {"command": "ack_alert", "alert_id": "fh-01:alert:bradycardia:1"},
        {"command": "set_schedule", "clear": True},
        {"command": "set_schedule", "sessions_per_day": 3, "duration_min": 20,
         "risk_colour": "red", "times": ["08:00", "13:00", "19:30"], "from_ga_weeks": 32,
         "ga_weeks": 30.5},
        {"command": "get_report", "session_id": "fh-01:3:121"},
    ):  # fmt: skip
        assert COMMAND.problem(cmd) is None, cmd


def test_every_field_of_a_command_says_what_it_must_be():
    """A rejection quotes the schema's words for the key; a field without any would be
    rejected without saying what it should have been."""
    for key in COMMAND.schema["properties"]:
        assert COMMAND.describe(key), key
    for name in ("settings", "schedule"):
        for key in COMMAND.root["$defs"][name]["properties"]:
            assert SchemaCheck("command", name).describe(key), (name, key)
