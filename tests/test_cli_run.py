"""`perimon gateway` and `perimon simulate` as separate processes, as an installer would run
them: the simulated devices enrol through the gateway's config and their readings arrive."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest

from devtools.broker import free_port
from tests.harness.wait import eventually

pytestmark = pytest.mark.system


def test_separate_gateway_and_simulator_processes(broker, tmp_path):
    cfg = tmp_path / "perimon.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw-cli"\ndata_dir = "{tmp_path}/gw"\n'
        f"[mqtt]\nport = {broker.port}\n"
        f'[radio]\nlisten = "127.0.0.1:{free_port()}"\n'
    )
    got: dict[str, list[dict]] = {}
    lock = threading.Lock()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("perimon/v1/gw-cli/#", qos=1)

    def on_message(c, u, m):
        with lock:
            got.setdefault(m.topic.split("/")[-1], []).append(json.loads(m.payload))

    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    cmd = [sys.executable, "-m", "gateway.cli"]
    gw = subprocess.Popen([*cmd, "gateway", "--config", str(cfg)], stderr=subprocess.PIPE)
    sim = subprocess.Popen(
        [*cmd, "simulate", "--config", str(cfg), "--fetal", "1", "--jaundice", "0",
         "--workdir", str(tmp_path / "devices")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def fhr_values() -> list[float] | None:
            """The FHR values published so far, once there are 20."""
            with lock:
                v = [v for m in got.get("fhr", []) for v in m["fhr_bpm"] if v is not None]
            return v if len(v) >= 20 else None

        values = eventually(fhr_values, 40, lambda: f"too few FHR values; kinds {list(got)}",
                            every_s=0.5)  # fmt: skip
        assert all(m["device_id"] == "fh-01" for m in got["fhr"])
        assert 120 < sorted(values)[len(values) // 2] < 165
    finally:
        for proc in (sim, gw):
            proc.send_signal(signal.SIGINT)
        assert sim.wait(20) == 0, sim.stderr.read().decode()
        assert gw.wait(20) == 0, gw.stderr.read().decode()
        sub.disconnect()
        sub.loop_stop()
    assert not got.get("unknown_devices") or not any(
        m.get("devices") for m in got["unknown_devices"]
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["dsp", "fhr"],
        ["dsp", "tcb", "assess", "--tcb", "abc", "--age-hours", "40", "--ga-weeks", "38"],
        ["gateway", "--no-such-option"],
    ],
)
def test_argument_errors_are_one_line_with_a_non_zero_exit(argv):
    out = subprocess.run([sys.executable, "-m", "gateway.cli", *argv], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and out.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("perimon") and "error:" in lines[0]


def test_version_and_check_config_for_installers(tmp_path):
    cmd = [sys.executable, "-m", "gateway.cli"]
    version = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and re.fullmatch(r"perimon \d+\.\d+\.\d+\S*\n", version.stdout)
    good = tmp_path / "good.toml"
    good.write_text('[gateway]\nid = "gw-check"\n[radio]\ntransport = "ble"\n')
    ok = subprocess.run([*cmd, "gateway", "--check-config", "-c", str(good)],
                        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.startswith("config ok: gateway gw-check, radio ble")
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nid = "gw-check"\n[mqtt]\nport = "not a port"\n')
    no = subprocess.run([*cmd, "gateway", "--check-config", "-c", str(bad)],
                        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert no.returncode == 2 and no.stdout == ""
    assert len(no.stderr.strip().splitlines()) == 1 and "port" in no.stderr
