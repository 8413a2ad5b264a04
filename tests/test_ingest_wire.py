"""The ingest's own reading of a QoS 1 PUBLISH (hospital/ingest.py, `_Client`) gives the
worker what paho's full decoding gives it: topic, packet id, flags and payload; answers to
commands keep their properties (decoded by paho)."""

from __future__ import annotations

import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hospital.ingest import _Client

pytestmark = pytest.mark.unit


def _packet(topic: str, mid: int, props: Properties | None, payload: bytes) -> bytearray:
    """A PUBLISH's variable header and payload, as the broker sends them (MQTT 5, 3.3.2)."""
    t = topic.encode()
    packed = props.pack() if props is not None else b"\x00"
    return bytearray(len(t).to_bytes(2, "big") + t + mid.to_bytes(2, "big") + packed + payload)


def _received(client: _Client, header: int, packet: bytearray, full: bool):
    got = []
    client.on_message = lambda c, u, m: got.append(m)
    client._in_packet["command"] = header
    client._in_packet["packet"] = packet
    if full:
        super(_Client, client)._handle_publish()  # paho's own decoding
    else:
        client._handle_publish()
    (m,) = got
    return m


@pytest.mark.parametrize("user_properties", [0, 1, 40])  # 40: a property length of 2 bytes
@pytest.mark.parametrize("header", [0x32, 0x3A, 0x33])  # QoS 1; + DUP; + RETAIN
def test_a_data_message_is_read_as_paho_reads_it(header, user_properties):
    client = _Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5,
                     manual_ack=True)  # fmt: skip
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.UserProperty = [("msg_id", f"tcb-01:1:tcb:{i}") for i in range(user_properties)]
    payload = b'{"msg_id": "tcb-01:1:tcb:7", "device_id": "tcb-01"}'
    packet = _packet("perimon/v1/gw-1/device/tcb-01/tcb", 4242, props, payload)
    lean = _received(client, header, bytearray(packet), full=False)
    full = _received(client, header, bytearray(packet), full=True)
    for attr in ("topic", "mid", "qos", "dup", "retain", "payload"):
        assert getattr(lean, attr) == getattr(full, attr), attr
    assert lean.properties is None and full.properties.ContentType == "application/json"


def test_an_answer_keeps_its_correlation_data():
    client = _Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5,
                     manual_ack=True)  # fmt: skip
    props = Properties(PacketTypes.PUBLISH)
    props.CorrelationData = b"fh-01:alert:signal_loss:1"
    packet = _packet("perimon/v1/gw-1/reply/w1", 7, props, b'{"status": "ok"}')
    m = _received(client, 0x32, packet, full=False)
    assert m.properties.CorrelationData == b"fh-01:alert:signal_loss:1" and m.mid == 7
