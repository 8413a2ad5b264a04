"""Passive scanning: the gateway's BLE central with `ble_scan_mode = "passive"` registers a
BlueZ advertisement monitor (org.bluez.AdvertisementMonitorManager1, as bleak does on a Pi)
matching the perimon service UUID, never starts an active discovery, sees only advertising
data (no scan response, so no manufacturer data) and reads each device's type from its model
number; it finds, connects and reconnects the devices."""

from __future__ import annotations

import asyncio

import pytest

from gateway import protocol as p
from simulators.ble_rig import BleRig, bluez_address
from simulators.fleet import DeviceSpec

pytestmark = pytest.mark.system


def test_passive_scanning_finds_connects_and_reconnects_devices(broker, tmp_path):
    specs = [
        DeviceSpec("fh-01", "fetal_heart", seed=3),
        DeviceSpec("tcb-01", "jaundice", seed=5, press_every_s=4.0),
    ]
    out = {}

    async def main():
        async with BleRig(tmp_path, broker, specs, radio={"ble_scan_mode": "passive"}) as rig:
            await rig.wait_connected(timeout_s=30)
            out["monitored"] = await rig.ctl.status()
            out["recon"] = await rig.drop_storm(["fh-01"], drops=1, spacing_s=1.0)
            sessions = rig.gw.sessions
            await rig.until(lambda: all(sessions[i].state.stats.frames > 5 for i in rig.ids),
                            15, "no data")  # fmt: skip
            out["types"] = {i: s.state.device_type for i, s in sessions.items()}
            out["adv"] = {i: rig.gw.transport._seen[i][1] for i in rig.ids}
            out["vb"] = await rig.ctl.status()

    asyncio.run(main())
    vb = out["vb"]
    assert vb["start_discovery"] == 0, vb  # never an active scan
    assert vb["register_monitor"] >= 2 and vb["device_found"] >= 3, vb  # again after the drop
    assert out["monitored"]["discovering"] is False
    assert out["types"] == {"fh-01": p.DeviceType.FETAL_HEART, "tcb-01": p.DeviceType.JAUNDICE}
    for adv in out["adv"].values():  # advertising data only: the scan response never came
        assert adv.manufacturer_data == {} and adv.local_name in ("fh-01", "tcb-01")
    assert vb["devices"][bluez_address("fh-01")]["connects"] == 2
    assert out["recon"]["fh-01"][0] < 10.0
