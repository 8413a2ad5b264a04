"""End to end over BLE: real firmware (radio_ble on bluetooth_sim) -> virtual BlueZ on a
private D-Bus bus -> the gateway's bleak BlueZ backend -> Mosquitto -> a subscriber."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from gateway.app import Gateway
from gateway.config import config_from_dict
from simulators.fleet import DeviceSpec, Fleet, ble_address
from simulators.virtual_bluez import PrivateBus, VirtualBluezControl, VirtualBluezProcess
from tests.test_e2e import Collector, assert_contiguous


@pytest.fixture
def bluez(tmp_path, monkeypatch):
    """A fresh private bus with a virtual BlueZ on it; bleak is pointed at it."""
    bus = PrivateBus(tmp_path / "bus").start()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    vb = VirtualBluezProcess(bus.address, log_file=tmp_path / "virtual_bluez.log").start()
    yield bus, vb
    vb.stop()
    bus.stop()


def run_ble_chain(broker, tmp_path, bluez, specs, seconds, during=None):
    bus, vb = bluez
    birth = (datetime.now(UTC) - timedelta(hours=40)).isoformat()
    cfg = config_from_dict(
        {
            "gateway": {"id": "gw-test", "data_dir": str(tmp_path / "gw")},
            "mqtt": {"host": broker.host, "port": broker.port},
            "radio": {"transport": "ble", "enrolled": ",".join(s.device_id for s in specs)},
            "processing": {"status_interval_s": 1.0},
            "devices": {"tcb-01": {"birth_time": birth, "ga_weeks": 38}},
        }
    )
    sub = Collector(broker)
    ctl = VirtualBluezControl(bus.address)
    out = {}

    async def main():
        stop = asyncio.Event()
        gw = Gateway(cfg)
        task = asyncio.create_task(gw.run(stop))
        await asyncio.wait_for(gw.ready.wait(), 10)
        fleet = Fleet(specs, vb.radio, tmp_path / "devices", radio_kind="ble", gateway=cfg)
        await fleet.start()
        try:
            if during:
                await during(gw, fleet, ctl)
            await asyncio.sleep(seconds)
            assert fleet.alive() == [s.device_id for s in specs], "a firmware process died"
            out["vb"] = await ctl.status()
        finally:
            await fleet.stop()
            stop.set()
            await task
            ctl.close()
        return gw

    gw = asyncio.run(main())
    sub.close()
    return sub, gw, out["vb"]


async def wait_connected(gw, ids, timeout=20.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if all(i in gw.transport.links for i in ids):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not all connected: {sorted(gw.transport.links)}")


def test_readings_arrive_over_ble_with_drops_refilled(broker, tmp_path, bluez):
    specs = [
        DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0),
        DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", bilirubin_mg_dl=11.0,
                   press_every_s=5.0),
    ]  # fmt: skip

    async def drops(gw, fleet, ctl):
        await wait_connected(gw, ["fh-01", "tcb-01"])
        for _ in range(3):
            await asyncio.sleep(4)
            assert await ctl.drop(_addr("fh-01"))

    sub, gw, vb = run_ble_chain(broker, tmp_path, bluez, specs, seconds=8, during=drops)
    fhr = sub.of("fh-01", "fhr")
    n = assert_contiguous(fhr)
    assert n >= 4 * 12
    stats = gw.sessions["fh-01"].state.stats
    assert stats.lost_samples == 0 and stats.malformed == 0, stats
    assert stats.gaps_filled >= 1, stats
    radio = gw.transport.device_stats("fh-01")
    assert radio["reconnects"] >= 3 and radio["drops"] >= 3, radio
    assert radio["att_mtu"] == 247 and radio["rssi"] is not None
    assert radio["last_reconnect_s"] < 3.0, radio
    assert vb["devices"][_addr("fh-01")]["drops"] == 3
    assert len(sub.of("tcb-01", "tcb")) >= 2


def _addr(device_id: str) -> str:
    a = ble_address(device_id)
    return ":".join(a[i : i + 2] for i in range(0, 12, 2))
