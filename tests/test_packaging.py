"""The wheel a Raspberry Pi install uses carries the data files the gateway needs at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[1]


def test_wheel_contains_model_web_assets_and_schemas(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("perimon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "dsp/tcb_model.json" in names
    static = {p.relative_to(REPO).as_posix() for p in (REPO / "gateway/web/static").rglob("*")
              if p.is_file()}  # fmt: skip
    assert static and static <= names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "perimon = gateway.cli:main" in scripts
    assert "perimon-ingest = hospital.cli:main" in scripts
    # the MQTT contract's schemas, one copy in docs/schemas, as the package perimon_schemas
    schemas = {f"perimon_schemas/{p.name}" for p in (REPO / "docs/schemas").glob("*.schema.json")}
    assert len(schemas) >= 10 and schemas <= names
    assert "perimon_schemas/__init__.py" in names
    # the firmware the virtual devices run (perimon demo), as the package perimon_firmware
    firmware = {f"perimon_firmware/{p.relative_to(REPO / 'firmware').as_posix()}"
                for p in (REPO / "firmware").rglob("*.py")}  # fmt: skip
    assert {"perimon_firmware/fetal_heart/main.py", "perimon_firmware/jaundice/main.py",
            "perimon_firmware/lib/protocol.py"} <= firmware  # fmt: skip
    assert firmware <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)
