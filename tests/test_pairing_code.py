"""Pairing by the code on the label, as a person would: `perimon provision --label` writes the
label, which carries the monitor's pairing secret and never its key; its QR code is read back
from the image (zbarimg, as a phone camera reads it); the link opens the gateway's /pair page;
after the login and one click the gateway and the monitor agree on a new key by a key exchange
the secret authenticates, the monitor is enrolled with it and streams on the simulated radio.
A damaged, edited, foreign or older-version code, and a forged label (the right id, another
secret) are refused with a sentence that says why, and change nothing on either side."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from devtools.broker import free_port
from gateway.app import Gateway
from gateway.cli import main as cli_main
from gateway.cli.provision_label import write_label
from gateway.config import config_from_dict
from gateway.device.enrolment import Enrolment, enrolment_path
from gateway.web import pair_code, scan
from gateway.web.nurses import NurseAccounts
from simulators.fleet import DeviceSpec, Fleet
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.chain import gateway_config
from tests.harness.console import gateway_toml
from tests.harness.paths import ARTIFACTS
from tests.harness.wait import eventually_async
from tests.harness.web import PASSWORD, USER, api, login, opener

PHONE = {"width": 390, "height": 844}


def _console(msg, errors: list) -> None:
    # the 401 before the login is expected: the page offers the login on it
    if msg.type == "error" and "Failed to load resource" not in msg.text:
        errors.append(msg.text)


def _scan(image: Path) -> str:
    """What a phone's camera reads from the label."""
    zbarimg = shutil.which("zbarimg")
    assert zbarimg, "zbarimg: run scripts/bootstrap.sh --system (zbar-tools)"
    res = subprocess.run([zbarimg, "--raw", "-q", str(image)], capture_output=True, text=True,
                         timeout=30, check=True)  # fmt: skip
    return res.stdout.strip()


@pytest.mark.system
def test_provision_writes_a_label_with_the_pairing_secret_not_the_key(tmp_path, device_on_pty):
    port, settings, proc = device_on_pty("fetal_heart")
    label = tmp_path / "fh-41.png"
    rc = cli_main(["provision", port, "--id", "fh-41", "--config", gateway_toml(tmp_path),
                   "--label", str(label), "--pair-url", "http://gw-home.local:8080/pair"])  # fmt: skip
    assert rc == 0
    proc.wait(10)
    link = _scan(label)
    assert link.startswith("http://gw-home.local:8080/pair#c=")
    scanned = pair_code.decode(link)
    assert (scanned.device_id, scanned.device_type) == ("fh-41", "fetal_heart")
    stored = json.loads(settings.read_text())
    assert scanned.secret.hex() == stored["pair_secret"] and len(scanned.secret) == 16
    key = bytes.fromhex(stored["key"])
    assert scanned.secret not in key and stored["key"] not in link  # the key is not printed
    # the SVG label: the whole label, the same code
    svg = write_label(tmp_path / "fh-41.svg", "fh-41", "fetal_heart", scanned.secret)
    text = svg.read_text()
    assert text.startswith("<?xml") and "fh-41" in text and "fetal-heart monitor" in text
    assert cli_main(["provision", port, "--id", "fh-41", "--label", "x.pdf"]) == 2


def _old_label(device_id: str, key: bytes) -> str:
    """A label of version 1, which carried the monitor's key."""
    body = bytes((1, 1, len(device_id))) + device_id.encode() + key
    check = hashlib.sha256(pair_code.LABEL_CHECK + body).digest()[:4]
    return base64.urlsafe_b64encode(body + check).rstrip(b"=").decode()


@pytest.mark.unit
def test_codes_that_are_not_a_monitors_are_refused_with_a_reason():
    code = pair_code.encode("fh-07", "fetal_heart", bytes(range(16)))
    assert pair_code.decode(pair_code.pair_link(code)).device_id == "fh-07"
    assert pair_code.decode(code).secret == bytes(range(16))  # the code alone, or the link
    with pytest.raises(ValueError):
        pair_code.encode("fh-07", "fetal_heart", bytes(32))  # a key does not go on a label
    with pytest.raises(pair_code.LabelCodeError, match="older version of perimon.*button"):
        pair_code.decode(pair_code.pair_link(_old_label("fh-07", bytes(range(32)))))
    edited = code[:10] + ("A" if code[10] != "A" else "B") + code[11:]
    with pytest.raises(pair_code.LabelCodeError, match="changed or misread"):
        pair_code.decode(edited)
    for foreign in ("https://example.org/", "WIFI:S:home;T:WPA;P:secret;;", "c=!!", "", code[:20]):
        with pytest.raises(pair_code.LabelCodeError, match="not the code of a perimon monitor"):
            pair_code.decode(foreign)


@pytest.mark.system
def test_scan_the_label_confirm_and_the_monitor_streams(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "LINK_WAIT_S", 9.0)  # under the client's 10 s
    radio = f"127.0.0.1:{free_port()}"
    cfg = config_from_dict(gateway_config(tmp_path, "gw-home", radio=radio, web=True))  # no broker
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    specs = [DeviceSpec("fh-new", "fetal_heart", seed=3, enrolled=False),
             DeviceSpec("fh-other", "fetal_heart", seed=4, enrolled=False)]  # fmt: skip
    book = Enrolment(enrolment_path(cfg))

    async def main():
        stop = asyncio.Event()
        gw = Gateway(cfg)
        task = asyncio.create_task(gw.run(stop))
        await asyncio.wait_for(gw.ready.wait(), 10)
        allowed: set[str] = set()  # as the BLE radio's allowlist (gateway/transports/ble.py)

        def allow(dev_id: str) -> bool:
            added = dev_id not in allowed
            allowed.add(dev_id)
            return added

        gw.transport.allow, gw.transport.disallow = allow, allowed.discard
        fleet = Fleet(specs, radio, tmp_path / "devices", gateway=cfg)
        dev, other = fleet.devices
        await fleet.start()
        call = asyncio.to_thread

        async def _phone(link: str) -> dict:
            seen: dict = {"errors": []}
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page(viewport=PHONE)
                    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
                    page.on("console", lambda m: _console(m, seen["errors"]))
                    await page.goto(link)
                    login = page.locator("#login")
                    await login.wait_for(state="visible", timeout=10_000)
                    seen["before"] = await page.locator("#say").inner_text()
                    await login.click()
                    await page.fill("input[name=user]", USER)
                    await page.fill("input[name=password]", PASSWORD)
                    await page.click("button[type=submit]")
                    add = page.locator("#add")
                    await add.wait_for(state="visible", timeout=10_000)
                    seen["address_after_login"] = page.url
                    seen["ask"] = await page.locator("#say").inner_text()
                    seen["enrolled_before_tap"] = book.get("fh-new") is not None
                    await add.click()
                    done = page.locator("#say", has_text="is paired")  # the CSP forbids eval
                    await done.wait_for(timeout=20_000)
                    seen["done"] = await page.locator("#say").inner_text()
                    seen["scroll_width"] = await page.evaluate("document.body.scrollWidth")
                    ARTIFACTS.mkdir(exist_ok=True)
                    await page.screenshot(path=str(ARTIFACTS / "pair-by-label.png"))
                finally:
                    await browser.close()
            return seen

        try:
            await eventually_async(lambda: "fh-new" in gw.unknown, 10, "never refused")
            # the label, printed when the monitor was provisioned, read by the phone's camera
            label = write_label(tmp_path / "label.png", "fh-new", "fetal_heart", dev.pair_secret)
            link = _scan(label)
            url = gw.web.url
            parts = urllib.parse.urlsplit(link)
            assert parts.path == "/pair" and parts.fragment.startswith("c=")
            code = urllib.parse.parse_qs(parts.fragment)["c"][0]

            # a damaged or edited code, or another kind of code: refused, with the reason
            nurse, _ = opener()
            status, body = await call(api, nurse, url, "/api/pair/check", {"code": code})
            assert status == 401  # not logged in: nothing is said about the code
            await call(login, nurse, url)
            edited = code[:12] + ("A" if code[12] != "A" else "B") + code[13:]
            for bad, why in ((edited, "changed or misread"),
                             ("https://example.org/menu", "not the code of a perimon monitor"),
                             (_old_label("fh-new", dev.key), "older version")):  # fmt: skip
                status, body = await call(api, nurse, url, "/api/pair/add", {"code": bad})
                assert status == 400 and why in body["error"], body
            status, _ = await call(api, nurse, url, "/api/pair/add", {"code": code}, False)
            assert status == 403  # no CSRF header
            assert book.devices() == {}

            # the phone opens the link (the gateway's address instead of perimon.local), logs
            # in, comes back, reads the monitor's name and taps Add: paired, readings come in
            t0 = time.monotonic()
            shown = await _phone(url + parts.path + "#" + parts.fragment)
            print(f"paired by label in a browser in {time.monotonic() - t0:.1f} s")
            assert (
                shown["before"] == "Log in to the gateway first; the monitor is added right after."
            )
            assert shown["address_after_login"] == url + "/pair"  # the code left the address bar
            assert shown["ask"].startswith("Add the fetal-heart monitor fh-new?"), shown
            assert shown["enrolled_before_tap"] is False
            assert shown["done"] == "fh-new is paired: its readings are coming in.", shown
            assert shown["errors"] == [] and shown["scroll_width"] <= PHONE["width"]
            # a new key, agreed by the exchange: neither the factory key nor the printed secret
            key = book.get("fh-new").key
            assert key != dev.key and dev.pair_secret not in key and set(allowed) == {"fh-new"}
            assert json.loads((dev.dir / "device.json").read_text())["key"] == key.hex()
            session = gw.sessions["fh-new"]
            await eventually_async(
                lambda: session.state.stats.frames > 50, 15, "no frames accepted"
            )
            assert session.auth.established and session.auth.device_key == key
            assert session.state.stats.auth_failed == 0
            status, body = await call(api, nurse, url, "/api/pair/check", {"code": code})
            assert status == 200 and body["state"] == "paired"  # scanning again changes nothing
            status, body = await call(api, nurse, url, "/api/pair/add", {"code": code})
            assert status == 200 and "already paired" in body["message"]
            assert book.get("fh-new").key == key

            # a forged label: the right id, another secret. The monitor finds the gateway's
            # commitment does not verify and ends the exchange: no key changes on either side
            forged = pair_code.encode("fh-other", "fetal_heart", bytes(16))
            status, body = await call(api, nurse, url, "/api/pair/add", {"code": forged})
            assert status == 409 and "does not hold this label's secret" in body["error"], body
            assert "Nothing was changed" in body["error"] and book.get("fh-other") is None
            assert allowed == {"fh-new"}  # the allowlist entry for the attempt is taken back
            assert json.loads((other.dir / "device.json").read_text())["key"] == other.key.hex()
            await eventually_async(lambda: other.console_lines("PAIR closed commitment mismatch"), 5,
                         "the monitor did not end the exchange")  # fmt: skip
            s_other = gw.sessions.get("fh-other")
            assert s_other is None or not s_other.auth.established
            assert book.get("fh-new").key == key and session.auth.established
        finally:
            await fleet.stop()
            stop.set()
            await task

    asyncio.run(main())
