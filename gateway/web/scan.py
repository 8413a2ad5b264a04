"""Pairing by the code on the label: the phone's camera opens /pair#c=..., the page names the
monitor, and one tap pairs it (gateway/web/pair_code.py; docs/home.md, "By the code on the
label").

The tap starts a pairing by label (gateway/device/pairing.py): the gateway takes the monitor's next
link, agrees on a new key with it by Diffie-Hellman authenticated by the label's pairing
secret, and enrols it with that key once both sides have confirmed it. Nothing is enrolled
before that, and a monitor that does not hold the secret changes nothing on either side: no key,
and the radio's allowlist entry added for the attempt is taken back. A monitor already
connected with its enrolled key is left alone; one connected that does not (yet) prove it is
disconnected for the attempt and reconnects right after it. Login required, as for every other
page of the gateway; writes need the X-Perimon header (CSRF).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from gateway.device.enrolment import EnrolmentError
from gateway.device.pairing import LABEL_LINK_WAIT_S, PairingError
from gateway.web.auth import nurse_only
from gateway.web.pair_code import LabelCode, LabelCodeError, decode

if TYPE_CHECKING:
    from gateway.context import GatewayContext

log = logging.getLogger(__name__)

LINK_WAIT_S = LABEL_LINK_WAIT_S  # for the monitor to connect for pairing, then with its new key
_KIND = {"fetal_heart": "fetal-heart monitor", "jaundice": "jaundice meter"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>perimon: add a monitor</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body><main class="simple">
<h1>Add a monitor</h1>
<p id="say">Reading the code...</p>
<p><button id="add" hidden>Add this monitor</button></p>
<p><a id="login" href="/login?next=/pair" hidden>Log in to the gateway</a></p>
<p><a href="/pairing">Pair with the button instead</a></p>
</main><script src="/pair.js"></script></body></html>
"""

_SCRIPT = """"use strict";
const say = (t) => { document.getElementById("say").textContent = t; };
const addButton = document.getElementById("add");
const KEPT = "perimon-pair-code";
// The code arrives after '#': the browser does not send it to the gateway by itself. Keep it for
// this tab only (across the login page), and take it out of the address bar.
const params = new URLSearchParams(location.hash.slice(1) || location.search.slice(1));
if (params.get("c")) {
  sessionStorage.setItem(KEPT, params.get("c"));
  history.replaceState(null, "", "/pair");
}
const code = sessionStorage.getItem(KEPT);
async function post(path) {
  const r = await fetch(path, {method: "POST", headers: {"X-Perimon": "1",
    "Content-Type": "application/json"}, body: JSON.stringify({code})});
  let body = {};
  try { body = await r.json(); } catch (e) { body = {error: "the gateway did not answer"}; }
  return [r.status, body];
}
async function check() {
  if (!code) { say("Open the phone's camera on the code on the monitor's label."); return; }
  const [status, body] = await post("/api/pair/check");
  if (status === 401) {
    say("Log in to the gateway first; the monitor is added right after.");
    document.getElementById("login").hidden = false;
    return;
  }
  if (status !== 200) { say(body.error); sessionStorage.removeItem(KEPT); return; }
  if (body.state === "paired") { say(body.message); sessionStorage.removeItem(KEPT); return; }
  say(body.message);
  addButton.hidden = false;
}
addButton.onclick = async () => {
  addButton.hidden = true;
  say("Adding it: keep the monitor switched on, near the gateway...");
  const [status, body] = await post("/api/pair/add");
  say(status === 200 ? body.message : body.error);
  if (status !== 401) sessionStorage.removeItem(KEPT);
};
check();
"""


def scan_routes(gw: GatewayContext) -> list[Route]:
    def fail(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    async def scanned(request: Request) -> tuple[LabelCode, str] | Response:
        """The label in the request and its state (see state_of), or the refusal to send."""
        try:
            body = json.loads(await request.body())
            label = decode(str(body["code"]))
        except LabelCodeError as exc:
            return fail(400, str(exc))
        except (ValueError, KeyError, TypeError):
            return fail(400, "This is not the code of a perimon monitor.")
        state = state_of(label)
        return state if isinstance(state, Response) else (label, state)

    def state_of(label: LabelCode) -> str | Response:
        """'new', 'again' (enrolled, but not connected with its key now) or 'same' (enrolled
        and connected with its key: nothing to do)."""
        try:
            entry = gw.enrolment.get(label.device_id)
        except EnrolmentError as exc:
            log.error("pairing by label: %s", exc)
            return fail(500, "The gateway cannot read its list of monitors; see its log.")
        if entry is None:
            return "new"
        return "same" if _connected(gw, label.device_id, entry.key) else "again"

    async def page(request: Request) -> Response:
        return HTMLResponse(_PAGE)  # open: it offers the login when the check says 401

    async def script(request: Request) -> Response:
        return Response(_SCRIPT, media_type="text/javascript")

    @nurse_only(write=True)
    async def check(request: Request) -> Response:
        got = await scanned(request)
        if isinstance(got, Response):
            return got
        label, state = got
        kind = _KIND[label.device_type]
        message = {
            "same": f"{label.device_id} ({kind}) is already paired with this gateway.",
            "new": f"Add the {kind} {label.device_id}? Check that the label of the monitor "
            "in your hand says the same, and that it is switched on.",
            "again": f"Pair the {kind} {label.device_id} again? This gateway knows it, but it "
            "is not connected with its key now. Check that it is switched on.",
        }[state]
        return JSONResponse({"device_id": label.device_id, "device_type": label.device_type,
                             "state": "paired" if state == "same" else "new",
                             "message": message})  # fmt: skip

    @nurse_only(write=True)
    async def add(request: Request) -> Response:
        got = await scanned(request)
        if isinstance(got, Response):
            return got
        label, state = got
        dev_id = label.device_id
        if state == "same":
            return JSONResponse({"device_id": dev_id, "state": "paired", "message":
                                 f"{dev_id} is already paired with this gateway."})  # fmt: skip
        transport = getattr(gw, "transport", None)
        allow = getattr(transport, "allow", None)  # a radio allowlist (BLE)
        # else a listed-only radio would never connect it; taken back if the pairing fails
        added = bool(allow(dev_id)) if allow is not None else False
        log.info("%s: pairing by its label", dev_id)
        paired = False
        try:
            await gw.pairing.pair_by_label(dev_id, label.device_type, label.secret,
                                                LINK_WAIT_S)  # fmt: skip
            paired = True
        except PairingError as exc:
            log.warning("%s: pairing by its label failed: %s", dev_id, exc)
            return fail(
                409,
                f"{dev_id} was not paired: {exc}. Nothing was changed. Is it switched on, near "
                "the gateway, and is this its own label?",
            )
        except (EnrolmentError, OSError) as exc:
            log.error("pairing by label: %s", exc)
            return fail(500, "The gateway could not save the monitor; see its log.")
        finally:
            if added and not paired and transport is not None:
                transport.disallow(dev_id)
        entry = gw.enrolment.get(dev_id)
        streaming = entry is not None and await _comes_back(gw, dev_id, entry.key, LINK_WAIT_S)
        message = (
            f"{dev_id} is paired: its readings are coming in."
            if streaming
            else f"{dev_id} is paired; it connects with its new key when it is switched on."
        )
        return JSONResponse({"device_id": dev_id, "state": "paired", "message": message})

    return [
        Route("/pair", page),
        Route("/pair.js", script),
        Route("/api/pair/check", check, methods=["POST"]),
        Route("/api/pair/add", add, methods=["POST"]),
    ]


def _connected(gw: GatewayContext, device_id: str, key: bytes) -> bool:
    """The monitor is connected in a session authenticated with `key`."""
    session = gw.sessions.get(device_id)
    if session is None or session.auth is None:
        return False
    return session.auth.device_key == key and session.auth.established and session.link is not None


async def _comes_back(gw: GatewayContext, device_id: str, key: bytes, wait_s: float) -> bool:
    """The monitor reconnected and answered the session challenge with its new key."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if _connected(gw, device_id, key):
            return True
        await asyncio.sleep(0.2)
    return False
