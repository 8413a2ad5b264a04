"""`perimon gateway`, `perimon simulate` and `perimon demo`: the long-running commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import tempfile
from pathlib import Path

from gateway.cli import Subparsers, UserError
from gateway.config import Config, ConfigError, config_from_dict, load_config


def register(sub: Subparsers) -> None:
    g = sub.add_parser("gateway", help="run the gateway (devices in, MQTT out)")
    g.add_argument("--config", "-c", help="TOML config file (every key: docs/perimon.example.toml)")
    g.add_argument("--check-config", action="store_true",
                   help="read the config, say in one line what it sets up, and exit")  # fmt: skip
    g.add_argument("--verbose", "-v", action="store_true")
    g.set_defaults(func=cmd_gateway)

    s = sub.add_parser("simulate", help="start virtual devices running the real firmware")
    s.add_argument(
        "--config", "-c", help="the gateway's TOML config: its radio address, and the devices "
        "are enrolled in its list as `perimon provision` would"
    )  # fmt: skip
    s.add_argument("--radio", help="the gateway's simulated radio (default 127.0.0.1:7600)")
    s.add_argument("--fetal", type=int, default=2, help="fetal-heart monitors")
    s.add_argument("--jaundice", type=int, default=1, help="jaundice meters")
    s.add_argument("--workdir", help="where device state lives (default: a temp dir)")
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="broker + gateway + 3 virtual devices + a subscriber")
    d.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    d.add_argument("--radio", choices=("sim", "ble", "serial"), default="sim",
                   help="sim: loopback radio; ble: BLE through a virtual BlueZ and bleak; "
                        "serial: each device on a USB cable made of pseudo-terminals")  # fmt: skip
    d.add_argument("--verbose", "-v", action="store_true")
    d.set_defaults(func=cmd_demo)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _until_signal(stop: asyncio.Event, seconds: float = 0) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if seconds:
        loop.call_later(seconds, stop.set)
    await stop.wait()


def cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.app import Gateway

    _logging(args.verbose)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if args.check_config:
        r = cfg.radio
        where = {"sim": r.listen, "serial": r.serial_ports}.get(r.transport, "BlueZ")
        tls = "TLS" if cfg.mqtt.tls else "in clear: set [mqtt] tls = true"
        print(f"config ok: gateway {cfg.gateway.id}, radio {r.transport} ({where}), "
              f"MQTT {cfg.mqtt.host}:{cfg.mqtt.port} ({tls}), data in {cfg.data_dir}")  # fmt: skip
        return 0

    # Every file the gateway makes (the outbox, the sessions, the history, keys, logs of
    # settings) is its own only, wherever it runs: the systemd unit says UMask=0077 too.
    os.umask(0o077)

    async def main() -> None:
        stop = asyncio.Event()
        gw = Gateway(cfg)
        task = asyncio.create_task(gw.run(stop))
        await _until_signal(stop)
        await task

    try:
        asyncio.run(main())
    except OSError as exc:
        raise UserError(f"cannot start the gateway: {exc}") from None
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.fleet import Fleet, demo_specs

    _logging(False)

    try:
        cfg = load_config(args.config) if args.config else None
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    radio = args.radio or (cfg.radio.listen if cfg else "127.0.0.1:7600")
    if cfg is None:
        print("note: without --config the devices are not enrolled; a gateway refuses them")

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="perimon-sim-") as tmp:
            specs = demo_specs(args.fetal, args.jaundice)
            fleet = Fleet(specs, radio, Path(args.workdir or tmp), gateway=cfg)
            await fleet.start()
            print(f"{len(fleet.devices)} virtual devices -> {radio}; Ctrl-C stops")
            try:
                await _until_signal(asyncio.Event())
            finally:
                await fleet.stop()

    asyncio.run(main())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from devtools.broker import free_port, start_broker
    from devtools.subscriber import ConsoleSubscriber
    from gateway.app import Gateway
    from simulators.fleet import Fleet, demo_specs

    _logging(args.verbose)
    with tempfile.TemporaryDirectory(prefix="perimon-demo-") as tmp:
        work = Path(tmp)
        broker = start_broker(work / "broker", tied=True)  # gone with the demo, even kill -9
        print(f"MQTT broker: {broker.kind} on {broker.host}:{broker.port}")
        radio = f"127.0.0.1:{free_port()}"
        radio_cfg = {"transport": "sim", "listen": radio}
        bluez = None
        if args.radio == "ble":  # a private bus with a virtual BlueZ; bleak is pointed at it
            import os

            from simulators.virtual_bluez import PrivateBus, VirtualBluezProcess

            bus = PrivateBus(work / "bus").start(tied=True)
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
            bluez = (bus, VirtualBluezProcess(bus.address).start(tied=True))
            radio = bluez[1].radio
            radio_cfg = {"transport": "ble", "enrolled": "fh-01,fh-02,tcb-01"}
            print(f"virtual BlueZ on {bus.address}")
        specs = demo_specs(2, 1)
        if args.radio == "serial":  # the gateway opens each device's cable end by path
            ports = [str(work / "devices" / s.device_id / "usb") for s in specs]
            radio_cfg = {"transport": "serial", "serial_ports": ",".join(ports)}
        cfg = config_from_dict(
            {
                "gateway": {"id": "gw-demo", "data_dir": str(work / "gateway")},
                "mqtt": {"host": broker.host, "port": broker.port, "protocol": broker.protocol},
                "radio": radio_cfg,
                "processing": {"ctg_interval_s": 60.0},
                "web": {"enabled": True, "listen": f"127.0.0.1:{free_port()}"},
                "devices": {"tcb-01": {"birth_time": _hours_ago(40), "ga_weeks": 38}},
            }
        )
        password = _demo_nurse(cfg)
        sub = ConsoleSubscriber(broker.host, broker.port, cfg.mqtt.topic_prefix, broker.protocol)
        sub.start()

        async def main() -> None:
            stop = asyncio.Event()
            gw = Gateway(cfg)
            gw_task = asyncio.create_task(gw.run(stop))
            await gw.ready.wait()
            print(f"nurse view: http://{cfg.web.listen}/  (user: nurse, password: {password})")
            fleet = Fleet(specs, radio, work / "devices", radio_kind=args.radio, gateway=cfg)
            await fleet.start()
            print("gateway and 3 virtual devices started (2 fetal-heart, 1 jaundice); Ctrl-C stops")
            try:
                await _until_signal(stop, args.seconds)
            finally:
                await fleet.stop()
                stop.set()
                await gw_task

        try:
            asyncio.run(main())
        finally:
            sub.stop()
            broker.stop()
            if bluez is not None:
                bluez[1].stop()
                bluez[0].stop()
    print("demo stopped")
    return 0


def _demo_nurse(cfg: Config) -> str:
    """A throw-away nurse account for the demo's nurse view (the demo's data dir is temporary)."""
    import secrets

    from gateway.web.nurses import NurseAccounts

    password = secrets.token_urlsafe(9)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    NurseAccounts(cfg.data_dir / "nurses.json").add("nurse", password)
    return password


def _hours_ago(hours: float) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat(timespec="seconds")
