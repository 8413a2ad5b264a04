"""A region's worth of gateways without running them: what their outboxes hold, paho clients
that flush them as a reconnecting gateway does (or the gateway's own publishers, with their
outboxes and, for a hospital that sends receipts, their resends), and a network link that can
be cut.

Used by the hospital-side tests (bridged brokers, the flood of a region reconnecting) and by
benchmarks/bench_ingest.py. Every message is one the contract allows (docs/mqtt.md, validated by
docs/schemas): TcB readings, their two FHIR Observations (built by the gateway's own
gateway/processing/fhir.py), and alerts, each series numbered
without gaps, so the ingest's gap report says whether anything was lost.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devtools.process import stop_process
from gateway.config import MqttSection
from gateway.processing.fhir import tcb_observations
from gateway.publish.mqtt import Publisher
from gateway.publish.outbox import Outbox
from tests.harness.paths import REPO
from tests.harness.wait import eventually

PREFIX = "perimon/v1"
_T = "2026-11-23T10:00:00.000Z"
DEPLOY = REPO / "deploy" / "mosquitto"
# What a perimon broker keeps and queues, as the shipped mosquitto.conf sets it.
_KEPT = ("persistence ", "autosave_interval", "autosave_on_changes", "max_queued_messages",
         "max_queued_bytes", "max_inflight_messages")  # fmt: skip


def broker_conf(workdir: Path) -> str:
    """deploy/mosquitto/mosquitto.conf's persistence and queue settings (its TLS listeners
    aside), saving into `workdir`; as root, since Mosquitto would otherwise drop to the user
    `mosquitto`, which cannot write there."""
    lines = (DEPLOY / "mosquitto.conf").read_text().splitlines()
    kept = [line for line in lines if line.startswith(_KEPT)]
    return "\n".join(["user root", *kept, f"persistence_location {workdir}/", ""])


def bridge_conf(port: int, site: str = "site-1") -> str:
    """deploy/mosquitto/bridge.conf to a regional broker on 127.0.0.1:`port`, without TLS (the
    test brokers have none; tests/test_mqtt_acl.py covers TLS) and retrying every second (the
    shipped back-off reaches 10 s: too long to wait for in a test)."""
    out = []
    for line in (DEPLOY / "bridge.conf").read_text().splitlines():
        if line.startswith(("bridge_cafile", "bridge_certfile", "bridge_keyfile", "#")):
            continue
        if line.startswith("address "):
            line = f"address 127.0.0.1:{port}"
        if line.startswith("restart_timeout"):
            line = "restart_timeout 1"
        out.append(line.replace("SITE", site))
    return "\n".join(out) + "\n"


class IngestProcess:
    """`perimon-ingest` as its own process (`--worker name`, persistent session): it can be
    stalled (`pause`) as an overloaded or swapped-out worker is, and resumed. `subscribed()`
    waits until its subscription is in place."""

    def __init__(self, name: str, host: str, port: int, db: str, *args: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hospital.cli", "--host", host, "--port", str(port),
             "--db", db, "--worker", name, "--verbose", *args],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def subscribed(self, timeout_s: float = 30) -> None:
        eventually(lambda: self.proc.poll() is not None or any("subscribed" in x for x in self.log),
                   timeout_s, f"{self.name} did not subscribe")  # fmt: skip
        assert self.proc.poll() is None, "".join(self.log)

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)  # connected, taking nothing

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.resume()
        stop_process(self.proc, 20)


@dataclass(frozen=True)
class Message:
    topic: str
    body: bytes
    key: str  # the identifier the ingest stores it under


def _tcb(device: str, boot: int, seq: int) -> dict:
    value = 8.0 + (seq % 40) / 10
    return {"msg_id": f"{device}:{boot}:tcb:{seq}", "device_id": device, "boot": boot, "seq": seq,
            "t": _T, "t_device_ms": 1000 * seq, "tcb_mg_dl": value,
            "tcb_umol_l": round(value * 17.1, 1), "ci_low_mg_dl": value - 1.2,
            "ci_high_mg_dl": value + 1.2, "flag": "", "assessment": None}  # fmt: skip


def _alert(device: str, seq: int) -> dict:
    return {"msg_id": f"{device}:alert:tcb_high:{seq}:raised", "seq": seq, "device_id": device,
            "alert": "tcb_high", "state": "raised", "severity": "medium",
            "detail": "TcB above the phototherapy line", "t": _T, "raised_at": _T}  # fmt: skip


def outbox(gateway: str, n: int, devices: int = 2, observations: bool = True) -> list[Message]:
    """`n` messages as a gateway's outbox would hold them: for each of `devices` jaundice
    meters in turn, a TcB reading, its Observations (mg/dL, umol/L) and, every tenth reading,
    an alert. `observations` False: the readings only (each a 300-byte message)."""
    out: list[Message] = []
    seqs = [0] * devices
    while len(out) < n:
        for d in range(devices):
            device = f"tcb-{gateway}-{d:02d}"  # device ids are unique in the region
            seq = seqs[d]
            seqs[d] += 1
            base = f"{PREFIX}/{gateway}/device/{device}"
            reading = _tcb(device, 1, seq)
            batch = [(f"{base}/tcb", reading, reading["msg_id"])]
            if observations:
                for obs in tcb_observations(gateway, reading):
                    batch.append((f"{base}/observation", obs, obs["identifier"][0]["value"]))
            if seq % 10 == 9:
                alert = _alert(device, seq // 10 + 1)
                batch.append((f"{base}/alert", alert, alert["msg_id"]))
            for topic, payload, key in batch:
                out.append(Message(topic, json.dumps(payload).encode(), key))
    return out[:n]


def region(gateways: int, per_gateway: int, **kw) -> dict[str, list[Message]]:
    """Each gateway's outbox: gateway id -> its messages."""
    return {f"gw-{g:03d}": outbox(f"gw-{g:03d}", per_gateway, **kw) for g in range(gateways)}


def keys(outboxes: dict[str, list[Message]]) -> list[str]:
    return sorted(m.key for msgs in outboxes.values() for m in msgs)


@dataclass
class Gateways:
    """One paho client per gateway (MQTT 5, its own client id), each publishing its outbox at
    QoS 1 as a gateway flushing after an outage does: as fast as the broker acknowledges, at
    most `in_flight` unacknowledged. `acked()` counts PUBACKs; paho resends what was not
    acknowledged when a client reconnects, as the gateway's outbox does."""

    host: str
    port: int
    in_flight: int = 100
    clients: dict[str, mqtt.Client] = field(default_factory=dict)
    _acked: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def connect(self, ids: Iterable[str]) -> None:
        for gid in ids:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gid,
                            protocol=MQTTProtocolVersion.MQTTv5)  # fmt: skip
            c.max_inflight_messages_set(self.in_flight)
            c.max_queued_messages_set(0)
            c.reconnect_delay_set(0.2, 2)
            c.on_publish = self._on_publish
            c.connect(self.host, self.port, clean_start=False)
            c.loop_start()
            self.clients[gid] = c

    def _on_publish(self, *_: object) -> None:
        with self._lock:
            self._acked += 1

    def publish(self, outboxes: dict[str, list[Message]]) -> None:
        """Each message with the properties the gateway's publisher sets (content type and
        the `msg_id` user property: gateway/publish/mqtt.py)."""
        for gid, msgs in outboxes.items():
            c = self.clients[gid]
            for m in msgs:
                props = Properties(PacketTypes.PUBLISH)
                props.ContentType = "application/json"
                props.UserProperty = [("msg_id", m.key)]
                c.publish(m.topic, m.body, 1, properties=props)

    def acked(self) -> int:
        with self._lock:
            return self._acked

    def close(self) -> None:
        for c in self.clients.values():
            c.disconnect()
            c.loop_stop()


class OutboxGateways:
    """The gateway's own publishers (gateway/publish/mqtt.py), one per gateway, each with its
    outbox on disk: as `Gateways`, but each message goes through the outbox, and with
    `await_receipts` stays there until the hospital's receipt names it, sent again every
    `receipt_timeout_s` (doubling) while none does (docs/mqtt.md, "Receipts")."""

    def __init__(self, host: str, port: int, workdir: Path, ids: Iterable[str], *,
                 await_receipts: bool = True, receipt_timeout_s: float = 2.0) -> None:  # fmt: skip
        cfg = MqttSection(host=host, port=port, await_receipts=await_receipts,
                          receipt_timeout_s=receipt_timeout_s)  # fmt: skip
        self.publishers: dict[str, Publisher] = {}
        for gid in ids:
            outbox = Outbox(workdir / f"{gid}.sqlite", 1 << 30, 0)
            pub = Publisher(cfg, gid, outbox, status_interval_s=60.0)
            pub.client.reconnect_delay_set(0.2, 2)
            pub.start()
            self.publishers[gid] = pub

    def publish(self, outboxes: dict[str, list[Message]]) -> None:
        for gid, msgs in outboxes.items():
            pub = self.publishers[gid]
            for m in msgs:
                parts = tuple(m.topic.split("/")[3:])  # perimon/v1/{gateway}/device/{id}/{kind}
                pub.publish(parts, json.loads(m.body))

    def acked(self) -> int:
        """Messages the broker acknowledged (each counted once per PUBACK)."""
        return sum(p.published for p in self.publishers.values())

    def queued(self) -> int:
        """Messages still in the outboxes: not acknowledged, or not yet confirmed stored."""
        return sum(p.outbox.rows for p in self.publishers.values())

    def resent(self) -> int:
        return sum(p.outbox.stats()["resent"] for p in self.publishers.values())

    def close(self) -> None:
        for p in self.publishers.values():
            p.stop(drain_s=0)


class Link:
    """A TCP link from a local port to `target` (host, port) that can be cut: `cut()` closes
    every connection through it and refuses new ones until `restore()`, as a WAN outage
    would. Forwarding runs on threads of its own; `close()` ends them."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.cuts = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="link-accept").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                inside, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                inside.close()  # the link is down: the connection goes nowhere
                continue
            try:
                outside = socket.create_connection(self.target, timeout=2)
            except OSError:
                inside.close()
                continue
            outside.settimeout(None)  # the timeout was for connecting: an idle link stays up
            with self._lock:
                self._conns += [inside, outside]
            for a, b in ((inside, outside), (outside, inside)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def connections(self) -> int:
        with self._lock:
            return len(self._conns) // 2

    def cut(self) -> None:
        self.up.clear()
        self.cuts += 1
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


def chunks(seq: list[Message], size: int) -> Iterator[list[Message]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
