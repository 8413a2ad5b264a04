"""A jaundice reading taken while the gateway is out of reach arrives as soon as the link is
up, not when the next baby is measured (docs/protocol.md, Resend)."""

from __future__ import annotations

import asyncio
import time

import pytest

from devtools.broker import free_port
from gateway.app import Gateway
from gateway.config import config_from_dict
from simulators.fleet import DeviceSpec, Fleet
from tests.harness.chain import gateway_config, newborn
from tests.harness.mqtt import Subscriber
from tests.harness.wait import eventually_async

pytestmark = pytest.mark.system


@pytest.mark.parametrize("transport", ["sim", "serial"])
def test_reading_taken_before_the_gateway_runs_arrives_once_on_connect(broker, tmp_path,
                                                                      transport):  # fmt: skip
    spec = DeviceSpec("tcb-01", "jaundice", seed=5, press_every_s=3600.0)  # one press only
    radio = f"127.0.0.1:{free_port()}"
    raw = gateway_config(tmp_path, mqtt={"host": broker.host, "port": broker.port}, radio=radio,
                         processing={"status_interval_s": 1.0}, devices=newborn())  # fmt: skip
    if transport == "serial":
        raw["radio"] = {"transport": "serial",
                        "serial_ports": str(tmp_path / "devices" / "tcb-01" / "usb")}  # fmt: skip
    cfg = config_from_dict(raw)
    sub = Subscriber(broker.host, broker.port)

    async def main() -> float:
        fleet = Fleet([spec], radio, tmp_path / "devices", radio_kind=transport, gateway=cfg)
        await fleet.start()
        stop = asyncio.Event()
        task = None
        try:
            await asyncio.sleep(4.0)  # the nurse presses the probe; no gateway is listening
            assert "tcb-01" in fleet.alive()
            task = asyncio.create_task(Gateway(cfg).run(stop))
            t0 = time.monotonic()
            await eventually_async(lambda: sub.of("tcb-01", "tcb"), 20, "the reading never came")
            waited = time.monotonic() - t0
            await asyncio.sleep(2.0)  # nothing more may follow: one press, one reading
            return waited
        finally:
            await fleet.stop()
            stop.set()
            if task is not None:
                await task

    waited = asyncio.run(main())
    sub.close()
    readings = sub.of("tcb-01", "tcb")
    assert len(readings) == 1, readings
    assert readings[0]["tcb_mg_dl"] is not None and readings[0]["flag"] == ""
    assert waited < 10.0  # connect, session, info, start, then the ask: seconds, not an hour
