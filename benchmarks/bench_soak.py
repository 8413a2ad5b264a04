"""Soak: a simulated night of 7 devices through the outbox to a real Mosquitto, time-accelerated,
with random faults (broker SIGKILL and restart, gateway crash and restart from its outbox).

Every simulated second each fetal monitor produces the messages the gateway publishes for it
(FHR and MHR trace, 4 points each; device status every 5 s; CTG every minute) and each jaundice
meter a reading every 10 minutes; the publisher is the real one (gateway/publish/mqtt.py with
gateway/publish/outbox.py). A subscriber with a persistent session checks, after de-duplication by
msg_id, that every message arrived exactly once and in order per device.

    .venv/bin/python benchmarks/bench_soak.py --hours 24 --devices 7 --faults 12
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.broker import start_broker  # noqa: E402
from gateway.config import config_from_dict  # noqa: E402
from gateway.publish.mqtt import Publisher  # noqa: E402
from gateway.publish.outbox import Outbox  # noqa: E402

BROKER_CONF = (
    "user root\npersistence true\npersistence_location {dir}/\nautosave_interval 1\n"
    "autosave_on_changes true\nmax_queued_messages 0\nmax_queued_bytes 0\n"
)


class Hospital:
    def __init__(self, port: int) -> None:
        self.first: dict[str, tuple[str, int]] = {}
        self.dups = 0
        self.out_of_order = 0
        self.last: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak", protocol=mqtt.MQTTv5)
        c.on_connect = lambda cl, u, f, rc, pr: cl.subscribe("perimon/#", qos=1)
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, clean_start=False, properties=props)
        c.loop_start()
        ready.wait(10)
        self.client = c

    def _on_message(self, client, userdata, m) -> None:
        msg = json.loads(m.payload)
        mid = msg.get("msg_id")
        if mid is None:
            return
        with self.lock:
            if mid in self.first:
                self.dups += 1
                return
            self.first[mid] = (m.topic, msg.get("seq", 0))
            key = (msg["device_id"], m.topic.rsplit("/", 1)[1])
            seq = msg.get("seq", 0)
            if seq < self.last.get(key, -1):
                self.out_of_order += 1
            self.last[key] = seq


def messages_for_second(t: int, n_devices: int):
    """(parts, payload) the gateway publishes for simulated second t."""
    n_fetal = max(1, n_devices - n_devices // 3)
    for d in range(n_devices):
        dev = f"fh-{d + 1:02d}" if d < n_fetal else f"tcb-{d + 1:02d}"
        if d < n_fetal:
            for kind in ("fhr", "mhr"):
                seq = 1 + 4 * t
                yield ("device", dev, kind), {
                    "msg_id": f"{dev}:1:{kind}:{seq}", "device_id": dev, "boot": 1, "seq": seq,
                    "count": 4, "interval_s": 0.25, "t_device_ms": t * 1000,
                    f"{kind}_bpm": [140.1, 140.4, None, 141.0], "quality": [0.9, 0.9, 0.0, 0.8],
                }  # fmt: skip
            if t % 60 == 59:
                yield ("device", dev, "ctg"), {"msg_id": f"{dev}:1:ctg:{4 * t}", "device_id": dev,
                                               "seq": t, "baseline_bpm": 140, "figo_class": "normal"}  # fmt: skip
        elif t % 600 == 0:
            yield ("device", dev, "tcb"), {"msg_id": f"{dev}:1:tcb:{t // 600}", "device_id": dev,
                                           "seq": t // 600, "tcb_mg_dl": 11.2, "flag": ""}  # fmt: skip
        if t % 5 == 0:
            yield ("device", dev, "status"), {"device_id": dev, "link": "connected", "t": t}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--devices", type=int, default=7)
    ap.add_argument("--faults", type=int, default=12, help="random faults over the night")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    seconds = int(args.hours * 3600)
    fault_at = sorted(rng.sample(range(60, seconds - 60), args.faults))
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    bdir = work / "broker"
    broker = start_broker(bdir, extra_conf=BROKER_CONF.format(dir=bdir))
    brokers = [broker]
    hospital = Hospital(broker.port)
    time.sleep(1.2)
    cfg = config_from_dict({"mqtt": {"port": broker.port}})
    path = work / "outbox.sqlite"

    def new_publisher() -> Publisher:
        pub = Publisher(cfg.mqtt, "gw-soak", Outbox(path, 512 * 1024 * 1024, 72 * 3600))
        pub.client.reconnect_delay_set(0.2, 1)
        pub.start()
        return pub

    pub = new_publisher()
    expected = 0
    peak_disk = 0
    faults = {"broker_kill": 0, "gateway_crash": 0}
    t0 = time.monotonic()
    for t in range(seconds):
        for parts, payload in messages_for_second(t, args.devices):
            pub.publish(parts, payload)
            expected += "msg_id" in payload
        broker = brokers[-1]
        if fault_at and t == fault_at[0]:
            fault_at.pop(0)
            if rng.random() < 0.5:
                broker.kill()
                faults["broker_kill"] += 1
                down_s = rng.uniform(0.5, 3.0)  # the night goes on (publishing) while it is down

                def restart(port=broker.port):
                    brokers.append(start_broker(bdir, port, BROKER_CONF.format(dir=bdir)))

                threading.Timer(down_s, restart).start()
            else:
                # crash: paho's in-memory queue and the sender are gone; the outbox is not
                pub._stopping = True
                pub.client.loop_stop()
                pub.client.socket() and pub.client.socket().close()
                pub.outbox.close()
                faults["gateway_crash"] += 1
                pub = new_publisher()
        if t % 600 == 0:
            peak_disk = max(peak_disk, pub.outbox.file_bytes())
            while pub.outbox.rows > 20_000:  # the broker keeps up on average; let it catch up
                time.sleep(0.05)
    drained = pub.drain(600)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(hospital.first) < expected:
        time.sleep(0.2)
    wall = time.monotonic() - t0
    stats = pub.outbox.stats()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pub.stop()
    brokers[-1].stop()
    delivered = len(hospital.first)
    lost = expected - delivered
    result = {
        "simulated_hours": args.hours,
        "devices": args.devices,
        "faults": faults,
        "messages_expected": expected,
        "delivered_once": delivered,
        "lost": lost,
        "duplicates_before_dedup": hospital.dups,
        "out_of_order": hospital.out_of_order,
        "outbox_dropped": stats,
        "drained": drained,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "peak_outbox_disk_mb": round(peak_disk / 1e6, 2),
        "outbox_write_ms_per_msg": round(pub.outbox.write_s / max(1, pub.outbox.added) * 1e3, 3),
        "wall_s": round(wall, 1),
    }
    print(json.dumps(result, indent=1))
    return 0 if lost == 0 and hospital.out_of_order == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
