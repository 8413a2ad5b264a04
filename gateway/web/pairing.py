"""The pairing page: monitors whose button was pressed, the code to compare, and confirmation
(gateway/device/pairing.py; docs/home.md, "Pairing a new monitor"). Nurse login required, like the
rest of the gateway's page; writes need the X-Perimon header (CSRF)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from gateway.device.pairing import PairingError
from gateway.web.auth import nurse_only

if TYPE_CHECKING:
    from gateway.context import GatewayContext

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>perimon: pair a new monitor</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><main class="simple">
<h1>Pair a new monitor</h1>
<p>Press and hold the button on the new monitor for 2 seconds. It appears below within a few
seconds.</p>
<ul id="pending"><li>No monitor wants to pair.</li></ul>
<p>Or open your phone's camera on the code on the monitor's label (inside the battery cover).</p>
<p><a href="/">Back</a></p>
</main><script src="/pairing.js"></script></body></html>
"""

_SCRIPT = """"use strict";
const list = document.getElementById("pending");
async function post(id, what) {
  const r = await fetch(`/api/pairing/${encodeURIComponent(id)}/${what}`,
                        {method: "POST", headers: {"X-Perimon": "1"}});
  const body = await r.json();
  if (!r.ok) alert(body.error || "pairing failed");
  refresh();
}
function item(d) {
  const li = document.createElement("li");
  li.dataset.device = d.device_id;
  const name = document.createElement("strong");
  name.textContent = d.device_id;
  li.append(name, " ");
  const say = (t) => li.append(document.createTextNode(t + " "));
  const button = (label, what) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.className = what;
    b.onclick = () => { b.disabled = true; post(d.device_id, what); };
    li.append(b, " ");
  };
  if (d.state === "wants_to_pair" || d.state === "failed") {
    say(d.state === "failed" ? `failed: ${d.error}` : "wants to pair");
    button("Pair", "start");
  } else if (d.state === "exchanging") {
    say("agreeing on a key...");
  } else if (d.state === "code") {
    const c = document.createElement("span");
    c.className = "code";
    c.textContent = d.code.split("").join(" ");
    say("The monitor blinks and beeps:");
    li.append(c, " ");
    say("If it is the same, press the monitor's button, then");
    button("Codes match", "confirm");
  } else if (d.state === "confirming") {
    say("waiting for the button on the monitor...");
  } else if (d.state === "paired") {
    say("paired");
  }
  if (d.state !== "paired") button("Cancel", "cancel");
  return li;
}
async function refresh() {
  const r = await fetch("/api/pairing");
  if (r.status === 401) { location.href = "/login"; return; }
  const body = await r.json();
  list.replaceChildren(...(body.devices.length ? body.devices.map(item)
    : [Object.assign(document.createElement("li"), {textContent: "No monitor wants to pair."})]));
}
refresh();
setInterval(refresh, 2000);
"""


def pairing_routes(gw: GatewayContext) -> list[Route]:
    @nurse_only(page=True)
    async def page(request: Request) -> Response:
        return HTMLResponse(_PAGE)

    async def script(request: Request) -> Response:
        return Response(_SCRIPT, media_type="text/javascript")

    @nurse_only()
    async def listing(request: Request) -> Response:
        return JSONResponse({"devices": gw.pairing.list()})

    @nurse_only(write=True)
    async def action(request: Request) -> Response:
        device = request.path_params["device"]
        what = request.path_params["action"]
        m = gw.pairing
        try:
            if what == "start":
                body = await m.start(device)
            elif what == "confirm":
                body = await m.confirm(device)
            elif what == "cancel":
                await m.cancel(device)
                body = {"device_id": device, "state": "cancelled"}
            else:
                return JSONResponse({"error": "unknown action"}, status_code=404)
        except PairingError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(body)

    return [
        Route("/pairing", page),
        Route("/pairing.js", script),
        Route("/api/pairing", listing),
        Route("/api/pairing/{device}/{action}", action, methods=["POST"]),
    ]
