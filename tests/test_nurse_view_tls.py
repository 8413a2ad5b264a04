"""The nurse view as scripts/install-pi.sh sets it up, with someone listening on the home or
ward network between the nurse's tablet and the gateway: does the password cross in clear?

The installer's two steps run here as they run on a Pi (scripts/make-web-cert.sh,
scripts/first-config.sh on docs/perimon.example.toml); the nurse logs in through a relay that
records every byte she sends. tests/test_install.py runs the whole installer in a chroot."""

from __future__ import annotations

import asyncio
import hashlib
import http.cookiejar
import ssl
import subprocess
import urllib.request
from types import SimpleNamespace

import pytest

from gateway.cli import main as cli_main
from gateway.config import load_config
from gateway.state.history import History
from gateway.web.nurses import NurseAccounts
from gateway.web.pair_code import decode, short_fingerprint
from gateway.web.server import WebServer
from gateway.web.tls import fingerprint
from tests.harness.paths import DOCS, REPO

pytestmark = pytest.mark.system

USER, PASSWORD = "amy", "her long password here"


class FakeGateway:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.sessions: dict = {}
        self.history = History(None)


async def _relay(target_port: int, heard: list[bytes]) -> asyncio.AbstractServer:
    """A listener on the path: passes bytes both ways, keeps what the client sends."""

    async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, keep: bool) -> None:
        try:
            while data := await r.read(65536):
                if keep:
                    heard.append(data)
                w.write(data)
                await w.drain()
        except OSError:
            pass  # either side went away: so does the relay
        finally:
            w.close()

    async def serve(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pump(cr, sw, True), pump(sr, cw, False), return_exceptions=True)

    return await asyncio.start_server(serve, "127.0.0.1", 0)


def _installed(tmp_path):
    """The certificate and the configuration, made by the installer's own scripts."""
    web = tmp_path / "data" / "web"
    out = subprocess.run(["sh", str(REPO / "scripts" / "make-web-cert.sh"), str(web), "gw-home"],
                         check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    conf = tmp_path / "perimon.toml"
    conf.write_text(subprocess.run(
        ["sh", str(REPO / "scripts" / "first-config.sh"), str(DOCS / "perimon.example.toml"),
         str(tmp_path / "data"), str(web)], check=True, capture_output=True, text=True).stdout)  # fmt: skip
    return conf, out


def test_the_installed_nurse_view_keeps_the_password_off_the_network(tmp_path, monkeypatch,
                                                                     capsys):  # fmt: skip
    conf, printed = _installed(tmp_path)
    cfg = load_config(conf)
    # Before: listen = "0.0.0.0:8080", no certificate: the login crossed the network in clear.
    assert cfg.web.enabled and cfg.web.listen == "0.0.0.0:8443" and cfg.web.cert_file
    cert = cfg.base_dir / cfg.web.cert_file
    assert (cfg.base_dir / cfg.web.key_file).stat().st_mode & 0o077 == 0
    NurseAccounts(cfg.data_dir / "nurses.json").add(USER, PASSWORD)
    heard: list[bytes] = []
    # the tablet trusts the certificate the nurse checked by its fingerprint
    ctx = ssl.create_default_context(cafile=str(cert))
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                         urllib.request.HTTPCookieProcessor(jar))  # fmt: skip

    def log_in(url: str):
        data = f"user={USER}&password={PASSWORD.replace(' ', '+')}".encode()
        with opener.open(url + "/login", data=data, timeout=10) as r:
            return r.url, r.headers, r.fp.raw._sock.getpeercert(binary_form=True)

    async def main():
        server = WebServer(FakeGateway(cfg), listen="127.0.0.1:0")  # the port: any free one
        await server.start()
        relay = await _relay(server.port, heard)
        try:
            url = f"https://127.0.0.1:{relay.sockets[0].getsockname()[1]}"
            return await asyncio.to_thread(log_in, url)
        finally:
            relay.close()
            await server.stop()

    landed, headers, der = asyncio.run(main())
    assert landed.endswith("/") and "login" not in landed  # logged in
    sent = b"".join(heard)
    assert sent[:1] == b"\x16"  # a TLS handshake, then only records
    assert PASSWORD.replace(" ", "+").encode() not in sent and b"password" not in sent
    assert headers.get("Strict-Transport-Security", "").startswith("max-age=")
    assert all(c.secure for c in jar) and {c.name for c in jar} >= {"perimon_session"}
    # the fingerprint the installer printed is the certificate the tablet was served
    served = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert printed == served == fingerprint(cert)
    # ...and the nurse is shown it when her account is made
    monkeypatch.setattr("sys.stdin", SimpleNamespace(readline=lambda: "another password!\n"))
    assert cli_main(["nurse", "-c", str(conf), "add", "bea", "--password-stdin"]) == 0
    assert served in capsys.readouterr().out


def test_a_label_carries_the_start_of_the_fingerprint(tmp_path):
    from gateway.cli.provision_label import label_link, write_label

    conf, printed = _installed(tmp_path)
    link = label_link("fh-07", "fetal_heart", bytes(16), fingerprint=printed)
    assert link.startswith("https://perimon.local:8443/pair#c=")
    assert link.endswith("&fp=" + short_fingerprint(printed).replace(":", ""))
    assert decode(link).device_id == "fh-07"  # the code still reads
    svg = write_label(tmp_path / "l.svg", "fh-07", "fetal_heart", bytes(16),
                      fingerprint=printed).read_text()  # fmt: skip
    assert short_fingerprint(printed) in svg
