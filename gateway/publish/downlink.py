"""Commands from the hospital to one device, over MQTT 5 request/response (docs/mqtt.md).

The gateway subscribes, on the publisher's connection (one identity, one client id per
gateway: gateway/publish/mqtt.py), to `{prefix}/{gateway}/device/+/cmd`, which takes any
command, and to `{prefix}/{gateway}/device/+/cmd/{command}`, which takes that command only: the
broker's ACL gives each hospital identity the topics of its own commands (deploy/mosquitto/acl:
the ingest service `cmd/ack_alert`, the commander all). A command is a JSON object, checked
against docs/schemas/command.schema.json (gateway/schemas.py); the gateway applies it on its
event loop and answers on the request's MQTT 5 Response Topic with the request's Correlation
Data. A command without a Response Topic is applied but not answered.

Commands:

* `{"command": "set_settings", "settings": {"risk_colour": "red", "measurement_interval_min": 60}}`
* `{"command": "get_settings"}`
* `{"command": "ack_alert", "alert_id": "fh-01:alert:bradycardia:1763892000123", "by": "ward-3"}`
* `{"command": "set_schedule", "sessions_per_day": 1, "duration_min": 20, "from_ga_weeks": 32,
  "ga_weeks": 30.4, "risk_colour": "orange"}` (docs/home.md), `{"command": "get_schedule"}`
* `{"command": "get_report", "session_id": "fh-01:3:121"}`: the answer is the session report
  PDF (content type application/pdf), or a JSON rejection

Refused before anything is applied (docs/mqtt.md, "Commands"): a command larger than
`MAX_COMMAND_BYTES`, one that is not JSON (nested too deeply included), one published with the
retain flag (the broker would replay it at every reconnection), one on `cmd/{command}` that is
another command, and one whose Response Topic
lies in the perimon topic tree outside this gateway's `reply/` subtree (an answer there would
pose as data: an alert, a reading, another gateway's message). Every error answer is one line
of at most `MAX_ERROR_CHARS`.

Settings and the risk colour's effect: gateway/state/settings.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.publish.mqtt import Publisher, gateway_topic, publish_properties
from gateway.schemas import MAX_MESSAGE_CHARS, SchemaCheck, one_line
from gateway.state.settings import apply_settings
from gateway.times import iso_time

if TYPE_CHECKING:
    from gateway.context import GatewayContext

log = logging.getLogger(__name__)

_COMMAND = SchemaCheck("command")  # docs/schemas/command.schema.json, compiled once
COMMANDS: tuple[str, ...] = tuple(_COMMAND.schema["properties"]["command"]["enum"])
# what a command may set, and all the hospital sees of a device's settings
HOSPITAL_SETTINGS: tuple[str, ...] = tuple(
    _COMMAND.root["$defs"]["hospital_settings"]["properties"]
)
# The largest command is a set_schedule with six times, a few hundred bytes: 16 KiB leaves room
# for any valid one and keeps an oversized publish from costing a parse on the event loop.
MAX_COMMAND_BYTES = 16 * 1024
# An error names what is wrong in one line; it never echoes the command back (a reply as large
# as a hostile command would double its cost and flood the hospital's reply topic).
MAX_ERROR_CHARS = MAX_MESSAGE_CHARS
REPLY_SUBTREE = "reply"  # {prefix}/{gateway}/reply/...: the only answers inside the perimon tree


def handle_command(gw: GatewayContext, device_id: str, cmd: object) -> dict[str, Any]:
    """Validate and apply one command; return the response body (never raises)."""
    resp: dict[str, Any] = {"device_id": device_id, "t": iso_time(time.time())}
    if isinstance(cmd, dict):
        if cmd.get("command") in COMMANDS:
            resp["command"] = cmd["command"]
        if "request_id" in cmd:
            resp["request_id"] = str(cmd["request_id"])[:64]
    problem = _COMMAND.problem(cmd)
    if problem is not None or not isinstance(cmd, dict):  # (the schema admits objects only)
        return {**resp, "status": "rejected", "error": problem or "a JSON object"}
    name = cmd["command"]
    known = set(gw.sessions) | set(gw.cfg.devices) | set(gw.history.settings.values)
    if device_id not in known:
        return {**resp, "status": "rejected", "error": "unknown device"}
    if name == "get_settings":
        return {**resp, "status": "ok", "settings": _public(gw.history.settings.get(device_id))}
    if name == "set_settings":
        changes = cmd["settings"]
        try:
            result = apply_settings(gw, device_id, changes)
        except ValueError as exc:
            return {**resp, "status": "rejected", "error": str(exc)}
        gw.history.audit.append({"event": "settings", "device_id": device_id, "by": "hospital",
                           "keys": sorted(changes), "t": time.time()})  # fmt: skip
        return {**resp, "status": "ok", "settings": _public(result)}
    if name in ("set_schedule", "get_schedule", "get_report"):
        return _recording_command(gw, device_id, name, cmd, resp)
    alert_id, by = cmd["alert_id"], cmd.get("by", "hospital")
    rec = gw.history.ack(alert_id, by, source="mqtt")
    if rec is None or rec["device_id"] != device_id:
        return {**resp, "status": "rejected", "error": "unknown alert"}
    return {**resp, "status": "ok", "alert_id": alert_id, "acked_by": rec["acked_by"],
            "acked_at": rec["acked_at"]}  # fmt: skip


def _recording_command(
    gw: GatewayContext, device_id: str, name: str, cmd: dict[str, Any], resp: dict[str, Any]
) -> dict[str, Any]:
    """Schedules and session reports (gateway/processing/recording/, docs/home.md). A report answers
    with the PDF itself: the response's `_pdf` is sent as the payload (application/pdf)."""
    rec = gw.recordings
    if name == "get_schedule":
        return {**resp, "status": "ok", "schedule": rec.store.schedule(device_id)}
    if name == "set_schedule":
        if cmd.get("clear") is True:
            rec.set_schedule(device_id, None)
            return {**resp, "status": "ok", "schedule": None}
        try:
            schedule = rec.set_schedule(device_id, cmd)
        except ValueError as exc:
            return {**resp, "status": "rejected", "error": str(exc)}
        gw.history.audit.append({"event": "schedule", "device_id": device_id, "by": "hospital",
                           "schedule": schedule, "t": time.time()})  # fmt: skip
        return {**resp, "status": "ok", "schedule": schedule}
    sid = cmd["session_id"]
    # which device a session belongs to comes from the topic, not the body: no schema says it
    if not sid.startswith(f"{device_id}:"):
        return {**resp, "status": "rejected", "error": "get_report: session_id of this device"}
    resp["session_id"] = sid
    if rec.store.get(sid) is None:
        return {**resp, "status": "rejected", "error": "unknown session"}
    pdf = rec.report_pdf(sid)
    if pdf is None:
        return {**resp, "status": "rejected", "error": "no report for this session (yet)"}
    return {**resp, "status": "ok", "_pdf": pdf}


def response_topic_error(topic: str, prefix: str, gateway_id: str) -> str | None:
    """Why the gateway refuses to answer on `topic`, or None if it may.

    The perimon tree (`{prefix}/...`) holds what hospitals read as data; an answer published
    there would pose as an alert or a reading, this gateway's or another's. Only this gateway's
    `{prefix}/{gateway}/reply/...` is allowed inside it (with the deployed ACL, the one place
    a gateway may publish answers to); topics elsewhere are the hospital's to choose."""
    if not topic or "+" in topic or "#" in topic or "\0" in topic or topic.startswith("$"):
        return "response topic: not a topic a gateway may publish to"
    if topic == prefix or topic.startswith(prefix + "/"):
        own = gateway_topic(prefix, gateway_id, REPLY_SUBTREE) + "/"
        if not topic.startswith(own) or len(topic) == len(own):
            return f"response topic: inside {prefix}/ only under {own}..."
    return None


def _public(settings: dict[str, Any]) -> dict[str, Any]:
    """Only what the hospital may see over MQTT: no labels, birth times or gestation."""
    return {k: v for k, v in settings.items() if k in HOSPITAL_SETTINGS}


class Downlink:
    """The hospital's commands, on the publisher's connection (an MQTT 5 one: commands need
    Response Topic and Correlation Data; the gateway makes no Downlink for a 3.1.1 broker)."""

    def __init__(self, gw: GatewayContext, publisher: Publisher) -> None:
        self.gw = gw
        cfg = gw.cfg.mqtt
        self.cfg = cfg
        self.publisher = publisher
        self.client = publisher.client  # answers go out on the same connection
        self.loop: asyncio.AbstractEventLoop | None = None
        self.handled = 0
        self.refused = 0  # commands neither applied nor answered (response topic refused)
        self.gw_id = gw.cfg.gateway.id
        self.topic = gateway_topic(cfg.topic_prefix, gw.cfg.gateway.id, "device", "+", "cmd")
        self.named_topic = self.topic + "/+"  # cmd/{command}: that command only

    @property
    def subscribed(self) -> bool:
        return self.publisher.subscribed.is_set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # paho's network thread: only hand the message to the loop (read once: stop() clears
        # it from another thread)
        loop = self.loop
        if loop is None:
            return
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        # {prefix}/{gateway}/device/ then {id}/cmd or {id}/cmd/{command}
        levels = message.topic[len(self.topic) - len("+/cmd") :].split("/")
        device_id = levels[0]
        named = levels[2] if len(levels) == 3 else None
        with contextlib.suppress(RuntimeError):  # the loop has closed: the gateway stopped
            loop.call_soon_threadsafe(self._handle, device_id, bytes(message.payload),
                                      response_topic, correlation, bool(message.retain),
                                      named)  # fmt: skip

    def _handle(self, device_id: str, body: bytes, response_topic: str | None,
                correlation: bytes | None, retained: bool = False,
                named: str | None = None) -> None:  # fmt: skip
        if retained and not body:
            return  # the hospital clearing a retained command: nothing to apply or answer
        refusal = None
        if response_topic:
            refusal = response_topic_error(response_topic, self.cfg.topic_prefix, self.gw_id)
        if refusal is not None:  # not applied either: a command set up to forge data is hostile
            log.warning("%s: command refused, not answered: %s (%.80r)", device_id, refusal,
                        response_topic)  # fmt: skip
            self.refused += 1
            return
        resp = self._respond(device_id, body, retained, named)
        pdf = resp.pop("_pdf", None)  # get_report: the PDF is the payload
        if "error" in resp:
            resp["error"] = one_line(resp["error"], MAX_ERROR_CHARS)
        self.handled += 1
        log.info("%s: command %s -> %s", device_id, resp.get("command"), resp["status"])
        if not response_topic:
            return
        props = publish_properties()
        props.ContentType = "application/json" if pdf is None else "application/pdf"
        if pdf is not None:
            props.UserProperty = [("session_id", resp["session_id"]), ("status", "ok")]
        if correlation is not None:
            props.CorrelationData = correlation
        payload = json.dumps(resp) if pdf is None else pdf
        self.client.publish(response_topic, payload, 1, False, props)

    def _respond(self, device_id: str, body: bytes, retained: bool,
                 named: str | None = None) -> dict[str, Any]:  # fmt: skip
        def rejected(error: str) -> dict[str, Any]:
            return {"device_id": device_id, "status": "rejected", "error": error,
                    "t": iso_time(time.time())}  # fmt: skip

        if retained:
            return rejected("retained commands are refused: publish with retain false")
        if len(body) > MAX_COMMAND_BYTES:
            return rejected(f"command larger than {MAX_COMMAND_BYTES} bytes")
        try:
            cmd = json.loads(body)
        except RecursionError:  # json raises it, not ValueError, past ~1000 levels of nesting
            return rejected("not JSON: nested too deeply")
        except ValueError:
            return rejected("not JSON")
        if named is not None and (not isinstance(cmd, dict) or cmd.get("command") != named):
            # the broker let the sender publish here for this command only (its ACL)
            return rejected(f"this topic takes the command {named[:40]} only")
        try:
            return handle_command(self.gw, device_id, cmd)
        except Exception as exc:  # a bad command must not stop the gateway
            log.exception("%s: command failed", device_id)
            return rejected(f"failed: {exc}")

    def start(self) -> None:
        """Take commands from now on (the publisher's connection subscribes)."""
        self.loop = asyncio.get_running_loop()
        # retain as published: a command sent with the retain flag is seen as such, live or
        # replayed from the broker's store, and refused either way
        options = SubscribeOptions(qos=1, retainAsPublished=True)
        for topic in (self.topic, self.named_topic):
            self.publisher.listen(topic, options, self._on_message)

    def stop(self) -> None:
        """Take no more commands (the publisher closes the connection)."""
        self.loop = None
