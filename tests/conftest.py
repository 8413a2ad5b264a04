"""The test tiers, and shared fixtures: a real Mosquitto broker, the MicroPython interpreter."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devtools.broker import mosquitto_binary, start_broker
from simulators.fleet import FIRMWARE_DIR, micropython_binary

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

# Each test has exactly one: `pytest -m unit` is the fast tier (see docs/testing.md).
TIERS = ("unit", "system", "install")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: an untiered test fails every run
def pytest_collection_modifyitems(config, items):
    wrong = []
    for item in items:
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"  {item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            "every test needs exactly one tier marker of "
            f"{', '.join(TIERS)} (pytestmark = pytest.mark.unit at the top of the module, "
            "or one on the test):\n" + "\n".join(wrong)
        )


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto on a free loopback port, stopped after the test."""
    assert mosquitto_binary(), "Mosquitto is not installed: run scripts/test (it installs it)"
    b = start_broker(tmp_path / "broker")
    assert b.kind == "mosquitto"
    yield b
    b.stop()


def run_micropython(script: Path, *args: str, stdin: str = "", heap: str = "128K") -> str:
    """Run a script under the MicroPython Unix port with an ESP32-class heap."""
    res = subprocess.run(
        [micropython_binary(), "-X", f"heapsize={heap}", str(script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture
def firmware_lib() -> str:
    return str(FIRMWARE_DIR / "lib")
