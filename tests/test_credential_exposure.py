"""Credentials an attacker could take: the nurse accounts file off a gateway's disk (each guess
must cost what OWASP asks of scrypt), and the gateway's MQTT password off the network between
the gateway and the broker (the documented configuration must not send it in clear)."""

from __future__ import annotations

import json
import socket
import subprocess
import tomllib

import pytest

from gateway.config import config_from_dict
from gateway.publish.mqtt import make_client
from gateway.web import nurses
from gateway.web.nurses import NurseAccounts, Scrypt, cost_of, hash_password
from tests.harness.paths import DOCS

# OWASP Password Storage Cheat Sheet, scrypt: N=2^17 (128 MiB), r=8, p=1, or a line of its
# table of equal cost.
OWASP_SCRYPT = {(2**17, 8, 1), (2**16, 8, 2), (2**15, 8, 3), (2**14, 8, 5), (2**13, 8, 10)}
PASSWORD = "a long enough password"


@pytest.mark.unit
def test_a_stolen_accounts_file_costs_owasp_scrypt_per_guess(tmp_path):
    accounts = NurseAccounts(tmp_path / "nurses.json")
    accounts.add("amy", PASSWORD)
    stolen = json.loads((tmp_path / "nurses.json").read_text())
    # Before: N=2^14, r=8, p=1, an eighth of OWASP's cost per guess.
    assert tuple(cost_of(stolen["amy"]["password"]) or ()) in OWASP_SCRYPT
    assert nurses.SCRYPT in OWASP_SCRYPT


@pytest.mark.unit
def test_a_hash_made_at_an_older_cost_is_made_again_at_the_next_login(tmp_path):
    path = tmp_path / "nurses.json"
    old = hash_password(PASSWORD, Scrypt(2**14, 8, 1))
    path.write_text(json.dumps({"amy": {"password": old, "set_at": 1}}))
    accounts = NurseAccounts(path)
    stamp = accounts.stamp("amy")
    assert not accounts.check("amy", "a wrong password!")
    assert json.loads(path.read_text())["amy"]["password"] == old  # only the right one
    assert accounts.check("amy", PASSWORD)
    rec = json.loads(path.read_text())["amy"]
    assert cost_of(rec["password"]) == nurses.SCRYPT and rec["set_at"] == 1
    assert accounts.stamp("amy") == stamp  # her logins stay valid
    assert path.stat().st_mode & 0o077 == 0
    assert accounts.check("amy", PASSWORD)


@pytest.mark.system
def test_the_example_config_does_not_send_the_mqtt_password_in_clear(tmp_path):
    """A listener on the network between the gateway and the broker: what does the gateway,
    configured as docs/perimon.example.toml shows, send it first?"""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=hospital CA", "-keyout", str(tmp_path / "k.pem"),
         "-out", str(tmp_path / "ca.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    raw = tomllib.loads((DOCS / "perimon.example.toml").read_text())
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    secret = "the gateway's broker password"
    raw["mqtt"] |= {"host": "127.0.0.1", "port": listener.getsockname()[1],
                    "username": "gw-7f3a", "password": secret}  # fmt: skip
    if raw["mqtt"].get("ca_file"):
        raw["mqtt"]["ca_file"] = str(tmp_path / "ca.pem")  # where this machine keeps it
    cfg = config_from_dict(raw, base_dir=tmp_path)
    client = make_client(cfg.mqtt, "gw-7f3a")
    client.connect_async(cfg.mqtt.host, cfg.mqtt.port)
    client.loop_start()
    try:
        conn, _ = listener.accept()
        conn.settimeout(10)
        first = conn.recv(4096)
        conn.close()
    finally:
        client.loop_stop()
        listener.close()
    # Before: tls = false in the example, and the CONNECT (0x10) carried the password.
    assert secret.encode() not in first
    assert first[:1] == b"\x16", first[:16]  # a TLS handshake
