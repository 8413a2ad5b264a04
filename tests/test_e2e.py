"""End to end: real firmware under MicroPython -> a transport -> gateway -> Mosquitto -> a
subscriber, checking device ids, values and the absence of gaps. The chain runs over each
transport: the simulated radio ("sim"), a USB cable made of pseudo-terminals ("serial") and
BLE through the virtual BlueZ ("ble", simulators/ble_rig.py)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from devtools.broker import free_port
from gateway.app import Gateway
from gateway.config import config_from_dict
from simulators.fleet import DeviceSpec, Fleet

pytestmark = pytest.mark.system

PREFIX = "perimon/v1"
# A trace starts at the first sample of the boot the gateway receives, numbered as that point
# of the boot: the device sends what it samples before the first connection to its buffer only.
FIRST_POINT_AT_MOST = 4 * 10


class Collector:
    def __init__(self, broker) -> None:
        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(5)

    def _on_message(self, client, userdata, m) -> None:
        with self.lock:
            self.messages.append((m.topic, json.loads(m.payload), m.retain))

    def of(self, device: str, kind: str) -> list[dict]:
        with self.lock:
            return [
                p for t, p, _ in self.messages if t == f"{PREFIX}/gw-test/device/{device}/{kind}"
            ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


TRANSPORTS = ["sim", "serial", "ble"]


def run_chain(broker, tmp_path, specs, seconds, during=None, transport="sim", **processing):
    """Gateway and fleet over `transport`; `during(gw, fleet)` runs once all is started."""
    birth = (datetime.now(UTC) - timedelta(hours=40)).isoformat()
    devices = {"tcb-01": {"birth_time": birth, "ga_weeks": 38}}
    sub = Collector(broker)
    if transport == "ble":
        gw = asyncio.run(_run_ble_chain(broker, tmp_path, specs, seconds, during, devices,
                                        processing))  # fmt: skip
        sub.close()
        return sub, gw
    radio = f"127.0.0.1:{free_port()}"
    if transport == "serial":  # each device's cable end, where Fleet plugs it in
        ports = ",".join(str(tmp_path / "devices" / s.device_id / "usb") for s in specs)
        radio_cfg = {"transport": "serial", "serial_ports": ports}
    else:
        radio_cfg = {"listen": radio}
    cfg = config_from_dict(
        {
            "gateway": {"id": "gw-test", "data_dir": str(tmp_path / "gw")},
            "mqtt": {"host": broker.host, "port": broker.port},
            "radio": radio_cfg,
            "processing": {"status_interval_s": 1.0, **processing},
            "devices": devices,
        }
    )

    async def main():
        stop = asyncio.Event()
        gw = Gateway(cfg)
        task = asyncio.create_task(gw.run(stop))
        await asyncio.wait_for(gw.ready.wait(), 10)
        fleet = Fleet(specs, radio, tmp_path / "devices", radio_kind=transport, gateway=cfg)
        await fleet.start()
        try:
            if during:
                await during(gw, fleet)
            await asyncio.sleep(seconds)
            assert fleet.alive() == [s.device_id for s in specs], "a firmware process died"
        finally:
            await fleet.stop()
            stop.set()
            await task
        return gw

    gw = asyncio.run(main())
    sub.close()
    return sub, gw


async def _run_ble_chain(broker, tmp_path, specs, seconds, during, devices, processing):
    from simulators.ble_rig import BleRig

    async with BleRig(tmp_path, broker, specs, processing=processing, devices=devices) as rig:
        if during:
            await during(rig.gw, rig.fleet)
        await asyncio.sleep(seconds)
        assert rig.alive() == rig.ids, "a firmware process died"
    return rig.gw


def assert_contiguous(msgs: list[dict]) -> int:
    """Every message starts where the previous ended; returns the number of points."""
    assert msgs, "no messages"
    for a, b in zip(msgs, msgs[1:], strict=False):
        assert b["seq"] == a["seq"] + a["count"], (a["seq"], a["count"], b["seq"])
        assert b["boot"] == a["boot"]
    return sum(m["count"] for m in msgs)


def fhr_values(msgs: list[dict]) -> np.ndarray:
    vals = [v for m in msgs for v in m["fhr_bpm"]]
    return np.array([np.nan if v is None else v for v in vals], dtype=float)


@pytest.fixture
def specs():
    return [
        DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0, snr_db=15),
        DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=11.0,
                   press_every_s=5.0),
    ]  # fmt: skip


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_readings_arrive_with_right_ids_sensible_values_and_no_gaps(
    broker, tmp_path, specs, transport
):
    sub, gw = run_chain(broker, tmp_path, specs, seconds=22, transport=transport)

    fhr = sub.of("fh-01", "fhr")
    n_points = assert_contiguous(fhr)
    assert fhr[0]["seq"] <= FIRST_POINT_AT_MOST and fhr[0]["interval_s"] == 0.25
    assert n_points >= 4 * 15  # at least 15 s of trace in 22 s (the first window fills first)
    assert all(m["device_id"] == "fh-01" for m in fhr)
    v = fhr_values(fhr)
    ok = v[~np.isnan(v)]
    assert len(ok) > 0.5 * len(v), "the FHR was missing for most of a clean recording"
    assert abs(np.median(ok) - 142) < 8, np.median(ok)
    assert np.all((ok > 50) & (ok < 240))
    assert_contiguous(sub.of("fh-01", "mhr"))

    tcb = sub.of("tcb-01", "tcb")
    assert len(tcb) >= 2
    for r in tcb:
        assert r["device_id"] == "tcb-01"
        assert (r["tcb_mg_dl"] is None) == bool(r["flag"])  # a number xor a reason
    numeric = [r for r in tcb if r["tcb_mg_dl"] is not None]
    assert numeric, [r["flag"] for r in tcb]
    for r in numeric:
        assert abs(r["tcb_mg_dl"] - 11.0) < 4.0  # simulated readings spread about 1.5 mg/dL SD
        assert r["ci_low_mg_dl"] <= r["tcb_mg_dl"] <= r["ci_high_mg_dl"]
        assert r["assessment"]["bhutani_zone"] and 39 < r["assessment"]["age_hours"] < 41
    assert [r["seq"] for r in tcb] == sorted({r["seq"] for r in tcb})

    status = sub.of("fh-01", "status")[-1]
    assert status["link"] == "disconnected"  # the fleet was stopped at the end
    stats = status["stats"]
    assert stats["lost_samples"] == 0 and stats["malformed"] == 0
    assert 0 <= status["battery_pct"] <= 100 and status["boot"] >= 1
    online = [p for t, p, _ in sub.messages if t == f"{PREFIX}/gw-test/status"]
    assert online[0]["state"] == "online" and online[-1]["state"] == "offline"
    # no patient identifiers in topics: only the gateway and device ids we chose
    for topic, _, _ in sub.messages:
        assert set(topic.split("/")) <= {"perimon", "v1", "gw-test", "device", "fh-01",
                                         "tcb-01", "fhr", "mhr", "tcb", "status", "alert", "ctg",
                                         "unknown_devices", "observation"}  # fmt: skip


@pytest.mark.parametrize("transport", ["sim", "serial"])  # BLE: tests/test_ble_e2e.py
def test_link_drops_are_refilled_from_the_device_ring_buffer(broker, tmp_path, transport):
    """Over "serial" the cable is pulled out for a second and plugged back, and garbage goes
    down the line both ways between the unpluggings."""
    specs = [DeviceSpec("fh-01", "fetal_heart", seed=7, fhr_bpm=135.0)]

    async def drop_links(gw, fleet):
        cable = fleet.devices[0].usb
        for _ in range(3):
            await asyncio.sleep(2.5)
            if cable:
                junk = bytes([0xC0, 3, 0x10, 0xDB, 0x00, 0xC0]) + os.urandom(200)
                cable.noise(to_gateway=junk, to_device=junk)
            await asyncio.sleep(2.5)
            if cable:
                cable.unplug()
                await asyncio.sleep(1.0)
                cable.plug()
            else:
                for link in list(gw.transport._links):
                    await link.close()  # the radio link dies; the firmware reconnects

    sub, gw = run_chain(broker, tmp_path, specs, seconds=8, during=drop_links,
                        transport=transport)  # fmt: skip
    session = gw.sessions["fh-01"]
    stats = session.state.stats
    assert stats.connects >= 4
    assert stats.gaps_filled >= 1, stats
    assert stats.lost_samples == 0, stats
    fhr = sub.of("fh-01", "fhr")
    n = assert_contiguous(fhr)  # nothing lost, nothing twice
    assert n >= 4 * 15
    if transport == "serial":
        assert gw.transport.line_errors >= 1  # the garbage reached the gateway and was dropped
