"""The whole BLE chain on one machine: real firmware -> virtual BlueZ -> bleak -> gateway -> MQTT.

A private D-Bus bus with the virtual BlueZ on it (bleak finds it through
DBUS_SYSTEM_BUS_ADDRESS), a gateway whose radio is "ble", and a fleet of MicroPython devices
whose radio is the virtual BlueZ. The BLE tests and benchmarks/bench_ble.py both start the
chain here, so the chain the benchmark measures is the one the tests check.

    async with BleRig(workdir, broker, specs) as rig:
        await rig.wait_connected()
        times = await rig.drop_storm(rig.ids, drops=20, spacing_s=2.5)
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from gateway.app import Gateway
from gateway.config import Config, config_from_dict
from simulators.fleet import DeviceSpec, Fleet, ble_address
from simulators.virtual_bluez import PrivateBus, VirtualBluezControl, VirtualBluezProcess

_POLL_S = 0.02


def bluez_address(device_id: str) -> str:
    """A virtual device's BLE address as BlueZ writes it (02:AB:...)."""
    a = ble_address(device_id)
    return ":".join(a[i : i + 2] for i in range(0, 12, 2))


def _forget_bleak_bus() -> None:
    """Close bleak's connection to our private bus before the bus goes away.

    bleak keeps one BlueZ manager (and its D-Bus connection) per event loop for the life of
    the process; on a Pi the system bus outlives it, here the bus is stopped after each run,
    and the orphaned reader would report EOF errors long after the run ended.
    """
    from bleak.backends.bluezdbus import manager

    m = manager._global_instances.pop(asyncio.get_running_loop(), None)
    bus = getattr(m, "_bus", None)
    if bus is not None:
        bus.disconnect()


class BleRig:
    """Start with `async with`; everything it started is stopped on the way out.

    `radio`, `processing`, `web` and `devices` are merged into the gateway's configuration;
    `faults` go to the virtual BlueZ before the devices start (so the first connection
    attempt already sees them); `max_links` is the virtual adapter's link limit.
    """

    def __init__(
        self, workdir: Path, broker, specs: list[DeviceSpec], *, gateway_id: str = "gw-test",
        radio: dict | None = None, processing: dict | None = None, web: dict | None = None,
        devices: dict | None = None, faults: dict | None = None, max_links: int = 7,
    ) -> None:  # fmt: skip
        self.workdir = Path(workdir)
        self.specs = specs
        self.ids = [s.device_id for s in specs]
        self.faults = faults or {}
        self.max_links = max_links
        mqtt = {"host": broker.host, "port": broker.port}
        if getattr(broker, "protocol", None):
            mqtt["protocol"] = broker.protocol
        self.cfg: Config = config_from_dict({
            "gateway": {"id": gateway_id, "data_dir": str(self.workdir / "gw")},
            "mqtt": mqtt,
            "radio": {"transport": "ble", "enrolled": ",".join(self.ids), **(radio or {})},
            "processing": {"status_interval_s": 1.0, **(processing or {})},
            "web": web or {},
            "devices": devices or {},
        })  # fmt: skip
        self.bus: PrivateBus | None = None
        self.vb: VirtualBluezProcess | None = None
        self.ctl: VirtualBluezControl | None = None
        self.gw: Gateway | None = None
        self.fleet: Fleet | None = None
        self._gw_task: asyncio.Task | None = None
        self._stop = asyncio.Event()
        self._env_before: str | None = None

    # ---- lifecycle ----

    async def __aenter__(self) -> BleRig:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        self.bus = PrivateBus(self.workdir / "bus").start()
        self._env_before = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus.address  # bleak reads it on first use
        self.vb = VirtualBluezProcess(self.bus.address, max_links=self.max_links,
                                      log_file=self.workdir / "virtual_bluez.log").start()  # fmt: skip
        self.ctl = VirtualBluezControl(self.bus.address)
        if self.faults:
            await self.ctl.set_faults(**self.faults)
        else:
            await self.ctl.status()  # connects the control bus once, before tasks share it
        self.gw = Gateway(self.cfg)
        self._gw_task = asyncio.get_running_loop().create_task(self.gw.run(self._stop))
        await asyncio.wait_for(self.gw.ready.wait(), 10)
        self.fleet = Fleet(self.specs, self.vb.radio, self.workdir / "devices", radio_kind="ble",
                           gateway=self.cfg)  # fmt: skip
        await self.fleet.start()

    async def stop(self) -> None:
        if self.fleet is not None:
            await self.fleet.stop()
        self._stop.set()
        if self._gw_task is not None:
            await self._gw_task
        if self.ctl is not None:
            self.ctl.close()
        _forget_bleak_bus()
        if self.vb is not None:
            self.vb.stop()
        if self.bus is not None:
            self.bus.stop()
        if self._env_before is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self._env_before

    # ---- watching ----

    @property
    def links(self) -> dict:
        """The gateway's live BLE links, by device id."""
        assert self.gw is not None
        return self.gw.transport.links

    def alive(self) -> list[str]:
        assert self.fleet is not None
        return self.fleet.alive()

    async def until(self, pred, timeout_s: float, what: str):
        """Wait for `pred()` to be true (returns its value); AssertionError saying `what`."""
        deadline = time.monotonic() + timeout_s
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} (after {timeout_s:.0f} s)")
            await asyncio.sleep(0.1)

    async def wait_connected(self, ids: list[str] | None = None, timeout_s: float = 30.0) -> float:
        """Wait until every device in `ids` (default: all) has a link; returns the seconds."""
        want = ids or self.ids
        t0 = time.monotonic()
        await self.until(lambda: all(i in self.links for i in want), timeout_s,
                         f"not all connected: {sorted(self.links)} of {want}")  # fmt: skip
        return time.monotonic() - t0

    async def _flowing(self, dev_id: str, since: float, timeout_s: float, old=None):
        """The device's link (not `old`) once its first notification arrived after `since`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            link = self.links.get(dev_id)
            if link is not None and link is not old and (link.first_rx or 0.0) > since:
                return link
            await asyncio.sleep(_POLL_S)
        raise AssertionError(f"{dev_id}: no data {timeout_s:.0f} s after {since:.1f}")

    async def drop_storm(self, ids: list[str], drops: int, spacing_s: float,
                         back_timeout_s: float = 30.0) -> dict[str, list[float]]:  # fmt: skip
        """Drop each device's link (supervision timeout in the virtual BlueZ) `drops` times.

        Devices are staggered over `spacing_s`; each one is dropped again `spacing_s` after its
        previous drop, and never before data flows on its new link, so a slow reconnect on a
        loaded machine stretches the storm instead of stacking drops. Returns, per device, the
        time from each drop to the first notification on the new link.
        """
        assert self.ctl is not None
        out: dict[str, list[float]] = {i: [] for i in ids}

        async def one(k: int, dev_id: str) -> None:
            await asyncio.sleep(spacing_s * k / len(ids))
            addr = bluez_address(dev_id)
            last = time.monotonic() - spacing_s
            while len(out[dev_id]) < drops:
                await self._flowing(dev_id, 0.0, back_timeout_s)
                await asyncio.sleep(max(0.0, last + spacing_s - time.monotonic()))
                old = self.links.get(dev_id)
                t0 = time.monotonic()
                if not await self.ctl.drop(addr):
                    await asyncio.sleep(0.1)  # the link was down already: not a drop of ours
                    continue
                last = t0
                link = await self._flowing(dev_id, t0, back_timeout_s, old)
                out[dev_id].append(link.first_rx - t0)

        await asyncio.gather(*(one(k, i) for k, i in enumerate(ids)))
        return out
