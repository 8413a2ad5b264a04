"""perimon-ingest's settings (file, environment, command line), its two schema validators, and
its systemd unit."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.processing.fhir import tcb_observations
from hospital import config
from hospital.cli import build_parser, config_of
from hospital.config import ConfigError, IngestConfig, load
from hospital.messages import STORED_KINDS, _check
from perimon_schemas import load_schema
from tests.harness import region as rg

HOSPITAL = Path(config.__file__).parent


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ingest.toml"
    path.write_text(text)
    return path


@pytest.mark.unit
def test_the_command_line_wins_over_the_environment_over_the_file(tmp_path):
    path = _file(tmp_path, '[mqtt]\nhost = "broker.region"\nport = 8883\nworker = "w-file"\n'
                           '[database]\ndb = "postgresql://ingest@/h"\n'
                           "[ingest]\nbatch_max = 200\nack_alerts = false\n")  # fmt: skip
    env = {"PERIMON_INGEST_PORT": "8884", "PERIMON_INGEST_PASSWORD": "secret",
           "PERIMON_INGEST_CONFIG": str(path), "HOME": "/root"}  # fmt: skip
    cfg = load(None, env, {"worker": "w-cli", "port": None})
    assert cfg == IngestConfig(host="broker.region", port=8884, password="secret",
                               worker="w-cli", db="postgresql://ingest@/h", batch_max=200,
                               ack_alerts=False)  # fmt: skip
    assert cfg.session_expiry_s == 24 * 3600
    assert load(None, {}, {}) == IngestConfig() and IngestConfig().session_expiry_s == 0
    args = build_parser().parse_args(["--config", str(path), "--no-ack", "--in-flight", "50"])
    cli = config_of(args)
    assert (cli.in_flight, cli.ack_alerts, cli.port) == (50, False, 8883)


@pytest.mark.unit
@pytest.mark.parametrize("text, env, error", [
    ("[mqtt]\nport = 0\n", {}, "[mqtt] port: an integer from 1 to 65535, got 0"),
    ('[mqtt]\nport = "x"\n', {}, "[mqtt] port: an integer from 1 to 65535, got 'x'"),
    ("[mqtt]\ndb = 'x'\n", {}, "[mqtt] unknown key 'db' (known: host, port,"),
    ("[broker]\n", {}, "unknown section [broker] (known: mqtt, database, ingest)"),
    ("[ingest]\nack_alerts = 1\n", {}, "[ingest] ack_alerts: true or false, got 1"),
    ("[mqtt\n", {}, "not valid TOML"),
    ("", {"PERIMON_INGEST_IN_FLIGHT": "0"}, "PERIMON_INGEST_IN_FLIGHT: an integer from 1 to"),
    ("", {"PERIMON_INGEST_HOTS": "x"}, "PERIMON_INGEST_HOTS: not a perimon-ingest setting"),
    ("[mqtt]\nworker = 'a/b'\n", {}, "worker: letters, digits, _ . - (at most 64), got 'a/b'"),
    ("[mqtt]\ntls_cert = 'c.pem'\n", {}, "tls_cert and tls_key go together, with tls_ca"),
])  # fmt: skip
def test_a_wrong_setting_is_one_line_naming_it(tmp_path, text, env, error):
    with pytest.raises(ConfigError) as exc:
        load(_file(tmp_path, text), env, {})
    assert error in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.unit
def test_the_example_file_holds_every_setting_at_its_default():
    example = HOSPITAL / "ingest.example.toml"
    assert load(example, {}, {}) == IngestConfig()
    text = example.read_text()
    for section, keys in config.SECTIONS.items():
        assert f"[{section}]" in text
        for key in keys:
            assert f"\n{key} = " in text, key


def _mutations(payload: dict) -> list[dict]:
    """The payload without each key in turn, and with each value replaced by a wrong type."""
    out = []
    for key in payload:
        out.append({k: v for k, v in payload.items() if k != key})
        out.append(payload | {key: [] if not isinstance(payload[key], list) else "x"})
    return out


@pytest.mark.unit
def test_jsonschema_rs_and_jsonschema_agree_on_every_stored_kind():
    """The fast validator (perimon[hospital]) and the fallback judge alike: each valid message
    of every stored kind, and each one broken a key at a time."""
    rs = importlib.import_module("jsonschema_rs")
    samples: dict[str, list[dict]] = {kind: [] for kind in STORED_KINDS}
    for m in rg.outbox("gw-001", 70):
        samples[m.topic.rsplit("/", 1)[1]].append(json.loads(m.body))
    reading = json.loads(rg.outbox("gw-001", 1, observations=False)[0].body)
    samples["observation"] += tcb_observations("gw-001", reading | {"tcb_mg_dl": None})
    samples["ctg"].append({"msg_id": "fh-01:ctg:1", "seq": 1})
    samples["session"].append({"msg_id": "fh-01:session:1", "seq": 1})
    for kind, payloads in samples.items():
        fast = _check(load_schema(kind))
        assert fast.__name__ == "check_rs", rs
        python = importlib.import_module("jsonschema").Draft202012Validator(load_schema(kind))
        for payload in payloads[:3]:
            for p in [payload, *_mutations(payload)]:
                assert (fast(p) is None) == python.is_valid(p), (kind, p)


@pytest.mark.system  # systemd-analyze is a process
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze is part of Debian's systemd"
    text = (HOSPITAL / "perimon-ingest@.service").read_text()
    assert "/opt/perimon/venv/bin/perimon-ingest --worker %H-%i" in text
    venv = Path(sys.executable).parents[1]
    unit = tmp_path / "perimon-ingest@1.service"
    unit.write_text(text.replace("/opt/perimon/venv", str(venv)))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    problems = [line for line in (res.stdout + res.stderr).splitlines() if "perimon-ingest" in line]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr
