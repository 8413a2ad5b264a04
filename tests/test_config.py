import subprocess
import sys
from datetime import datetime

import pytest

from gateway.config import ConfigError, config_from_dict, load_config
from gateway.processing.jaundice import assess_at


@pytest.mark.unit
def test_defaults_are_valid():
    cfg = load_config(None)
    assert cfg.mqtt.port == 1883 and cfg.radio.transport == "sim" and cfg.mqtt.protocol == "5"


@pytest.mark.unit
@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"mqtt": {"hots": "x"}}, "[mqtt] unknown key 'hots'"),
        ({"mqtt": {"port": "eighty"}}, "[mqtt] port: expected an integer"),
        ({"mqtt": {"port": 70000}}, "[mqtt] port: expected 1 to 65535"),
        ({"radio": {"transport": "carrier-pigeon"}}, "[radio] transport"),
        ({"radio": {"att_mtu": 20}}, "[radio] att_mtu"),
        ({"gateway": {"id": "Ward 3 / Mrs Smith"}}, "[gateway] id"),
        ({"processing": {"gap_timeout_s": 0}}, "gap_timeout_s"),
        ({"telemetry": {}}, "unknown section [telemetry]"),
        ({"devices": {"tcb-01": {"ga_weeks": "38"}}}, "ga_weeks"),
        ({"devices": {"tcb-01": {"name": "Baby Smith"}}}, "unknown key 'name'"),
        ({"mqtt": {"tls": "yes"}}, "expected true or false"),
        # a birth time or gestation the TcB assessment cannot use: refused, as in the nurse view
        (
            {"devices": {"tcb-01": {"birth_time": "2026-12-06T10:00:00"}}},
            "[devices.tcb-01] birth_time: an ISO 8601 time with a time zone, got '2026-12-06T10:00:00'",
        ),
        ({"devices": {"tcb-01": {"birth_time": "06/12/2026 10:00"}}}, "birth_time: an ISO 8601"),
        ({"devices": {"tcb-01": {"birth_time": "yesterday"}}}, "birth_time: an ISO 8601"),
        ({"devices": {"tcb-01": {"ga_weeks": 34}}}, "[devices.tcb-01] ga_weeks: a number of weeks"),
        ({"devices": {"tcb-01": {"ga_weeks": 46.5}}}, "ga_weeks: a number of weeks from 35 to 45"),
        ({"devices": {"tcb-01": {"label": "x" * 41}}}, "label: text of at most 40 characters"),
    ],
)
def test_wrong_key_or_value_gives_one_line_naming_it(raw, needle):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(raw, "perimon.toml")
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg and msg.startswith("perimon.toml")


@pytest.mark.unit
@pytest.mark.parametrize(
    "birth_time", ["2026-12-06T10:00:00Z", "2026-12-06T10:00:00+08:00", "2026-12-06T10:00:00.5Z"]
)
def test_a_birth_time_the_config_accepts_is_one_the_tcb_assessment_reads(birth_time):
    cfg = config_from_dict({"devices": {"tcb-01": {"birth_time": birth_time, "ga_weeks": 38}}})
    born = datetime.fromisoformat(birth_time.replace("Z", "+00:00")).timestamp()
    a = assess_at(25.0, born + 40 * 3600, cfg.devices["tcb-01"], [])
    assert a is not None and a.above_phototherapy and round(a.age_hours) == 40


@pytest.mark.system
def test_cli_reports_a_broken_config_in_one_line(tmp_path):
    bad = tmp_path / "perimon.toml"
    bad.write_text("[mqtt]\nport = = 3\n")
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "gateway", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "not valid TOML" in lines[0] and "Traceback" not in res.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "gateway", "--config", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.unit
def test_example_config_in_docs_is_valid(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "docs" / "perimon.example.toml"
    cfg = load_config(example)
    assert cfg.gateway.id and cfg.mqtt.topic_prefix == "perimon/v1"


@pytest.mark.unit
def test_every_key_is_documented_in_the_example():
    import re
    from dataclasses import fields
    from pathlib import Path

    from gateway import config as c

    text = (Path(__file__).resolve().parents[1] / "docs" / "perimon.example.toml").read_text()
    sections = dict(re.findall(r"^\[(\w+)\]([^\[]*)", text, re.M))
    for name, cls in c._SECTIONS.items():
        assert name in sections, f"[{name}] is not in docs/perimon.example.toml"
        keys = set(re.findall(r"^(\w+) =", sections[name], re.M))
        missing = {f.name for f in fields(cls)} - keys
        assert not missing, f"[{name}] keys not documented: {sorted(missing)}"
