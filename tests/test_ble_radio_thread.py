"""The BLE radio under a host stack that calls it from its own thread, as NimBLE does on an
ESP32: the real firmware (radio_ble on bluetooth_sim, whose IRQs come from a second thread of
the MicroPython Unix port, which has no GIL) against a scripted central that connects, writes
and drops the link hundreds of times, often while a write and notifications are in flight.
Work done in the IRQ (the link's queue and resend store, the connection handle going to None
under gatts_notify) races the asyncio loop here; bluetooth_sim also names any call the handler
makes into the stack ("BLE call from IRQ"), which the firmware's handler never does."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from gateway import protocol as p
from simulators.ble_central import ScriptedCentral
from simulators.fleet import DeviceSpec, VirtualDevice
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.system

CYCLES = 150


def test_links_dropped_mid_write_and_mid_notify_never_kill_the_device(tmp_path):
    rng = random.Random(16)

    async def main() -> None:
        central = ScriptedCentral()
        server = await asyncio.start_server(central.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        spec = DeviceSpec("fh-thr", "fetal_heart", seed=1, signed=False)
        dev = VirtualDevice(spec, f"127.0.0.1:{port}", tmp_path, radio_kind="ble")
        await dev.start()
        try:
            await eventually_async(lambda: central.ctrl and central.adv.is_set(), 20,
                                   "the device registered its GATT table and advertised")  # fmt: skip
            for conn in range(1, CYCLES + 1):
                await asyncio.wait_for(central.adv.wait(), 5)  # advertising again after a drop
                central.connect(conn)
                central.command(
                    conn & 0xFF, p.Op.TIME_SYNC, p.time_sync_args(int(time.time() * 1000))
                )
                if conn % 10 == 0:  # a whole link's worth of data now and then
                    await eventually_async(lambda c=conn: central.notified.get(c, 0) >= 3, 10,
                                           f"notifications on link {conn}")  # fmt: skip
                await asyncio.sleep(rng.uniform(0.0, 0.03))
                # a resend of the last second (frames read from the store while Doppler is
                # written to it) and the link's end arrive together, with notifications going
                last = central.doppler_seq
                resend = p.resend_args(p.Stream.DOPPLER, max(0, last - 4000), last + 1)
                central.command((conn + 1) & 0xFF, p.Op.RESEND, resend)
                central.disconnect(conn)
                assert dev.proc is not None and dev.proc.returncode is None, "the device died"
            conn = CYCLES + 1  # after the storm the device still streams, sender and all
            await asyncio.wait_for(central.adv.wait(), 5)
            central.connect(conn)
            central.command(1, p.Op.TIME_SYNC, p.time_sync_args(0))
            await eventually_async(lambda: central.notified.get(conn, 0) >= 20, 10,
                                   "the device streams on a link after the storm")  # fmt: skip
        finally:
            await dev.stop()
            server.close()
        log = "\n".join(dev.console_lines())
        for bad in ("Traceback", "Unhandled exception", "BLE call from IRQ"):
            assert bad not in log, log
        assert central.bad_frames == 0 and central.frames_ok > 0

    asyncio.run(main())
