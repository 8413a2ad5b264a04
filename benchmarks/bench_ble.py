"""BLE path benchmark: N fetal-heart monitors (real firmware) -> virtual BlueZ -> bleak -> gateway.

Every device's link is dropped D times (supervision timeout in the virtual BlueZ), staggered.
Reports notifications per second through the virtual BlueZ path, CPU of the gateway and of
the virtual BlueZ process, the time from each drop to data flowing again (median, p90, max),
and checks that no sample was lost or duplicated at the gateway's output.

    python -m benchmarks.bench_ble --devices 7 --drops 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import Gateway  # noqa: E402
from gateway.broker import start_broker  # noqa: E402
from gateway.config import config_from_dict  # noqa: E402
from simulators.fleet import DeviceSpec, Fleet, ble_address  # noqa: E402
from simulators.virtual_bluez import (  # noqa: E402
    PrivateBus,
    VirtualBluezControl,
    VirtualBluezProcess,
)


def _addr(device_id: str) -> str:
    a = ble_address(device_id)
    return ":".join(a[i : i + 2] for i in range(0, 12, 2))


async def run(n: int, drops: int, every_s: float, work: Path) -> dict:
    bus = PrivateBus(work / "bus").start()
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
    vb = VirtualBluezProcess(bus.address, max_links=n, log_file=work / "vb.log").start()
    broker = start_broker(work / "broker")
    ids = [f"fh-{i + 1:02d}" for i in range(n)]
    cfg = config_from_dict({
        "gateway": {"id": "gw-bench", "data_dir": str(work / "gw")},
        "mqtt": {"host": broker.host, "port": broker.port, "protocol": broker.protocol},
        "radio": {"transport": "ble", "enrolled": ",".join(ids), "ble_max_connections": n},
        "processing": {"status_interval_s": 5.0, "gap_timeout_s": 15.0},
    })  # fmt: skip
    specs = [DeviceSpec(i, "fetal_heart", seed=30 + k, fhr_bpm=125.0 + 3 * k)
             for k, i in enumerate(ids)]  # fmt: skip
    ctl = VirtualBluezControl(bus.address)
    stop = asyncio.Event()
    gw = Gateway(cfg)
    task = asyncio.create_task(gw.run(stop))
    fleet_kw = {"gateway": cfg} if "gateway" in Fleet.__init__.__code__.co_varnames else {}
    fleet = Fleet(specs, vb.radio, work / "devices", radio_kind="ble", **fleet_kw)
    recon: list[float] = []
    try:
        await asyncio.wait_for(gw.ready.wait(), 10)
        await fleet.start()
        t0 = time.monotonic()
        while len(gw.transport.links) < n:
            if time.monotonic() - t0 > 60:
                raise RuntimeError(f"only {len(gw.transport.links)} of {n} connected")
            await asyncio.sleep(0.2)
        all_up_s = time.monotonic() - t0
        st0 = await ctl.status()
        cpu_gw0, cpu_vb0, w0 = time.process_time(), vb.cpu_seconds(), time.monotonic()
        for r in range(drops):
            for i in ids:
                await asyncio.sleep(every_s / n)
                before = gw.transport.stats[i].reconnects
                if await ctl.drop(_addr(i)):
                    asyncio.get_running_loop().create_task(_wait_back(gw, i, before, recon))
            del r
        await asyncio.sleep(max(5.0, every_s))
        wall = time.monotonic() - w0
        cpu_gw, cpu_vb = time.process_time() - cpu_gw0, vb.cpu_seconds() - cpu_vb0
        st1 = await ctl.status()
        await asyncio.sleep(3.0)  # last gaps refilled before the sessions are read
        notes = sum(d["notifications"] for d in st1["devices"].values()) - sum(
            d["notifications"] for d in st0["devices"].values()
        )
        sessions = {i: gw.sessions[i].state.stats for i in ids}
        radio = {i: gw.transport.device_stats(i) for i in ids}
    finally:
        await fleet.stop()
        stop.set()
        await task
        ctl.close()
        vb.stop()
        broker.stop()
        bus.stop()
    return {
        "devices": n,
        "drops_per_device": drops,
        "all_connected_s": round(all_up_s, 2),
        "notifications_per_s": round(notes / wall, 1),
        "cpu_gateway_pct": round(100 * cpu_gw / wall, 1),
        "cpu_virtual_bluez_pct": round(100 * cpu_vb / wall, 1),
        "reconnect_s_median": round(statistics.median(recon), 3) if recon else None,
        "reconnect_s_p90": round(sorted(recon)[int(0.9 * (len(recon) - 1))], 3) if recon else None,
        "reconnect_s_max": round(max(recon), 3) if recon else None,
        "reconnects_measured": len(recon),
        "lost_samples": sum(s.lost_samples for s in sessions.values()),
        "duplicates": sum(s.duplicates for s in sessions.values()),
        "gaps_seen": sum(s.gaps_seen for s in sessions.values()),
        "gaps_filled": sum(s.gaps_filled for s in sessions.values()),
        "radio_drops": sum(r["drops"] for r in radio.values()),
    }


async def _wait_back(gw, dev_id: str, before: int, out: list[float]) -> None:
    """Drop -> the first notification on the new link (data flowing again)."""
    t0 = time.monotonic()
    st = gw.transport.stats[dev_id]
    while time.monotonic() - t0 < 30:
        link = gw.transport.links.get(dev_id)
        if st.reconnects > before and link is not None and link.last_rx > t0:
            out.append(link.last_rx - t0)
            return
        await asyncio.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=7)
    ap.add_argument("--drops", type=int, default=20)
    ap.add_argument("--every", type=float, default=4.0, help="seconds between drops of a device")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="perimon-bench-ble-") as tmp:
        res = asyncio.run(run(args.devices, args.drops, args.every, Path(tmp)))
    width = max(map(len, res))
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
