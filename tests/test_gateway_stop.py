"""The gateway's stop ends even when one of its parts does not: a step that hangs is logged by
name and left behind, and the rest of the stop (the outbox flushed, the status said) goes on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway import app as app_module
from gateway.app import Gateway
from gateway.config import config_from_dict
from tests.harness.chain import gateway_config


@pytest.mark.system
def test_a_radio_whose_stop_hangs_does_not_keep_the_gateway_from_stopping(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(app_module, "_STOP_STEP_S", 0.5)
    caplog.set_level(logging.ERROR, logger="gateway.app")
    gw = Gateway(config_from_dict(gateway_config(tmp_path)))  # its broker unreachable

    async def hangs() -> None:
        await asyncio.Event().wait()

    async def main() -> bool:
        stop = asyncio.Event()
        run = asyncio.create_task(gw.run(stop))
        await asyncio.wait_for(gw.ready.wait(), 10)
        gw.transport.stop = hangs  # type: ignore[method-assign]
        stop.set()
        await asyncio.wait({run}, timeout=30)  # a hang, not a slow stop
        return run.done()

    assert asyncio.run(main()), "the gateway did not stop"
    (line,) = [r.getMessage() for r in caplog.records if "did not end" in r.getMessage()]
    assert line.startswith("the radio transport's stop did not end within")
