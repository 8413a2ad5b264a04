"""A jaundice meter's TcB readings for the nurse view: every reading the history keeps, once
each, assessed for the baby's details as set now and written in the ward's unit
(gateway/processing/jaundice.py, `readings_for_view`).

The page asks again when a reading arrives or the baby's details change, so a corrected birth
time or gestation moves every past reading on the nomogram instead of adding new points
beside the old ones.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.processing.jaundice import ASSESSED_WITH, readings_for_view
from gateway.web.auth import nurse_only

if TYPE_CHECKING:
    from gateway.context import GatewayContext
    from gateway.state.history import History


def tcb_routes(gw: GatewayContext, history: History) -> list[Route]:
    @nurse_only()
    async def tcb_readings(request: Request) -> Response:
        dev = request.path_params["device"]
        known = dev in gw.sessions or dev in history.devices or dev in history.settings.values
        if not known:
            return JSONResponse({"error": "unknown device"}, status_code=404)
        now = time.time()
        baby = gw.cfg.devices.get(dev, {})  # the config's details, as nurses changed them
        unit = gw.cfg.web.bilirubin_unit
        # to no end: a meter's clock a little ahead of the gateway's is still the latest reading
        readings = history.messages(dev, "tcb", now - history.keep_s, math.inf)
        used = {k: baby.get(k) for k in ASSESSED_WITH}  # the page draws the lines for these
        return JSONResponse({"device_id": dev, "unit": unit, "baby": used,
                             "readings": readings_for_view(readings, baby, unit)})  # fmt: skip

    return [Route("/api/devices/{device}/tcb", tcb_readings)]
