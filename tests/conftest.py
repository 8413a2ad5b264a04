"""The test tiers and the shared fixtures: a real Mosquitto broker, the firmware's provisioning
console on a pseudo-terminal. What the fixtures are built from is in tests/harness/."""

from __future__ import annotations

import pytest

from tests.harness.console import provisioning_consoles
from tests.harness.micropython import run_micropython  # noqa: F401  (imported from here by older modules)
from tests.harness.mqtt import start_mosquitto
from tests.harness.paths import ARTIFACTS  # noqa: F401  (imported from here by older modules)

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
    b = start_mosquitto(tmp_path / "broker")
    yield b
    b.stop()


@pytest.fixture
def device_on_pty(tmp_path):
    """`start(kind, settings=None)`: the firmware in provisioning mode, its console on a pty;
    returns (the port's path, the settings file, the process). All are ended after the test."""
    with provisioning_consoles(tmp_path) as start:
        yield start
