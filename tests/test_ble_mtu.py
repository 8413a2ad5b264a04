"""The ATT MTU: the firmware asks for 247 itself (gattc_exchange_mtu), so a central that never
starts the exchange still gets full frames; frames are never built for the 23 bytes a link
starts with (they would be dropped as oversize, or fill the resend store with ten times the
frames for the same seconds)."""

from __future__ import annotations

import asyncio

import pytest

from simulators.ble_rig import BleRig, bluez_address
from simulators.fleet import DeviceSpec

pytestmark = pytest.mark.system


def test_a_central_that_never_exchanges_the_mtu_still_gets_full_frames(broker, tmp_path):
    specs = [DeviceSpec("fh-01", "fetal_heart", seed=7)]
    addr = bluez_address("fh-01")
    out = {}

    async def main():
        async with BleRig(tmp_path, broker, specs, faults={"central_mtu_exchange": False}) as rig:
            await rig.wait_connected(timeout_s=20)
            await rig.until(lambda: rig.gw.sessions["fh-01"].state.stats.frames > 50, 15,
                            "no data")  # fmt: skip
            out["recon"] = await rig.drop_storm(["fh-01"], drops=2, spacing_s=3.0)
            session = rig.gw.sessions["fh-01"]
            await rig.until(  # frames after the drops show their gaps, and the gaps are filled
                lambda: session.state.stats.gaps_seen > 0
                and all(not r.held for r in session.streams.values()),
                20, "no gap seen, or gaps still open",
            )  # fmt: skip
            out["vb"] = (await rig.ctl.status())["devices"][addr]
            out["stats"] = rig.gw.sessions["fh-01"].state.stats
            out["radio"] = rig.gw.transport.device_stats("fh-01")

    asyncio.run(main())
    vb, stats = out["vb"], out["stats"]
    assert vb["mtu"] == 247, vb  # the device's own request, answered by the central
    assert out["radio"]["att_mtu"] == 247, out["radio"]
    # signed Doppler frames fill 244 bytes; at MTU 23 they would be 20 (8 bytes of payload)
    assert vb["notify_bytes"] / vb["notifications"] > 150, vb
    assert stats.lost_samples == 0 and stats.gaps_filled >= stats.gaps_seen > 0, stats
