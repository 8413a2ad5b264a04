"""The virtual BlueZ's fault knobs, each against the gateway's real BLE central (bleak's BlueZ
backend) and real firmware: a refused connection, added latency, a throughput cap, the
adapter's link limit and the gateway's connection slots."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from simulators.ble_rig import BleRig, bluez_address
from simulators.fleet import DeviceSpec
from tests.harness.chain import NO_BROKER_PORT

pytestmark = pytest.mark.system


def fetal(n: int) -> list[DeviceSpec]:
    return [DeviceSpec(f"fh-{k + 1:02d}", "fetal_heart", seed=40 + k) for k in range(n)]


async def nothing_lost(rig: BleRig, timeout_s: float = 20.0) -> None:
    """Every gap refilled (none held, none given up) in every session."""
    await rig.until(
        lambda: all(not r.held for s in rig.gw.sessions.values() for r in s.streams.values()),
        timeout_s, "gaps still open",
    )  # fmt: skip
    for dev_id, s in rig.gw.sessions.items():
        st = s.state.stats
        assert st.lost_samples == 0 and st.lost_records == 0, (dev_id, st)


def test_refused_connections_are_retried_with_backoff_until_one_succeeds(broker, tmp_path):
    """The adapter refuses the first 5 attempts: more than one round of bleak-retry-connector's
    attempts (3), so the gateway's own jittered backoff runs between rounds, then connects."""
    specs = fetal(1)
    addr = bluez_address("fh-01")
    out = {}

    async def main():
        async with BleRig(tmp_path, broker, specs, faults={"refuse": {addr: 5}}) as rig:
            t0 = time.monotonic()
            await rig.wait_connected(timeout_s=40)
            out["connect_s"] = time.monotonic() - t0
            await rig.until(lambda: rig.gw.sessions["fh-01"].state.stats.frames > 20, 10,
                            "no data after connecting")  # fmt: skip
            out["vb"] = (await rig.ctl.status())["devices"][addr]
            out["radio"] = rig.gw.transport.device_stats("fh-01")

    asyncio.run(main())
    assert out["vb"]["refused"] == 5 and out["vb"]["connects"] == 1, out["vb"]
    radio = out["radio"]
    assert radio["failed_attempts"] >= 1 and radio["connects"] == 1, radio  # a round failed
    # between rounds the gateway waited at least 0.5 s (0.5 * 2 ** 1 * 0.5, the least jitter)
    assert out["connect_s"] >= 0.5, out


def test_added_latency_slows_every_exchange_and_loses_nothing(broker, tmp_path):
    """0.3 s on every packet each way: a reconnect (connect, subscribe, time sync, resend
    request, the first notification) takes several of them, and the drop is still refilled."""
    specs = fetal(1)
    out = {}

    async def main():
        async with BleRig(tmp_path, broker, specs) as rig:
            await rig.wait_connected(timeout_s=20)
            fast = await rig.drop_storm(["fh-01"], drops=2, spacing_s=2.0)
            await rig.ctl.set_faults(latency_s=0.3)
            slow = await rig.drop_storm(["fh-01"], drops=2, spacing_s=2.0)
            await nothing_lost(rig)
            out["fast"], out["slow"] = fast["fh-01"], slow["fh-01"]
            out["sync"] = rig.gw.sessions["fh-01"].clock_offset_ms

    asyncio.run(main())
    # connect + the data notification alone are 2 x 0.3 s; without latency well under that
    assert min(out["slow"]) >= 0.6, out
    assert max(out["fast"]) < min(out["slow"]), out
    assert out["sync"] is not None


def test_a_throughput_cap_backs_up_into_the_device_and_loses_nothing(broker, tmp_path):
    """A link capped below the monitor's data rate: the controller's buffers fill, the firmware's
    notify is refused (ENOMEM) and frames wait in its ring buffer; when the cap lifts the backlog
    drains faster than real time and nothing was lost or reordered."""
    specs = fetal(1)
    addr = bluez_address("fh-01")
    out = {}

    async def rate(rig: BleRig, seconds: float) -> float:
        a = (await rig.ctl.status())["devices"][addr]["notify_bytes"]
        await asyncio.sleep(seconds)
        return ((await rig.ctl.status())["devices"][addr]["notify_bytes"] - a) / seconds

    async def main():
        async with BleRig(tmp_path, broker, specs) as rig:
            await rig.wait_connected(timeout_s=20)
            await asyncio.sleep(2)  # streaming settles before the rate is measured
            # gaps before the cap (none expected: nothing dropped), for the check below
            out["gaps_before"] = rig.gw.sessions["fh-01"].state.stats.gaps_seen
            out["normal"] = await rate(rig, 3)
            cap = out["normal"] / 2
            await rig.ctl.set_faults(throughput_bps=cap)
            out["capped"] = await rate(rig, 5)
            await rig.ctl.set_faults(throughput_bps=0)
            out["catch_up"] = await rate(rig, 2)
            await nothing_lost(rig)
            out["radio"] = rig.gw.transport.device_stats("fh-01")
            out["stats"] = rig.gw.sessions["fh-01"].state.stats

    asyncio.run(main())
    assert out["capped"] <= 0.6 * out["normal"], out  # the cap held (half, plus rounding)
    assert out["catch_up"] > 1.3 * out["normal"], out  # the backlog drains when it lifts
    assert out["radio"]["drops"] == 0 and out["radio"]["connects"] == 1, out["radio"]
    assert out["stats"].lost_samples == 0, out["stats"]
    assert out["stats"].gaps_seen == out["gaps_before"] <= 2, out  # none from the cap


async def _sample_links(rig: BleRig, seconds: float) -> tuple[int, int]:
    """Most links seen at once, by the gateway and by the adapter, over `seconds`."""
    most_gw = most_vb = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        most_gw = max(most_gw, len(rig.links))
        vb = await rig.ctl.status()
        most_vb = max(most_vb, sum(d["connected"] for d in vb["devices"].values()))
        await asyncio.sleep(0.05)
    return most_gw, most_vb


def test_the_gateway_never_holds_more_links_than_its_slots(broker, tmp_path):
    """3 monitors, 2 slots: 2 connected, the third waits; a dropped link frees its slot."""
    specs = fetal(3)
    out = {}

    async def main():
        async with BleRig(tmp_path, broker, specs, radio={"ble_max_connections": 2}) as rig:
            await rig.until(lambda: len(rig.links) == 2, 20, "2 slots not filled")
            out["first"] = sorted(rig.links)
            out["most"] = await _sample_links(rig, 3)
            victim = out["first"][0]
            assert await rig.ctl.drop(bluez_address(victim))
            connects = rig.gw.transport.stats.values()
            await rig.until(lambda: len(rig.links) == 2 and sum(s.connects for s in connects) == 3,
                            20, "the freed slot was not reused")  # fmt: skip
            out["most_after"] = await _sample_links(rig, 3)
            out["vb"] = await rig.ctl.status()

    asyncio.run(main())
    assert out["most"] == (2, 2) and out["most_after"] == (2, 2), out
    assert sum(d["connects"] for d in out["vb"]["devices"].values()) == 3, out["vb"]


def test_the_adapter_link_limit_refuses_the_extra_device_and_spares_the_others(broker, tmp_path):
    """The adapter holds 2 links, the gateway would take 3: the third attempt is refused
    ("Connection Limit Exceeded"), the gateway backs off, the two linked devices lose nothing."""
    specs = fetal(3)
    out = {}

    async def main():
        async with BleRig(tmp_path, broker, specs, radio={"ble_max_connections": 3},
                          max_links=2) as rig:  # fmt: skip
            await rig.until(lambda: len(rig.links) == 2, 20, "2 links not up")
            out["most"] = await _sample_links(rig, 6)
            waiting = next(i for i in rig.ids if i not in rig.links)
            out["waiting"] = rig.gw.transport.device_stats(waiting)
            await nothing_lost(rig)

    asyncio.run(main())
    assert out["most"] == (2, 2), out
    assert out["waiting"]["failed_attempts"] >= 1 and out["waiting"]["connects"] == 0, out


def test_a_device_the_gateway_refused_is_not_reconnected_in_a_loop(broker, tmp_path):
    """With no allowlist every perimon device in range is connected; one not enrolled is
    refused (listed on MQTT as unknown) and then left alone for a while, not reconnected
    over and over, while the enrolled one streams."""
    specs = [DeviceSpec("fh-01", "fetal_heart", seed=3),
             DeviceSpec("fh-99", "fetal_heart", seed=4, enrolled=False)]  # fmt: skip
    out = {}

    async def main():
        async with BleRig(tmp_path, broker, specs, radio={"enrolled": ""}) as rig:
            await rig.until(lambda: "fh-99" in rig.gw.unknown, 20, "never refused")
            await asyncio.sleep(6)  # what the stranger gets over 6 s: held off, not retried
            out["vb"] = (await rig.ctl.status())["devices"][bluez_address("fh-99")]
            out["unknown"] = dict(rig.gw.unknown["fh-99"])
            out["radio"] = rig.gw.transport.device_stats("fh-99")
            out["frames"] = rig.gw.sessions["fh-01"].state.stats.frames

    asyncio.run(main())
    assert out["vb"]["connects"] == 1 and out["unknown"]["attempts"] == 1, out
    assert out["radio"]["drops"] == 0, out["radio"]  # the gateway's own close is not a drop
    assert out["frames"] > 50


def test_strangers_in_their_pairing_window_leave_a_slot_for_enrolled_monitors(tmp_path):
    """Anyone in range can advertise the pairing flag. With three connection slots and four
    strangers in their pairing window, at most two of them are held for pairing at once, the
    enrolled monitor still (re)connects and streams, and a held pairing link is closed after
    the pairing window even when nobody looks at the pairing page."""
    from gateway.device import pairing as gp
    from gateway.transports.base import MAX_PAIRING_LINKS

    specs = [DeviceSpec("fh-01", "fetal_heart", seed=3)] + [
        DeviceSpec(f"fh-x{i}", "fetal_heart", seed=10 + i, enrolled=False) for i in range(4)
    ]
    no_broker = SimpleNamespace(host="127.0.0.1", port=NO_BROKER_PORT)  # MQTT is not needed here
    window = (gp.WINDOW_S, gp.GRACE_S)
    gp.WINDOW_S, gp.GRACE_S = 6.0, 1.0  # the pairing window, shortened for the test

    async def main():
        async with BleRig(tmp_path, no_broker, specs, radio={
                "enrolled": "fh-01", "ble_max_connections": 3}) as rig:  # fmt: skip
            gw = rig.gw
            await rig.wait_connected(["fh-01"])
            for dev in rig.fleet.devices[1:]:
                await dev.press_button()

            def pairing_links():
                return [link for link in rig.links.values() if link.pairing]

            await rig.until(lambda: len(pairing_links()) == MAX_PAIRING_LINKS, 20,
                            "strangers never held for pairing")  # fmt: skip
            held = pairing_links()
            assert await rig.ctl.drop(bluez_address("fh-01"))
            t0 = time.monotonic()
            await rig._flowing("fh-01", t0, 20)  # it gets a slot back and streams
            for _ in range(20):
                assert len(pairing_links()) <= MAX_PAIRING_LINKS
                await asyncio.sleep(0.1)
            await rig.until(lambda: all(link.closed.is_set() for link in held),
                            gp.WINDOW_S + gp.GRACE_S + 5, "pairing links kept past the window")  # fmt: skip
            assert "fh-01" in rig.links
            session = gw.sessions["fh-01"]
            frames = session.state.stats.frames
            await rig.until(lambda: session.state.stats.frames > frames + 20, 10, "no frames")

    try:
        asyncio.run(main())
    finally:
        gp.WINDOW_S, gp.GRACE_S = window
