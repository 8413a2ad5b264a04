"""The whole chain in one test: virtual devices running the real firmware (simulators.fleet)
-> a transport -> the gateway -> MQTT, and what to check on the trace that comes out."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from devtools.broker import free_port
from gateway.app import Gateway
from gateway.config import config_from_dict
from simulators.fleet import Fleet
from tests.harness.mqtt import Subscriber
from tests.harness.wait import eventually

# A trace starts at the first sample of the boot the gateway receives, numbered as that point
# of the boot: the device sends what it samples before the first connection to its buffer only.
FIRST_POINT_AT_MOST = 4 * 10

TRANSPORTS = ["sim", "serial", "ble"]


def newborn(device_id: str = "tcb-01", hours: float = 40, ga_weeks: int = 38) -> dict:
    """The [devices] entry of a baby born `hours` ago, for the jaundice meter `device_id`."""
    birth = (datetime.now(UTC) - timedelta(hours=hours)).isoformat()
    return {device_id: {"birth_time": birth, "ga_weeks": ga_weeks}}


# A port where no broker listens, ever: a free_port() left unbound could be handed to another
# test's broker while the gateway keeps trying it, and the gateway would publish into that test.
NO_BROKER_PORT = 1


def gateway_config(
    tmp_path: Path,
    gateway_id: str = "gw-test",
    mqtt: dict | None = None,
    radio: str | None = None,
    web: bool = False,
    **sections,
) -> dict:
    """A gateway's configuration as a dict (what config_from_dict or a TOML file takes): its
    data in tmp_path/gw, the simulated radio on `radio` (a free port unless given), MQTT as
    given or else a port where nothing listens (the outbox holds what is published), the nurse
    view on a free port with `web`; other sections as given."""
    raw: dict = {
        "gateway": {"id": gateway_id, "data_dir": str(tmp_path / "gw")},
        "mqtt": mqtt or {"host": "127.0.0.1", "port": NO_BROKER_PORT},
        "radio": {"listen": radio or f"127.0.0.1:{free_port()}"},
    }
    if web:
        raw["web"] = {"enabled": True, "listen": f"127.0.0.1:{free_port()}"}
    return raw | sections


@asynccontextmanager
async def running_gateway(gw: Gateway, ready_s: float = 10):
    """`gw` running (its radio listening) inside the block, stopped and awaited after it."""
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        await asyncio.wait_for(gw.ready.wait(), ready_s)
        yield gw
    finally:
        stop.set()
        await task


@asynccontextmanager
async def running_fleet(fleet: Fleet):
    """`fleet`'s devices running inside the block, stopped after it."""
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.stop()


def run_chain(broker, tmp_path, specs, seconds, during=None, transport="sim", **processing):
    """Gateway and fleet over `transport` for `seconds` (after `during(gw, fleet)`, which runs
    once all is started), watched by a Subscriber; returns it and the stopped gateway."""
    devices = newborn()
    sub = Subscriber(broker.host, broker.port)
    if transport == "ble":
        gw = asyncio.run(_run_ble_chain(broker, tmp_path, specs, seconds, during, devices,
                                        processing))  # fmt: skip
        _close_after_shutdown(sub)
        return sub, gw
    radio = f"127.0.0.1:{free_port()}"
    if transport == "serial":  # each device's cable end, where Fleet plugs it in
        ports = ",".join(str(tmp_path / "devices" / s.device_id / "usb") for s in specs)
        radio_cfg = {"transport": "serial", "serial_ports": ports}
    else:
        radio_cfg = {"listen": radio}
    raw = gateway_config(
        tmp_path,
        mqtt={"host": broker.host, "port": broker.port},
        processing={"status_interval_s": 1.0, **processing},
        devices=devices,
    )
    raw["radio"] = radio_cfg
    cfg = config_from_dict(raw)

    async def main():
        fleet = Fleet(specs, radio, tmp_path / "devices", radio_kind=transport, gateway=cfg)
        async with running_gateway(Gateway(cfg)) as gw, running_fleet(fleet):
            if during:
                await during(gw, fleet)
            await asyncio.sleep(seconds)  # the recording itself
            assert fleet.alive() == [s.device_id for s in specs], "a firmware process died"
        return gw

    gw = asyncio.run(main())
    _close_after_shutdown(sub)
    return sub, gw


def _close_after_shutdown(sub: Subscriber) -> None:
    """Close `sub` once the gateway's last word, its offline status after the outbox's drain,
    has come: on the one connection it follows everything the gateway published before it. A
    close before it drops what is still in the socket."""
    try:
        eventually(lambda: any(st.get("reason") == "shutdown" for st in sub.on("status")), 10,
                   "the gateway's shutdown status never came")  # fmt: skip
    finally:
        sub.close()


async def _run_ble_chain(broker, tmp_path, specs, seconds, during, devices, processing):
    from simulators.ble_rig import BleRig

    async with BleRig(tmp_path, broker, specs, processing=processing, devices=devices) as rig:
        if during:
            await during(rig.gw, rig.fleet)
        await asyncio.sleep(seconds)  # the recording itself
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
