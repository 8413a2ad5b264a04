"""How long a jaundice meter's press holds up the gateway's event loop.

Each TcB record is carried to the nominal LED bands by the unit's band correction
(dsp/tcb_counts.py, calibrated_reflectance: a least-squares fit of the skin optics), which
costs 0.1-0.2 s of CPU. The event loop also serves every other device's frames and the nurse
view, so the gateway's JaundiceProcessor runs that fit on a worker thread. This measures the
loop's lag (a task that asks to wake every 5 ms: how late it wakes) while presses of a
simulated, per-unit calibrated meter are processed, with the fit on the worker (as shipped)
and on the loop itself (as before), in one run: presses as real records (the firmware's
protocol module under CPython), real counts from the device model.

    .venv/bin/python benchmarks/bench_tcb_loop.py [--presses 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from concurrent.futures import Executor, Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_gateway import firmware_protocol  # noqa: E402  (this folder is on the path)

from gateway import protocol as p  # noqa: E402
from gateway.processing.jaundice import JaundiceProcessor  # noqa: E402
from simulators.skin import random_newborn, skin_reflectance  # noqa: E402
from simulators.tcb_device import TcbDeviceModel, random_factory_calibration  # noqa: E402

TICK_S = 0.005


class OnTheLoop(Executor):
    """Runs each job at once, in the caller's thread: the band correction on the event loop."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except Exception as exc:
            done.set_exception(exc)
        return done


def records(n: int, seed: int = 7) -> tuple[dict[str, Any], list[bytes]]:
    """A per-unit calibrated meter's device info and n of its TCB records on newborn skin."""
    fw = firmware_protocol()
    cal = random_factory_calibration(seed)
    dev = TcbDeviceModel(cal, seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        baby = random_newborn(rng, ("light", "medium", "dark")[i % 3], float(rng.uniform(3, 18)))
        near, far = skin_reflectance(baby, dev.led_centre_nm, dev.led_fwhm_nm)
        c = dev.press(near, far, temperature_c=32.0)
        out.append(bytes(fw.encode_tcb(fw.TCB_CONTACT, c.temperature_c, c.dark_before,
                                       c.dark_after, c.led_drive, c.flashes)))  # fmt: skip
    info = {"calibration": cal.to_dict(), "self_check": dev.self_check_info()}
    return info, out


async def run(info: dict[str, Any], presses: list[bytes], on_loop: bool) -> dict[str, float]:
    state = SimpleNamespace(device_id="tcb-01", boot=1, info=info)
    session = SimpleNamespace(state=state, unix_time=lambda t_ms: 1.8e9 + t_ms / 1000.0)
    published: list[tuple[float, dict[str, Any]]] = []

    def publish(parts: tuple[str, ...], m: dict[str, Any], **kw: Any) -> None:
        if parts[-1] == "tcb":  # not its FHIR Observations or alerts
            published.append((time.perf_counter(), m))

    proc = JaundiceProcessor(session, publish, {})  # type: ignore[arg-type]
    if on_loop:
        proc._worker = OnTheLoop()  # type: ignore[assignment]
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            due = time.perf_counter() + TICK_S
            await asyncio.sleep(TICK_S)
            lags.append(time.perf_counter() - due)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    sent_at = []
    cpu0 = time.process_time()
    for seq, payload in enumerate(presses):
        sent_at.append(time.perf_counter())
        proc.on_record(p.Stream.TCB, seq, seq * 60_000, payload)
        await asyncio.sleep(0.25)  # a nurse's presses come seconds apart; here 0.25 s
    while len(published) < len(presses):
        await asyncio.sleep(0.01)
    cpu = time.process_time() - cpu0
    stop.set()
    await tick
    numbers = sum(1 for _, m in published if m["tcb_mg_dl"] is not None)
    delays = [t - s for (t, _), s in zip(published, sent_at, strict=True)]
    return {
        "lag_max_ms": 1000 * max(lags),
        "lag_p99_ms": 1000 * float(np.percentile(lags, 99)),
        "lag_median_ms": 1000 * statistics.median(lags),
        "published_median_ms": 1000 * statistics.median(delays),
        "numbers": numbers,
        "cpu_per_press_ms": 1000 * cpu / len(presses),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=20)
    args = ap.parse_args()
    info, presses = records(args.presses)
    asyncio.run(run(info, presses[:2], True))  # warm up: imports and first-call costs
    rows = []
    for name, on_loop in (("on the event loop (before)", True), ("on the worker thread", False)):
        r = asyncio.run(run(info, presses, on_loop))
        rows.append((name, r))
    print(f"{args.presses} presses of a per-unit calibrated meter, one every 0.25 s; a 5 ms tick")
    print(
        "| band correction | loop lag max | p99 | median | record to published (median) "
        "| CPU per press | numbers |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows:
        print(f"| {name} | {r['lag_max_ms']:.0f} ms | {r['lag_p99_ms']:.0f} ms | "
              f"{r['lag_median_ms']:.1f} ms | {r['published_median_ms']:.0f} ms | "
              f"{r['cpu_per_press_ms']:.0f} ms | {r['numbers']}/{args.presses} |")  # fmt: skip
    before, after = rows[0][1], rows[1][1]
    print(f"max lag ratio (worker / loop): {after['lag_max_ms'] / before['lag_max_ms']:.2f}")


if __name__ == "__main__":
    main()
