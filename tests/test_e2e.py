"""End to end: real firmware under MicroPython -> a transport -> gateway -> Mosquitto -> a
subscriber, checking device ids, values and the absence of gaps. The chain runs over each
transport: the simulated radio ("sim"), a USB cable made of pseudo-terminals ("serial") and
BLE through the virtual BlueZ ("ble", simulators/ble_rig.py)."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from simulators.fleet import DeviceSpec
from tests.harness.chain import (
    FIRST_POINT_AT_MOST,
    TRANSPORTS,
    assert_contiguous,
    fhr_values,
    run_chain,
)

pytestmark = pytest.mark.system


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
    online = sub.on("status")
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

    async def drop_links(gw, fleet):  # the fault schedule: its sleeps are streaming time
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
