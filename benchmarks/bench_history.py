"""The history on disk (gateway/state/history.py) over a time-accelerated day: its size, what it
writes, what it costs the event loop, and that the gateway's memory stays flat.

Every simulated second, each of `--monitors` fetal monitors publishes what a real one does
(the messages as gateway/processing/fetal.py shapes them): one FHR and one MHR trace message
of 4 points, a device status every 5 s, a CTG finding every minute (the dsp.ctg findings of a
30-minute trace), and a signal-loss alert raised and cleared every two hours. They go straight
into `History.record`, as `Gateway.publish` hands them over, with the history's clock advanced
by the simulated time; nothing else runs. Measured each simulated hour: the files on disk,
what was written (`wchar` of /proc/self/io: the bytes handed to the kernel, WAL frames and
checkpoints, before any file-system cache), the Python heap (tracemalloc) and the process's
resident memory. After the first `--warmup-h` hours (the history fills its first day only
at 24 h; the heap and SQLite's page cache settle sooner) the heap and RSS must stay within
`--max-heap-growth-mb` and `--max-rss-growth-mb`, else the benchmark fails.

    .venv/bin/python benchmarks/bench_history.py --hours 26 --monitors 7
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsp.ctg import analyse_ctg  # noqa: E402
from dsp.ctg_reference import POINT_S  # noqa: E402
from gateway.config import config_from_dict  # noqa: E402
from gateway.processing.fhir import TRACE_POINTS_PER_OBSERVATION  # noqa: E402
from gateway.publish.mqtt import Publisher  # noqa: E402
from gateway.publish.outbox import Outbox  # noqa: E402
from gateway.state.history import History  # noqa: E402
from gateway.times import iso_time  # noqa: E402

START = 1_800_000_000.0  # unix s of the simulated day's first second
MiB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def written_bytes() -> int:
    with open("/proc/self/io") as f:
        return int(next(ln for ln in f if ln.startswith("wchar:")).split()[1])


def ctg_template() -> dict[str, Any]:
    """CTG findings as published: dsp.ctg on 30 minutes of a trace with accelerations."""
    rng = np.random.default_rng(4)
    n = int(30 * 60 / POINT_S)
    t = (np.arange(n) + 1) * POINT_S
    fhr = 140 + np.cumsum(rng.normal(0, 0.3, n)) * 0.2 + 5 * np.sin(t / 40)
    for start in (300, 900, 1500):
        fhr[int(start / POINT_S) : int((start + 25) / POINT_S)] += 18
    return {"window_s": n * POINT_S, **analyse_ctg(t, fhr).to_dict()}


def status(dev: str, now: float, quality: float) -> dict[str, Any]:
    """A fetal monitor's retained status, with the fields gateway/app.py publishes."""
    return {
        "device_id": dev, "device_type": "fetal_heart", "link": "connected", "link_reason": "",
        "boot": 1, "battery_mv": 3980, "battery_pct": 81, "battery_low": False, "on_skin": True,
        "last_seen": iso_time(now - 0.3),
        "info": {"firmware": "1.0.0", "id": dev, "boot": 1, "type": "fetal_heart",
                 "resend_buffer_bytes": 22528},
        "rate_errors": {},
        "stats": {"frames": int(now - START) * 9, "malformed": 0, "wrong_device": 0,
                  "duplicates": 0, "gaps_seen": 2, "gaps_filled": 2, "lost_samples": 0,
                  "lost_records": 0, "connects": 1, "resend_requests": 2, "auth_failed": 0,
                  "replayed": 0, "unsigned": 0},
        "t": iso_time(now), "signal_quality": round(quality, 2), "alerts": [],
    }  # fmt: skip


class Monitor:
    """One fetal monitor's published messages, second by second."""

    def __init__(self, n: int, rng: random.Random, ctg: dict[str, Any]) -> None:
        self.dev = f"fh-{n:02d}"
        self.rng = rng
        self.ctg = ctg
        self.fhr = 140.0
        self.mhr = 80.0
        self.phase = rng.randrange(7200)  # alerts at different times on each monitor

    def second(self, k: int, now: float) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        dev, rng, seq = self.dev, self.rng, 4 * k
        t_start = iso_time(now - 2.5)  # points are published about 2.5 s after their time
        fhr: list[float | None] = []
        for _ in range(4):
            self.fhr = min(170.0, max(110.0, self.fhr + rng.gauss(0, 0.6)))
            fhr.append(None if rng.random() < 0.06 else round(self.fhr, 1))
        quality = [round(rng.uniform(0.4, 0.95), 2) if v is not None else 0.0 for v in fhr]
        yield ("device", dev, "fhr"), {
            "msg_id": f"{dev}:1:fhr:{seq}", "device_id": dev, "boot": 1, "seq": seq, "count": 4,
            "interval_s": POINT_S, "t_start": t_start, "t_device_ms": 1000 * k + 731,
            "fhr_bpm": fhr, "quality": quality, "maternal": [False, False, False, False],
        }  # fmt: skip
        mhr = []
        for _ in range(4):
            self.mhr = min(110.0, max(60.0, self.mhr + rng.gauss(0, 0.3)))
            mhr.append(round(self.mhr, 1))
        yield ("device", dev, "mhr"), {
            "msg_id": f"{dev}:1:mhr:{seq}", "device_id": dev, "boot": 1, "seq": seq, "count": 4,
            "interval_s": POINT_S, "t_start": t_start, "t_device_ms": 1000 * k + 731,
            "mhr_bpm": mhr,
        }  # fmt: skip
        if k % 5 == 0:
            yield ("device", dev, "status"), status(dev, now, sum(quality) / 4)
        if k % 60 == 59:
            yield ("device", dev, "ctg"), {"msg_id": f"{dev}:1:ctg:{seq + 3}", "device_id": dev,
                                           "boot": 1, "seq": k // 60, "t": iso_time(now),
                                           **self.ctg}  # fmt: skip
        cycle = (k + self.phase) % 7200
        if cycle in (0, 300):  # signal loss for 5 minutes every 2 hours
            raised = now if cycle == 0 else now - 300
            state = "raised" if cycle == 0 else "cleared"
            yield ("device", dev, "alert"), {
                "msg_id": f"{dev}:alert:signal_loss:{int(raised * 1000)}:{state}",
                "device_id": dev, "alert": "signal_loss", "state": state, "severity": "medium",
                "seq": k, "detail": "no fetal heart rate for 70% of the last minute",
                "t": iso_time(now), "raised_at": iso_time(raised),
            }  # fmt: skip


def outbox_writes(monitors: list[Monitor], minutes: float, work: Path) -> float:
    """For comparison, KiB/s written by the outbox for the same messages: the real publisher's
    store (one transaction each), every row acknowledged within the second as a connected
    broker does, the WAL synced every 5 s as the sender does (gateway/publish/mqtt.py)."""
    outbox = Outbox(work / "outbox.sqlite", 512 * MiB, 72 * 3600,
                    recent_points=TRACE_POINTS_PER_OBSERVATION)  # fmt: skip
    publisher = Publisher(config_from_dict({}).mqtt, "gw-bench", outbox)
    seconds = int(minutes * 60)
    wrote0 = written_bytes()
    for k in range(seconds):
        for m in monitors:
            for parts, payload in m.second(k, START + k):
                publisher.publish(parts, payload)
        outbox.ack([row.id for row in outbox.pending(0, 10_000)])
        if k % 5 == 4:
            outbox.checkpoint()
    kib = (written_bytes() - wrote0) / 1024
    outbox.close()
    return kib / seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=26.0, help="simulated hours (24 h kept)")
    ap.add_argument("--monitors", type=int, default=7)
    ap.add_argument("--keep-h", type=float, default=24.0, help="[gateway] history_h")
    ap.add_argument("--warmup-h", type=float, default=2.0)
    ap.add_argument("--max-heap-growth-mb", type=float, default=2.0)
    ap.add_argument("--max-rss-growth-mb", type=float, default=16.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--outbox-minutes", type=float, default=10.0,
                    help="simulated minutes through the outbox, to compare (0: none)")  # fmt: skip
    ap.add_argument("--json", action="store_true", help="print the hourly samples as JSON")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    clock = Clock()
    history = History(work, keep_s=args.keep_h * 3600, clock=clock)
    ctg = ctg_template()
    monitors = [Monitor(i + 1, random.Random(args.seed * 100 + i), ctg)
                for i in range(args.monitors)]  # fmt: skip
    tracemalloc.start()
    samples: list[dict[str, float]] = []
    wrote0, cpu0, messages, record_s = written_bytes(), time.process_time(), 0, 0.0
    seconds = int(args.hours * 3600)
    for k in range(seconds):
        clock.now = START + k
        for m in monitors:
            for parts, payload in m.second(k, clock.now):
                t0 = time.perf_counter()
                history.record(parts, payload)
                record_s += time.perf_counter() - t0
                messages += 1
        if k % 3600 == 3599 or k == seconds - 1:
            gc.collect()
            heap, _ = tracemalloc.get_traced_memory()
            samples.append({
                "hour": (k + 1) / 3600, "file_mib": history.store.file_bytes() / MiB,
                "written_mib": (written_bytes() - wrote0) / MiB, "heap_mib": heap / MiB,
                "rss_mib": rss_mib(), "messages": messages,
            })  # fmt: skip
            s = samples[-1]
            print(f"{s['hour']:5.1f} h  file {s['file_mib']:7.1f} MiB  written "
                  f"{s['written_mib']:8.1f} MiB  heap {s['heap_mib']:6.2f} MiB  rss "
                  f"{s['rss_mib']:6.1f} MiB", flush=True)  # fmt: skip
    cpu = time.process_time() - cpu0
    tracemalloc.stop()

    # what a nurse's page and a restart ask of it, on a full day
    t0 = time.perf_counter()
    live = history.window("fh-01", clock.now - 45 * 60, clock.now)
    window_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    history.window("fh-01", clock.now - 23 * 3600, clock.now - 23 * 3600 + 1800)
    old_window_ms = (time.perf_counter() - t0) * 1000
    history.close()
    t0 = time.perf_counter()
    again = History(work, keep_s=args.keep_h * 3600, clock=clock)
    open_ms = (time.perf_counter() - t0) * 1000
    again.close()

    full = [s for s in samples if s["hour"] >= args.keep_h]
    steady = full[0] if full else samples[-1]
    sim_s = steady["hour"] * 3600
    one = Monitor(1, random.Random(args.seed), ctg)  # a monitor's JSON over two hours
    raw = {"all": 0.0, "kept": 0.0}  # every message; those kept as they come (not statuses)
    for k in range(7200):
        for parts, p in one.second(k, START + k):
            n = len(json.dumps(p, separators=(",", ":"))) / 7200 / 1024
            raw["all"] += n
            raw["kept"] += n if parts[-1] != "status" else 0.0
    report = {
        "simulated_h": args.hours, "monitors": args.monitors, "keep_h": args.keep_h,
        "messages": messages,
        "file_mib_at_keep_h": steady["file_mib"], "file_mib_end": samples[-1]["file_mib"],
        "mib_per_monitor_day": steady["file_mib"] / args.monitors * 24 * 3600 / sim_s,
        "written_kib_per_s": steady["written_mib"] * 1024 / sim_s,
        "compressed_kib_per_s": history.store.bytes_written / 1024 / (seconds or 1),
        "json_kib_per_s_per_monitor": raw["all"],
        "kept_json_mib_per_day": raw["kept"] * args.monitors * 86400 / 1024,
        "writes_per_h": history.writes / args.hours,
        "write_ms_mean": history.write_s / max(1, history.writes) * 1000,
        "record_us_mean": record_s / messages * 1e6,
        "cpu_s": cpu, "live_window_ms": window_ms, "old_window_ms": old_window_ms,
        "live_window_fhr_messages": len(live["fhr"]), "reopen_ms": open_ms,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip
    if args.outbox_minutes > 0:
        fresh = [Monitor(i + 1, random.Random(args.seed * 100 + i), ctg)
                 for i in range(args.monitors)]  # fmt: skip
        report["outbox_written_kib_per_s"] = outbox_writes(fresh, args.outbox_minutes, work)
    if args.json:
        print(json.dumps({"samples": samples, **report}, indent=1))
    else:
        for k, v in report.items():
            print(f"{k}: {round(v, 2) if isinstance(v, float) else v}")

    after = [s for s in samples if s["hour"] > args.warmup_h]
    base = next((s for s in samples if s["hour"] >= args.warmup_h), samples[0])
    heap_growth = max(s["heap_mib"] for s in after) - base["heap_mib"] if after else 0.0
    rss_growth = max(s["rss_mib"] for s in after) - base["rss_mib"] if after else 0.0
    print(f"after {args.warmup_h:g} h: heap grew at most {heap_growth:.2f} MiB, RSS "
          f"{rss_growth:.1f} MiB")  # fmt: skip
    ok = heap_growth <= args.max_heap_growth_mb and rss_growth <= args.max_rss_growth_mb
    if not ok:
        print("FAIL: memory is not flat", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
