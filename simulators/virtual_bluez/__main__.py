"""python -m simulators.virtual_bluez --bus unix:path=... --listen 127.0.0.1:0

Prints `READY <port>` once org.bluez is on the bus and devices can connect to <port>; runs until
SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from simulators import virtual_bluez
from simulators.virtual_bluez.daemon import VirtualBluez
from simulators.virtual_bluez.defs import Faults


async def _main(args: argparse.Namespace) -> None:
    vb = VirtualBluez(args.bus, args.listen, Faults(max_links=args.max_links))
    await vb.start()
    print(f"READY {vb.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await vb.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m simulators.virtual_bluez", description=virtual_bluez.__doc__.split("\n")[0]
    )
    ap.add_argument("--bus", required=True, help="D-Bus address to publish org.bluez on")
    ap.add_argument("--listen", default="127.0.0.1:0", help="where virtual devices connect")
    ap.add_argument("--max-links", type=int, default=7)
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")  # fmt: skip
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
