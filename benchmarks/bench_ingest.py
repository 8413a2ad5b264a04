"""Ingest throughput: readings per second stored by 1, 2 and 4 `perimon-ingest` worker
processes on one MQTT 5 shared subscription, into PostgreSQL and into SQLite.

    .venv/bin/python benchmarks/bench_ingest.py [--messages 40000] [--workers 1 2 4]
                                                [--db postgresql sqlite] [--receipts on off]

Each run: one local Mosquitto (deploy/mosquitto/mosquitto.conf's persistence and queue
settings: no per-client limit), a fresh database (PostgreSQL: a throw-away cluster with the
server's default durability, fsync and synchronous_commit on, on this machine's disk; SQLite: a
file in WAL mode with synchronous FULL, as the ingest opens it), and N worker processes. The workers subscribe, are then stopped
(SIGSTOP: connected, receiving nothing), 50 simulated gateways flush their outboxes into the
broker (TcB readings, their FHIR Observations and alerts: tests/harness/region.py), and the
workers are resumed. The clock runs from the resume to the last commit (the newest
`received_at` in the database): the rate at which the workers drain a backlog, which is what a
region reconnecting after an outage asks of them (docs/scaling.md), without the publishers'
own CPU in the way. Every message must be stored exactly once, with no sequence gap.

With receipts on (the ingest's default), a subscriber to `perimon/v1/+/receipt`, standing for
the gateways, counts the receipts the workers send after each commit (docs/mqtt.md,
"Receipts"): their bytes per message stored, the extra traffic they cost.

Prints one line per run and, at the end, the table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.broker import start_broker  # noqa: E402
from devtools.process import cpu_seconds  # noqa: E402
from hospital.store import Store  # noqa: E402
from tests.harness.postgres import start_postgres  # noqa: E402
from tests.harness.region import Gateways, IngestProcess, broker_conf, keys, region  # noqa: E402
from tests.harness.wait import eventually  # noqa: E402

GATEWAYS = 50


def db_bytes(store: Store, url: str) -> int:
    """What the stored rows take on disk: tables and indexes (PostgreSQL) or the file (SQLite,
    after a checkpoint of its WAL)."""
    if store.dialect == "postgresql":
        ((n,),) = store.query("SELECT SUM(pg_total_relation_size(c)) FROM unnest(ARRAY["
                              "'readings', 'alerts', 'sequences']::regclass[]) AS c")  # fmt: skip
        return int(n)
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    return Path(url).stat().st_size


class ReceiptCounter:
    """Subscribed to every gateway's receipt topic, as the gateways are: receipts, the
    identifiers they name, their payload bytes and their bytes on the wire (MQTT 5 PUBLISH at
    QoS 1: fixed header, topic, packet id, an empty property length, the payload)."""

    def __init__(self, host: str, port: int) -> None:
        self.receipts = self.ids = self.payload_bytes = self.wire_bytes = 0
        self.lock = threading.Lock()
        ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.connect(host, port)
        self.c.loop_start()
        self.c.subscribe("perimon/v1/+/receipt", 1)
        assert ready.wait(10), "no SUBACK for the receipts"

    def _on_message(self, client, userdata, m) -> None:
        body = bytes(m.payload)
        remaining = 2 + len(m.topic) + 2 + 1 + len(body)
        with self.lock:
            self.receipts += 1
            self.ids += len(json.loads(body)["stored"])
            self.payload_bytes += len(body)
            self.wire_bytes += 1 + (1 if remaining < 128 else 2 if remaining < 16384 else 3)
            self.wire_bytes += remaining

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def run(n: int, workers: int, engine: str, pg, tmp: Path, persistence: bool,
        receipts: bool = True) -> dict:  # fmt: skip
    work = tmp / f"broker-{engine}-{workers}-{persistence}-{receipts}"
    conf = broker_conf(work) if persistence else "max_queued_messages 0\nmax_queued_bytes 0\n"
    broker = start_broker(work, extra_conf=conf)
    if engine == "postgresql":
        url = pg.create_database(f"bench_{workers}_{int(persistence)}_{int(receipts)}")
    else:
        url = str(tmp / f"ingest-{workers}-{persistence}-{receipts}.sqlite")
    Store(url).close()  # the tables, before the workers race to make them
    flags = ("--no-ack",) if receipts else ("--no-ack", "--no-receipts")
    procs = [IngestProcess(f"bench-{k}", broker.host, broker.port, url, *flags)
             for k in range(workers)]  # fmt: skip
    gws = Gateways(broker.host, broker.port)
    counter = ReceiptCounter(broker.host, broker.port)
    try:
        for w in procs:
            w.subscribed()
        for w in procs:
            w.pause()
        outboxes = region(GATEWAYS, n // GATEWAYS)
        total = sum(len(m) for m in outboxes.values())
        gws.connect(outboxes)
        gws.publish(outboxes)
        eventually(lambda: gws.acked() == total, 120, lambda: f"broker acked {gws.acked()}")
        gws.close()
        cpu0 = [cpu_seconds(w.proc.pid) for w in procs]
        broker_cpu0 = cpu_seconds(broker.proc.pid)
        t0 = time.time()
        for w in procs:
            w.resume()
        store = Store(url)
        stored = lambda: store.count("readings") + store.count("alerts")  # noqa: E731
        eventually(lambda: stored() >= total, 600, lambda: f"stored {stored()} of {total}")
        ((t1,),) = store.query("SELECT MAX(received_at) FROM (SELECT received_at FROM readings "
                               "UNION ALL SELECT received_at FROM alerts) AS r")  # fmt: skip
        cpu = [cpu_seconds(w.proc.pid) - c for w, c in zip(procs, cpu0, strict=True)]
        broker_cpu = cpu_seconds(broker.proc.pid) - broker_cpu0
        ids = sorted(store.ids("readings") + store.ids("alerts"))
        assert ids == keys(outboxes), "stored messages differ from those sent"
        gaps = store.gaps()
        assert gaps == [], gaps[:5]
        per = dict(store.query("SELECT worker, COUNT(*) FROM readings GROUP BY worker"))
        size = db_bytes(store, url)
        store.close()
        if receipts:  # every stored message named once (no duplicates were sent)
            eventually(lambda: counter.ids >= total, 30, lambda: f"receipts named {counter.ids}")
    finally:
        for w in procs:
            w.stop()
        gws.close()
        counter.close()
        broker.stop()
    return {"engine": engine, "workers": workers, "messages": total, "seconds": t1 - t0,
            "cpu_s": cpu, "broker_cpu_s": broker_cpu, "per_worker": per,
            "bytes": size, "persistence": persistence, "receipts": receipts,
            "receipt_count": counter.receipts, "receipt_ids": counter.ids,
            "receipt_payload": counter.payload_bytes, "receipt_wire": counter.wire_bytes}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=40000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--db", nargs="+", default=["postgresql", "sqlite"],
                    choices=["postgresql", "sqlite"])  # fmt: skip
    ap.add_argument("--broker-persistence", choices=["deployed", "off"], nargs="+",
                    default=["deployed"],
                    help="the broker as deploy/mosquitto/mosquitto.conf keeps its queues "
                         "(saved every ~2 s), or in memory only")  # fmt: skip
    ap.add_argument("--receipts", choices=["on", "off"], nargs="+", default=["on"],
                    help="the workers send receipts after each commit (their default), or not")  # fmt: skip
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="perimon-bench-ingest-") as tmp:
        pg = start_postgres(durable=True) if "postgresql" in args.db else None
        try:
            for persistence in args.broker_persistence:
                for engine in args.db:
                    for k in args.workers:
                        for receipts in args.receipts:
                            r = run(args.messages, k, engine, pg, Path(tmp),
                                    persistence == "deployed", receipts == "on")  # fmt: skip
                            results.append(r)
                            print(line(r), flush=True)
        finally:
            if pg is not None:
                pg.stop()
    print(f"\nload average at the end: {os.getloadavg()}")
    print(
        "\n| broker saves | database | receipts | workers | readings | time | readings/s "
        "| per worker | vs 1 worker | per worker CPU-second | broker CPU "
        "| bytes on disk per reading |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in results:
        rate = r["messages"] / r["seconds"]
        base = next(x for x in results if (x["engine"], x["persistence"], x["receipts"]) ==
                    (r["engine"], r["persistence"], r["receipts"]))  # fmt: skip
        ratio = rate / (base["messages"] / base["seconds"])
        print(f"| {'every ~2 s' if r['persistence'] else 'off'} | {r['engine']} | "
              f"{'on' if r['receipts'] else 'off'} | "
              f"{r['workers']} | {r['messages']} | {r['seconds']:.2f} s | {rate:.0f} | "
              f"{rate / r['workers']:.0f} | {ratio:.2f}x | "
              f"{r['messages'] / sum(r['cpu_s']):.0f} | {r['broker_cpu_s']:.1f} s | "
              f"{r['bytes'] / r['messages']:.0f} |")  # fmt: skip


def line(r: dict) -> str:
    rate = r["messages"] / r["seconds"]
    k = r["workers"]
    saves = "broker saving" if r["persistence"] else "broker in memory"
    return (f"{saves}, {r['engine']}, {k} workers: {r['messages']} stored once each, no gap, in "
            f"{r['seconds']:.2f} s = {rate:.0f} readings/s ({rate / k:.0f} per worker); worker "
            f"CPU {sum(r['cpu_s']):.1f} s ({r['messages'] / sum(r['cpu_s']):.0f} readings per "
            f"CPU-second), broker CPU {r['broker_cpu_s']:.1f} s; {r['bytes'] / r['messages']:.0f} "
            f"bytes on disk a reading; per worker {sorted(r['per_worker'].values())}"
            + receipt_line(r))  # fmt: skip


def receipt_line(r: dict) -> str:
    if not r["receipts"]:
        return "; receipts off"
    n = r["messages"]
    return (f"; {r['receipt_count']} receipts naming {r['receipt_ids']} messages: "
            f"{r['receipt_payload'] / n:.1f} payload bytes ({r['receipt_wire'] / n:.1f} on the "
            f"wire) a message stored, {r['receipt_ids'] / max(1, r['receipt_count']):.0f} "
            "messages a receipt")  # fmt: skip


if __name__ == "__main__":
    main()
