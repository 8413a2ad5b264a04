"""BLE path benchmark: N fetal-heart monitors (real firmware) -> virtual BlueZ -> bleak -> gateway.

Every device's link is dropped D times (supervision timeout in the virtual BlueZ), staggered,
each drop once data flows again after the previous one (simulators/ble_rig.py, which
tests/test_ble_e2e.py also uses).
Reports notifications per second through the virtual BlueZ path, CPU of the gateway and of
the virtual BlueZ process, the time from each drop to data flowing again (median, p90, max),
and checks that no sample was lost or duplicated at the gateway's output.

    python -m benchmarks.bench_ble --devices 7 --drops 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.broker import start_broker  # noqa: E402
from simulators.ble_rig import BleRig  # noqa: E402
from simulators.fleet import DeviceSpec  # noqa: E402


async def run(n: int, drops: int, every_s: float, work: Path) -> dict:
    broker = start_broker(work / "broker")
    ids = [f"fh-{i + 1:02d}" for i in range(n)]
    specs = [DeviceSpec(i, "fetal_heart", seed=30 + k, fhr_bpm=125.0 + 3 * k)
             for k, i in enumerate(ids)]  # fmt: skip
    try:
        async with BleRig(work, broker, specs, gateway_id="gw-bench", max_links=n,
                          radio={"ble_max_connections": n},
                          processing={"status_interval_s": 5.0}) as rig:  # fmt: skip
            all_up_s = await rig.wait_connected(timeout_s=60)
            st0 = await rig.ctl.status()
            cpu_gw0, cpu_vb0, w0 = time.process_time(), rig.vb.cpu_seconds(), time.monotonic()
            recon_by_dev = await rig.drop_storm(ids, drops, every_s)
            await asyncio.sleep(5.0)
            wall = time.monotonic() - w0
            cpu_gw, cpu_vb = time.process_time() - cpu_gw0, rig.vb.cpu_seconds() - cpu_vb0
            st1 = await rig.ctl.status()
            await asyncio.sleep(3.0)  # last gaps refilled before the sessions are read
            notes = sum(d["notifications"] for d in st1["devices"].values()) - sum(
                d["notifications"] for d in st0["devices"].values()
            )
            sessions = {i: rig.gw.sessions[i].state.stats for i in ids}
            radio = {i: rig.gw.transport.device_stats(i) for i in ids}
    finally:
        broker.stop()
    recon = sorted(t for times in recon_by_dev.values() for t in times)
    return {
        "devices": n,
        "drops_per_device": drops,
        "all_connected_s": round(all_up_s, 2),
        "notifications_per_s": round(notes / wall, 1),
        "cpu_gateway_pct": round(100 * cpu_gw / wall, 1),
        "cpu_virtual_bluez_pct": round(100 * cpu_vb / wall, 1),
        "reconnect_s_median": round(statistics.median(recon), 3) if recon else None,
        "reconnect_s_p90": round(recon[int(0.9 * (len(recon) - 1))], 3) if recon else None,
        "reconnect_s_max": round(max(recon), 3) if recon else None,
        "reconnects_measured": len(recon),
        "lost_samples": sum(s.lost_samples for s in sessions.values()),
        "duplicates": sum(s.duplicates for s in sessions.values()),
        "gaps_seen": sum(s.gaps_seen for s in sessions.values()),
        "gaps_filled": sum(s.gaps_filled for s in sessions.values()),
        "radio_drops": sum(r["drops"] for r in radio.values()),
    }


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
