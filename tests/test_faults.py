"""Fault injection on the whole chain: real firmware under the MicroPython Unix port, the
gateway, a real Mosquitto killed with SIGKILL and restarted, radio links dropped, the gateway
itself killed with SIGKILL and restarted, a device clock that jumps, an outbox at its size
limit. The hospital side checks, after de-duplication by msg_id, that every trace point and
every jaundice reading arrived exactly once and in order per device."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from devtools.broker import free_port
from dsp.fhr import FhrStream
from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.publish.mqtt import Publisher
from gateway.publish.outbox import Outbox
from simulators.fleet import CH_DOPPLER, CH_PPG, DeviceSpec, Fleet
from tests.harness.chain import (
    FIRST_POINT_AT_MOST,
    gateway_config,
    newborn,
    running_fleet,
    running_gateway,
)
from tests.harness.mqtt import Subscriber, start_mosquitto, subscribed_and_saved
from tests.harness.paths import REPO
from tests.harness.wait import eventually, eventually_async

pytestmark = pytest.mark.system


def hospital_of(broker) -> Subscriber:
    """The hospital: a subscriber with a persistent session, so that what it misses while
    reconnecting waits in the broker for it. Keeps every message in arrival order."""
    return Subscriber(broker.host, broker.port, gateway="gw-f", client_id="hospital",
                      persistent=True)  # fmt: skip


def shut_down(hospital: Subscriber) -> bool:
    """The gateway's last word: its offline status after a clean shutdown (after its outbox)."""
    return any(p.get("reason") == "shutdown" for p in hospital.on("status"))


def dedup(msgs: list[dict]) -> tuple[list[dict], int]:
    """First copy of each msg_id in arrival order, and the number of redeliveries. A redelivery
    must be the same message: the same id never names two different readings."""
    first: dict[str, dict] = {}
    dups = 0
    for m in msgs:
        if m["msg_id"] in first:
            assert first[m["msg_id"]] == m, f"two different messages share {m['msg_id']}"
            dups += 1
        else:
            first[m["msg_id"]] = m
    return list(first.values()), dups


def assert_trace_complete(msgs: list[dict]) -> int:
    """Points 1, 2, 3, ... of one boot (from the first the gateway received), each exactly
    once and in order; returns the count."""
    assert msgs, "no trace"
    assert msgs[0]["seq"] <= FIRST_POINT_AT_MOST, msgs[0]["seq"]
    for a, b in zip(msgs, msgs[1:], strict=False):
        assert b["boot"] == a["boot"]
        assert b["seq"] == a["seq"] + a["count"], ("gap or overlap", a["seq"], a["count"], b["seq"])
    return sum(m["count"] for m in msgs)


def assert_records_complete(msgs: list[dict]) -> None:
    """Every measurement once and in order. `seq` is the frame number of a measurement's last
    frame (docs/mqtt.md): it advances by 1 at a full MTU, and by the same larger step for each
    measurement built while a new link still has the 23-byte MTU. The device's own clock shows
    no press missing between two readings."""
    seqs = [m["seq"] for m in msgs]
    steps = [b - a for a, b in zip(seqs, seqs[1:], strict=False)]
    assert all(s > 0 for s in steps), seqs
    assert len(set(steps) - {1}) <= 1, seqs  # one split size: the 23-byte MTU's
    times_s = [m["t_device_ms"] / 1000 for m in msgs]
    gaps_s = np.diff(times_s)
    assert gaps_s.max(initial=0.0) < 1.5 * PRESS_EVERY_S, np.round(gaps_s, 2).tolist()


def faults_config(tmp_path: Path, broker_port: int, radio: str, **outbox) -> dict:
    return gateway_config(
        tmp_path, "gw-f", mqtt={"host": "127.0.0.1", "port": broker_port}, radio=radio,
        processing={"status_interval_s": 1.0}, outbox=outbox, devices=newborn(),
    )  # fmt: skip


PRESS_EVERY_S = 3.0
SPECS = [
    DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0),
    DeviceSpec("tcb-01", "jaundice", seed=5, skin_group="medium", press_every_s=PRESS_EVERY_S),
]


def check_delivery(hospital: Subscriber) -> dict:
    out = {}
    for kind in ("fhr", "mhr"):
        msgs, dups = dedup(hospital.of("fh-01", kind))
        out[kind] = (assert_trace_complete(msgs), dups)
    tcb, dups = dedup(hospital.of("tcb-01", "tcb"))
    assert len(tcb) >= 3
    assert_records_complete(tcb)
    out["tcb"] = (len(tcb), dups)
    return out


def test_broker_kill9_link_drops_and_clock_jump_lose_nothing(tmp_path):
    bdir = tmp_path / "broker"
    broker = start_mosquitto(bdir, persistent=True)
    hospital = subscribed_and_saved(broker, bdir, gateway="gw-f", client_id="hospital")
    radio = f"127.0.0.1:{free_port()}"
    cfg = config_from_dict(faults_config(tmp_path, broker.port, radio))

    async def main() -> Gateway:
        nonlocal broker
        gw = Gateway(cfg)
        gw.publisher.client.reconnect_delay_set(0.2, 1)
        fleet = Fleet(SPECS, radio, tmp_path / "devices", gateway=cfg)
        async with running_gateway(gw), running_fleet(fleet):
            # the fault schedule: its sleeps are streaming time and the broker's outages
            for k in range(4):
                await asyncio.sleep(4)
                broker.kill()  # SIGKILL mid-stream
                await asyncio.sleep(0.5 + k * 0.5)
                broker = await asyncio.to_thread(
                    start_mosquitto, bdir, broker.port, True
                )  # same port, same saved sessions
                if k % 2 == 0:
                    for link in list(gw.transport._links):
                        await link.close()  # the radio drops as well
                if k == 1:
                    s = gw.sessions["fh-01"]
                    s.clock_offset_ms = (s.clock_offset_ms or 0) + 3_600_000  # device clock jump
            await asyncio.sleep(8)
            assert fleet.alive() == [s.device_id for s in SPECS], "a firmware process died"
        return gw

    gw = asyncio.run(main())
    try:
        eventually(lambda: shut_down(hospital), 10, "the gateway's shutdown status never came")
        result = check_delivery(hospital)
    finally:
        hospital.close()
        broker.stop()
    stats = gw.sessions["fh-01"].state.stats
    assert stats.connects >= 3 and stats.lost_samples == 0, stats
    assert result["fhr"][0] >= 4 * 20, result  # at least 20 s of trace in about 30 s
    assert Outbox(cfg.outbox_path, cfg.outbox.max_bytes, 0).rows == 0  # all acknowledged


def process_config(tmp_path: Path, broker):
    """For a gateway run as its own process: (its radio address, its Config, the TOML file the
    process reads, the log it writes)."""
    radio = f"127.0.0.1:{free_port()}"
    raw = faults_config(tmp_path, broker.port, radio)
    cfg_path = tmp_path / "gw.toml"
    cfg_path.write_text(_toml(raw))
    return radio, config_from_dict(raw), cfg_path, tmp_path / "gateway.log"


def _start_gateway(cfg_path: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "gateway", "-c", str(cfg_path), "-v"],
            cwd=REPO, env=env, stdout=out, stderr=out,
        )  # fmt: skip


def _toml(d: dict) -> str:
    lines = []
    for section, values in d.items():
        if section == "devices":
            for dev, kv in values.items():
                lines.append(f"[devices.{dev}]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in kv.items()]
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def test_gateway_kill9_and_restart_resumes_from_the_outbox(broker, tmp_path):
    hospital = hospital_of(broker)
    radio, cfg, cfg_path, log = process_config(tmp_path, broker)
    procs: list[subprocess.Popen] = []

    async def main() -> None:
        procs.append(_start_gateway(cfg_path, log))
        fleet = Fleet(SPECS, radio, tmp_path / "devices", gateway=cfg)
        try:
            async with running_fleet(fleet):
                await asyncio.sleep(14)  # streaming time before the power cut
                assert hospital.of("fh-01", "fhr"), "no trace before the kill"
                procs[0].send_signal(signal.SIGKILL)  # power cut of the gateway process
                procs[0].wait()
                procs.append(_start_gateway(cfg_path, log))
                await asyncio.sleep(16)  # and after it
                assert fleet.alive() == [s.device_id for s in SPECS], "a firmware process died"
        finally:
            procs[-1].send_signal(signal.SIGTERM)
            await asyncio.to_thread(procs[-1].wait, 15)

    try:
        asyncio.run(main())
        eventually(lambda: shut_down(hospital), 10, "the gateway's shutdown status never came")
        result = check_delivery(hospital)
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
        hospital.close()
    assert "resumes after" in log.read_text(), "the restarted gateway did not resume"
    # The points waiting at the kill (for the audio and her pulse after them, ~5 s) are made
    # from the gateway's own journal: the device's buffer (~6 s in this heap) need only cover
    # the restart. Without the journal this lost 2-4 s of trace on every run.
    assert re.search(r"fhr resumed from sample \d+, [1-9]\d* replayed", log.read_text())
    status = hospital.of("fh-01", "status")[-1]
    # On a heavily loaded machine the resend can fall behind the gap timeout: then the loss is
    # reported (and the trace shows nulls, still contiguous), never hidden. It has stayed under
    # a second of samples.
    assert status["stats"]["lost_samples"] < 4000, status["stats"]
    assert result["fhr"][0] >= 4 * 18, result
    gw_status = hospital.on("status")
    assert gw_status[-1]["state"] == "offline" and gw_status[-1]["reason"] == "shutdown"
    assert any(s["reason"] == "connection lost" for s in gw_status), "no Last Will after kill"


def test_full_outbox_drops_only_counted_trace_and_every_reading_arrives(broker, tmp_path):
    """The broker is unreachable while far more than max_bytes is published: readings and
    alerts all arrive afterwards, and every trace message is either delivered or counted in
    the drop count the gateway publishes."""
    hospital = hospital_of(broker)
    cfg = config_from_dict({"mqtt": {"host": broker.host, "port": broker.port}})
    ob = Outbox(tmp_path / "o.sqlite", 1024 * 1024, 0)
    down = config_from_dict({"mqtt": {"host": "127.0.0.1", "port": 1}})
    pub = Publisher(down.mqtt, "gw-f", ob)
    pub.start()
    point = 1
    n_trace = 0
    for i in range(1500):
        pub.publish(("device", "fh-01", "fhr"), {"msg_id": f"fh-01:1:fhr:{point}", "boot": 1,
                    "seq": point, "count": 4, "fhr_bpm": [140.0] * 4, "pad": "x" * 900})  # fmt: skip
        point += 4
        n_trace += 1
        if i % 10 == 0:
            pub.publish(("device", "tcb-01", "tcb"), {"msg_id": f"tcb-01:1:tcb:{i}", "boot": 1,
                        "seq": i, "tcb_mg_dl": 11.0})  # fmt: skip
            pub.publish(("device", "fh-01", "alert"), {"msg_id": f"fh-01:alert:x:{i}:raised"})
    pub.stop(drain_s=0)
    assert ob.file_bytes() < 4 * 1024 * 1024  # the database file stays near the limit
    pub = Publisher(cfg.mqtt, "gw-f", Outbox(tmp_path / "o.sqlite", 1024 * 1024, 0),
                    status_interval_s=0.5)  # fmt: skip
    pub.start()

    def outbox_status() -> dict | None:
        """The newest count of drops the publisher has published (every 0.5 s)."""
        st = [p["outbox"] for p in hospital.on("status") if "outbox" in p]
        return st[-1] if st else None

    def accounted() -> bool:
        st = outbox_status()
        trace = dedup(hospital.of("fh-01", "fhr"))[0]
        return st is not None and st["dropped_trace"] + len(trace) == n_trace

    try:
        assert pub.drain(60)
        eventually(lambda: len(hospital.of("tcb-01", "tcb")) >= 150, 20, "readings missing")
        eventually(accounted, 10, lambda: f"trace neither delivered nor counted: {outbox_status()}")
    finally:
        pub.stop()
        hospital.close()
    tcb, _ = dedup(hospital.of("tcb-01", "tcb"))
    alerts, _ = dedup(hospital.of("fh-01", "alert"))
    assert len(tcb) == 150 and len(alerts) == 150
    trace, _ = dedup(hospital.of("fh-01", "fhr"))
    status = [p for p in hospital.on("status") if "outbox" in p]
    dropped = status[-1]["outbox"]["dropped_trace"]
    assert dropped > 0 and dropped + len(trace) == n_trace, (dropped, len(trace), n_trace)
    assert status[-1]["outbox"]["dropped_readings"] == 0
    seqs = [m["seq"] for m in trace]  # what survives is the newest part, contiguous
    assert seqs == list(range(seqs[0], point, 4))


_FEED_HZ = {CH_DOPPLER: 4000, CH_PPG: 50}


class FeedTruth:
    """What the simulator fed one virtual device, and when: for each Doppler and PPG block, its
    first sample's index (the device's seq, its ADC reads every sample in order) and the
    monotonic time it went in, with the probe's aim. MicroPython's ticks_ms (the device clock)
    runs on the same CLOCK_MONOTONIC, so a sample's device time is its time on the feeder's
    schedule plus one constant per boot: the check needs no trust in the gateway's stamps."""

    def __init__(self, device) -> None:
        self.blocks: dict[int, list[tuple[int, float, float]]] = {CH_DOPPLER: [], CH_PPG: []}
        self.doppler: list[np.ndarray] = []  # every Doppler sample fed, in order
        self._n = {CH_DOPPLER: 0, CH_PPG: 0}
        write, self._device = device._write, device

        async def recording_write(data: bytes) -> None:
            now, off = time.monotonic(), 0
            while off < len(data):
                ch, n = struct.unpack_from("<BH", data, off)
                if ch in self.blocks:
                    self.blocks[ch].append((self._n[ch], now, self._device.aim))
                    self._n[ch] += n // 2
                if ch == CH_DOPPLER:
                    self.doppler.append(np.frombuffer(data, "<i2", n // 2, off + 3))
                off += 3 + n
            await write(data)

        device._write = recording_write

    def fed_at(self, channel: int, sample: np.ndarray) -> np.ndarray:
        """Monotonic seconds at which the simulated ADC made these samples. The feeder paces
        its blocks on one schedule from its start and catches up when late, so the ADC's
        clock is the earliest origin any block implies: a block written late (this process
        held up under load) says only that its samples were made no later than that."""
        b = np.array(self.blocks[channel])
        rate = _FEED_HZ[channel]
        return np.min(b[:, 1] - b[:, 0] / rate) + sample / rate

    def late_ms(self, channel: int) -> float:
        """How far behind its schedule the feeder wrote its latest block (for the report)."""
        b = np.array(self.blocks[channel])
        behind = b[:, 1] - b[:, 0] / _FEED_HZ[channel]
        return 1000.0 * float(behind.max() - behind.min())

    def reference_valued(self) -> np.ndarray:
        """Which FHR points (by number, from 1) the estimator gives a value for when it gets
        every sample fed, in one piece: the trace as it should be, point for point."""
        est = FhrStream(4000)
        x = np.concatenate(self.doppler).astype(np.float32)
        pts = [est.feed(x), est.flush()]
        t = np.concatenate([q.t_s for q in pts])
        v = np.concatenate([q.fhr_bpm for q in pts])
        out = np.zeros(int(round(t[-1] / 0.25)) + 1, dtype=bool)
        out[np.round(t / 0.25).astype(int)] = ~np.isnan(v)
        return out


def _points(msgs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(point numbers, device ms, valued, lost) of a de-duplicated, contiguous trace."""
    k, t, v, lost = [], [], [], []
    for m in msgs:
        n = m["count"]
        k += range(m["seq"], m["seq"] + n)
        t += [m["t_device_ms"] + 250 * i for i in range(n)]
        v += [x is not None for x in m[key]]
        lost += m.get("lost", [False] * n)
    return np.array(k), np.array(t, dtype=float), np.array(v), np.array(lost)


def _content_lag(k: np.ndarray, valued: np.ndarray, ref: np.ndarray) -> tuple[int, dict]:
    """The shift (in points) at which the published points with and without a value best
    match the reference (the estimator on every sample fed), and the share that then differ:
    where each point's content came from, whatever number it was published under. The probe
    moving on and off the heart gives the pattern its edges."""
    mismatch = {}
    for lag in range(-12, 13):
        j = k + lag
        ok = (j >= 1) & (j < len(ref))
        mismatch[lag] = float(np.mean(valued[ok] != ref[j[ok]]))
    return min(mismatch, key=mismatch.__getitem__), mismatch


def test_gateway_killed_longer_than_the_device_buffer_keeps_every_point_at_device_time(
    broker, tmp_path
):
    """The issue's chaos run, short: the gateway is killed with SIGKILL for longer than the
    monitor's buffer holds (the loss must come out as null points marked lost, counted once),
    then killed again briefly (nothing lost). Every point published, by any of the three
    gateway processes, is checked against the device's own clock, and its content against the
    probe's aim, which the test moves on and off the heart on an irregular schedule."""
    hospital = hospital_of(broker)
    radio, cfg, cfg_path, log = process_config(tmp_path, broker)
    procs: list[subprocess.Popen] = []
    kills: list[tuple[float, int]] = []  # (outage s, hospital messages at the restart)
    spec = DeviceSpec("fh-01", "fetal_heart", seed=3, fhr_bpm=142.0, mhr_bpm=78.0)
    rng = np.random.default_rng(11)
    aims = [(1.0 if i % 2 == 0 else 0.0, float(rng.uniform(3.0, 7.0))) for i in range(40)]

    def fhr_points() -> int:
        return sum(m["count"] for m in hospital.of("fh-01", "fhr"))

    async def main() -> FeedTruth:
        procs.append(_start_gateway(cfg_path, log))
        listening = lambda: log.exists() and "radio listening" in log.read_text()  # noqa: E731
        await eventually_async(listening, 20, "the gateway's radio is not listening")
        fleet = Fleet([spec], radio, tmp_path / "devices", gateway=cfg)
        await fleet.start()
        started = time.monotonic()
        device = fleet.devices[0]
        truth = FeedTruth(device)  # before the feeder's first block: it starts at our next await

        async def move_probe() -> None:
            for aim, hold_s in aims:
                device.aim = aim
                await asyncio.sleep(hold_s)

        probe = asyncio.create_task(move_probe())
        try:

            async def live_for(seconds: float) -> None:
                """Until the trace reaches `seconds` past now in the device's time (about the
                time since it started): the (restarted) gateway is publishing live again."""
                upto = 4 * (time.monotonic() - started + seconds)
                await eventually_async(lambda: fhr_points() >= upto, 45, "the trace is not live")

            for outage_s in (12.0, 1.0):  # the buffer holds about 10 s (docs/reliability.md)
                await live_for(5.0)
                procs[-1].send_signal(signal.SIGKILL)
                procs[-1].wait()
                await asyncio.sleep(outage_s)  # the outage itself, not a synchronisation
                kills.append((outage_s, hospital.count()))
                procs.append(_start_gateway(cfg_path, log))
            await live_for(5.0)
            # past the end of the first FHIR trace window (point 239, a minute into the boot)
            await eventually_async(lambda: fhr_points() >= 250, 45, "no 250 points")
            assert fleet.alive() == ["fh-01"], "the firmware process died"
        finally:
            probe.cancel()
            await fleet.stop()
            procs[-1].send_signal(signal.SIGTERM)
            await asyncio.to_thread(procs[-1].wait, 15)
        return truth

    try:
        truth = asyncio.run(main())
        eventually(lambda: shut_down(hospital), 10, "the gateway's shutdown status never came")
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
        hospital.close()
    assert log.read_text().count("resumes after") >= 2, "a restarted gateway did not resume"

    # Each gateway process's own count of lost samples: the last status it published.
    bounds = [0] + [n for _, n in kills] + [hospital.count()]
    lost_samples = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        status = hospital.topic("device", "fh-01", "status")
        st = [p for t, p, _ in hospital.messages[a:b] if t == status]
        lost_samples.append(st[-1]["stats"]["lost_samples"] if st else 0)

    ids = [m.get("msg_id") or (m.get("identifier") or [{}])[0].get("value")
           for _, m, _ in hospital.messages]  # fmt: skip
    with_id = [i for i in ids if i]
    report = {"faults": f"{len(kills)} gateway SIGKILLs ({', '.join(f'{o:.0f} s' for o, _ in kills)} down)",
              "messages": len(ids), "with_id": len(with_id),
              "duplicates": len(with_id) - len(set(with_id))}  # fmt: skip
    lost_equiv = 0.0
    for kind, key, channel, per_point in (("fhr", "fhr_bpm", CH_DOPPLER, 1000),
                                          ("mhr", "mhr_bpm", CH_PPG, 12.5)):  # fmt: skip
        msgs, dups = dedup(hospital.of("fh-01", kind))
        k, t_ms, valued, lost = _points(msgs, key)
        n = len(k)  # from the first point the gateway received, each once:
        assert np.array_equal(k, np.arange(k[0], k[0] + n)), kind  # losses included
        assert not (valued & lost).any(), f"{kind}: a lost point has a value"
        # Device time: published t_device_ms minus the monotonic time its sample was fed is
        # one constant for the whole boot, whichever gateway process stamped the point.
        offset = t_ms - 1000.0 * truth.fed_at(channel, np.round(k * per_point))
        dev = np.abs(offset - np.median(offset))
        mistimed = int(np.sum(dev > 250.0))
        report[kind] = {"points": n, "duplicates": dups, "lost_points": int(lost.sum()),
                        "mistimed": mistimed, "max_error_ms": round(float(dev.max())),
                        "feeder_late_ms": round(truth.late_ms(channel))}  # fmt: skip
        lost_equiv += lost.sum() * per_point
        if kind == "fhr":
            # Content: after the restarts, the points with and without a value are those of
            # the estimator run on every sample fed, at the same numbers (lost ones aside).
            last_before = max(m["seq"] + m["count"] - 1 for t, m, _ in hospital.messages[: kills[0][1]]
                              if t.endswith("/fh-01/fhr"))  # fmt: skip
            after = (k > last_before) & ~lost
            lag, differ = _content_lag(k[after], valued[after], truth.reference_valued())
            report["content_shift_points"] = lag
            report["content_differ"] = {d: round(differ[d], 3) for d in (-4, -1, 0, 1, 4)}
    report["lost_samples"] = lost_samples
    # FHIR: every point of every completed window is in its Observation, as in the trace,
    # whichever gateway process published the point (the window survives the restarts).
    fhr = {k: v for m in dedup(hospital.of("fh-01", "fhr"))[0]
           for k, v in zip(range(m["seq"], m["seq"] + m["count"]), m["fhr_bpm"], strict=True)}  # fmt: skip
    covered = 0
    seen: set[str] = set()
    for o in hospital.of("fh-01", "observation"):
        ident = o["identifier"][0]["value"]
        if ":fhr-obs:" not in ident or ident in seen:
            continue
        seen.add(ident)
        start = int(ident.rsplit(":", 1)[1])
        for i, d in enumerate(o["valueSampledData"]["data"].split()):
            v = fhr[start + i]
            assert d == ("E" if v is None else f"{v:.1f}"), (ident, i)
            covered += 1
    window_end = max(k for k in fhr if (k + 1) % 240 == 0)
    report["fhir_points"] = f"{covered} of {sum(1 for k in fhr if k <= window_end)}"
    print(f"\ngateway kill -9 fault run: {report}")
    for kind in ("fhr", "mhr"):
        assert report[kind]["mistimed"] == 0, report
    assert abs(lag) <= 1 and differ[lag] < 0.2, report  # within one point (0.25 s)
    assert report["fhr"]["lost_points"] >= 4 * 1, report  # the 12 s outage outlasted the buffer
    assert covered == sum(1 for k in fhr if k <= window_end), report
    # Each lost sample counted once, as the points over it are published, whichever process
    # publishes them: the lost points account for them (to half a point at each end).
    assert abs(sum(lost_samples) - lost_equiv) <= 2 * (1000 + 25), report
