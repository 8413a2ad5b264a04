"""Ingest throughput: messages per second through one local Mosquitto into SQLite with N
`perimon-ingest` worker processes on one shared subscription.

    .venv/bin/python benchmarks/bench_ingest.py [--messages 20000] [--workers 2]

One publisher sends valid FHIR TcB Observations (QoS 1) as fast as the broker takes them; the
clock stops when the database holds every one. Prints one line per run (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parents[1]
WINDOW = 500
sys.path.insert(0, str(REPO))

from devtools.broker import start_broker  # noqa: E402
from gateway.processing.fhir import tcb_observations  # noqa: E402


def reading(i: int) -> dict:
    return {"msg_id": f"tcb-{i % 50:02d}:1:tcb:{i}", "device_id": f"tcb-{i % 50:02d}",
            "t": "2026-11-23T10:00:00.000Z", "tcb_mg_dl": 10.0 + (i % 7) / 10,
            "tcb_umol_l": 171.0, "ci_low_mg_dl": 9.0, "ci_high_mg_dl": 11.5, "flag": ""}  # fmt: skip


def count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=10) as c:
            return c.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def run(n: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="perimon-bench-") as tmp:
        tmp = Path(tmp)
        broker = start_broker(tmp / "broker")
        db = tmp / "ingest.sqlite"
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hospital.cli",
                    "--host",
                    broker.host,
                    "--port",
                    str(broker.port),
                    "--db",
                    str(db),
                    "--worker",
                    f"bench-{k}",
                    "--seconds",
                    "600",
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for k in range(workers)
        ]
        time.sleep(2.0)  # workers connected and subscribed
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(1000)
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        bodies = []
        for i in range(n // 2 + n % 2):
            for obs in tcb_observations("gw-bench", reading(i)):
                dev = obs["device"]["identifier"]["value"]
                bodies.append((f"perimon/v1/gw-bench/device/{dev}/observation", json.dumps(obs)))
        bodies = bodies[:n]
        # Mosquitto queues at most 1000 messages per subscriber by default and drops the rest:
        # keep at most WINDOW messages ahead of the database, to measure the sustained rate.
        t0 = time.perf_counter()
        sent = 0
        while sent < n:
            if sent - count(db) < WINDOW:
                for topic, body in bodies[sent : sent + 100]:
                    pub.publish(topic, body, 1)
                sent = min(n, sent + 100)
            else:
                time.sleep(0.01)
        t_pub = time.perf_counter() - t0
        deadline = time.monotonic() + 120
        while count(db) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        t_all = time.perf_counter() - t0
        stored = count(db)
        with sqlite3.connect(db) as c:
            per = dict(c.execute("SELECT worker, COUNT(*) FROM readings GROUP BY worker"))
        pub.disconnect()
        pub.loop_stop()
        for p in procs:
            p.terminate()
            p.wait(10)
        broker.stop()
        return {"messages": n, "workers": workers, "stored": stored, "publish_s": t_pub,
                "total_s": t_all, "per_worker": per, "bytes": len(bodies[0][1])}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    for w in args.workers:
        r = run(args.messages, w)
        print(f"workers {w}: {r['stored']}/{r['messages']} stored in {r['total_s']:.1f} s "
              f"= {r['stored'] / r['total_s']:.0f} msg/s end to end, at most "
              f"{WINDOW} ahead of the database; "
              f"{r['bytes']} B each; per worker {r['per_worker']}")  # fmt: skip


if __name__ == "__main__":
    main()
