"""Where the strip lifts its pen: the FHR points that the CTG analyses reject as artefact.

The live `fhr` messages carry what the estimator gave; the CTG analyses read them after
artefact rejection (dsp/ctg_artefact.py), and so does the strip: the server runs the same
`reject_artefacts` over the published points and sends the rejected ones with the window
(`fhr_rejected`), and on their own for the live strip (`/api/devices/{device}/rejected`, asked
again as each minute's CTG findings arrive). The page draws no line through them and counts
them as no rate (docs/fhr.md, "Strip and report"; the session report does the same in Python).

A rejection depends on the trace around a point (the running trace of the last 10 min, the
minute after a start), so the points of the 10 min before the window are read with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dsp.ctg_artefact import OUT_OF_RANGE, REASON_NAMES, RUNNING_TRACE_S, reject_artefacts
from gateway.state.history import span
from gateway.web.auth import nurse_only

if TYPE_CHECKING:
    from gateway.state.history import History

CONTEXT_S = RUNNING_TRACE_S  # read before the window: what a rejection looks back at


def rejected_runs(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points of `fhr` messages that artefact rejection discards, as runs of one reason:
    `{"boot", "first", "last", "reason"}` (point numbers, the messages' `seq`). Points never
    published (a missing message) are signal loss, as on the strip."""
    by_boot: dict[int, dict[int, float]] = {}
    for m in messages:
        points = by_boot.setdefault(int(m.get("boot") or 0), {})
        for i, v in enumerate(m.get("fhr_bpm") or []):
            points[int(m["seq"]) + i] = math.nan if v is None else float(v)
    runs: list[dict[str, Any]] = []
    for boot, points in sorted(by_boot.items()):
        first = min(points)
        fhr = np.full(max(points) - first + 1, np.nan)
        fhr[np.fromiter(points, int) - first] = np.fromiter(points.values(), float)
        reason = reject_artefacts(fhr).reason
        bad = np.flatnonzero(reason >= OUT_OF_RANGE)  # lost points are null already
        if not bad.size:
            continue
        breaks = np.flatnonzero((np.diff(bad) != 1) | (np.diff(reason[bad]) != 0)) + 1
        for run in np.split(bad, breaks):
            runs.append({"boot": boot, "first": first + int(run[0]),
                         "last": first + int(run[-1]),
                         "reason": REASON_NAMES[int(reason[run[0]])]})  # fmt: skip
    return runs


def rejected(history: History, device_id: str, since: float, until: float) -> list[dict[str, Any]]:
    """The rejected runs of a device's FHR within [since, until] (unix s), judged with the
    CONTEXT_S before."""
    msgs = history.messages(device_id, "fhr", since - CONTEXT_S, until)
    shown: dict[int, tuple[int, int]] = {}  # boot -> the first and last point in the window
    for m in msgs:
        if span("fhr", m)[1] >= since:
            boot, first, last = int(m.get("boot") or 0), m["seq"], m["seq"] + m["count"] - 1
            lo, hi = shown.get(boot, (first, last))
            shown[boot] = (min(lo, first), max(hi, last))
    out = []
    for r in rejected_runs(msgs):
        if r["boot"] in shown:
            lo, hi = shown[r["boot"]]
            if r["last"] >= lo and r["first"] <= hi:
                out.append({**r, "first": max(r["first"], lo), "last": min(r["last"], hi)})
    return out


def artefact_routes(history: History) -> list[Route]:
    @nurse_only()
    async def rejected_points(request: Request) -> Response:
        try:
            until = float(request.query_params["until"])
            since = float(request.query_params["since"])
        except (KeyError, ValueError):
            return JSONResponse({"error": "since/until: unix seconds"}, status_code=400)
        since = max(since, time.time() - history.keep_s)  # as the window: what is kept
        dev = request.path_params["device"]
        return JSONResponse({"device_id": dev, "since": since, "until": until,
                             "fhr_rejected": rejected(history, dev, since, until)})  # fmt: skip

    return [Route("/api/devices/{device}/rejected", rejected_points)]
