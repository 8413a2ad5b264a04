"""`perimon provision` against the real firmware's console under the MicroPython Unix port,
over a pseudo-terminal as over a USB serial port; the provisioned device then runs signed."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from gateway.cli import main as cli_main
from gateway.device.enrolment import Enrolment
from simulators.fleet import FIRMWARE_DIR, micropython_binary
from tests.harness.console import gateway_toml

pytestmark = pytest.mark.system


def test_provision_writes_id_key_gateway_and_calibration_and_enrols(tmp_path, device_on_pty):
    from simulators.tcb_device import random_factory_calibration

    cal = random_factory_calibration(4).to_dict()
    (tmp_path / "cal.json").write_text(json.dumps(cal))
    port, settings, proc = device_on_pty("jaundice", {"radio": "127.0.0.1:9"})
    rc = cli_main(["provision", port, "--id", "tcb-07", "--calibration",
                   str(tmp_path / "cal.json"), "--config", gateway_toml(tmp_path)])  # fmt: skip
    assert rc == 0
    assert proc.wait(10) == 0  # the console ends after QUIT
    stored = json.loads(settings.read_text())
    assert stored["id"] == "tcb-07" and stored["gateway"] == "gw-ward3"
    assert stored["calibration"] == cal and stored["radio"] == "127.0.0.1:9"  # kept
    entry = Enrolment(tmp_path / "gw" / "enrolment.json").get("tcb-07")
    assert entry is not None and entry.key.hex() == stored["key"] and len(entry.key) == 32
    secret = bytes.fromhex(stored["pair_secret"])  # for the label: 128 bits, not the key
    assert len(secret) == 16 and secret not in entry.key
    assert (tmp_path / "gw" / "enrolment.json").stat().st_mode & 0o077 == 0  # owner only


def test_two_devices_get_different_keys(tmp_path, device_on_pty):
    keys = []
    for dev in ("fh-21", "fh-22"):
        port, settings, proc = device_on_pty("fetal_heart")
        assert cli_main(["provision", port, "--id", dev, "--config", gateway_toml(tmp_path)]) == 0
        proc.wait(10)
        keys.append(json.loads(settings.read_text())["key"])
        settings.unlink()
    book = Enrolment(tmp_path / "gw" / "enrolment.json").devices()
    assert set(book) == {"fh-21", "fh-22"} and keys[0] != keys[1]
    assert [book["fh-21"].key.hex(), book["fh-22"].key.hex()] == keys


def test_console_never_reads_the_secrets_back_and_refuses_bad_input(tmp_path):
    path = tmp_path / "d.json"
    script = "\n".join([
        "HELLO", "SET key 1234", "SET key " + "ab" * 32, "SET id bad/id", "SET id fh-30",
        "COMMIT", "SET gateway gw-1", "SET colour red", "COMMIT", "GET",
        "SET pair_secret " + "ab" * 32, "SET pair_secret " + "zz" * 16,
        "SET pair_secret " + "CD" * 16, "GET", "QUIT", "",
    ])  # fmt: skip
    res = subprocess.run(
        [micropython_binary(), str(FIRMWARE_DIR / "fetal_heart" / "main.py"), str(path),
         "provision"], input=script, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    lines = res.stdout.splitlines()
    assert lines[0] == "OK perimon-provision 1 fetal_heart 1.0.0"
    assert lines[1].startswith("ERR key") and lines[2] == "OK" and lines[3] == "ERR bad id"
    assert lines[5] == "ERR missing gateway" and lines[7].startswith("ERR unknown field")
    assert lines[8] == "OK" and "ab" * 32 not in lines[9]
    assert json.loads(lines[9][3:]) == {"id": "fh-30", "gateway": "gw-1", "key_set": True,
                                        "pair_secret_set": False}  # fmt: skip
    assert lines[10] == lines[11] == "ERR pair_secret must be 32 hex digits"
    assert lines[12] == "OK" and "cd" * 16 not in lines[13].lower()
    assert json.loads(lines[13][3:])["pair_secret_set"] is True
    assert json.loads(path.read_text())["key"] == "ab" * 32
    assert lines[14] == "OK bye" and len(lines) == 15


def test_a_device_gone_with_its_goodbye_is_not_an_error(tmp_path):
    """The device leaves the console as QUIT asks (a board restarts, its USB port goes away):
    here it exits at once, closing its end of the pty. A full suite run had the goodbye lost
    with the port: pyserial raised 'device reports readiness to read but returned no data' and
    `perimon provision` failed after everything had been stored and read back."""
    import serial

    from gateway.cli.provision import Console

    master, slave = os.openpty()
    port = serial.Serial(os.ttyname(slave), timeout=2.0)
    console = Console(port, 2.0)
    os.close(master)  # the device gone before its answer
    try:
        console.quit()  # returns; nothing to raise
    finally:
        port.close()
        os.close(slave)


def test_a_device_gone_between_quit_and_its_flush_is_not_an_error(tmp_path):
    """The device reads QUIT and leaves before the host has drained its port: pyserial's flush
    then raises the tty's own error (termios.error, EIO), not a SerialException. Seen once in
    ten runs of the calibration system test beside a CPU-bound process: `perimon provision`
    failed after the device had stored and read back everything."""
    import serial

    from gateway.cli.provision import Console

    master, slave = os.openpty()

    class DeviceLeavesOnQuit(serial.Serial):
        def write(self, data: bytes) -> int | None:
            n = super().write(data)
            os.close(master)  # it has the line; it leaves before the flush
            return n

    port = DeviceLeavesOnQuit(os.ttyname(slave), timeout=2.0)
    try:
        Console(port, 2.0).quit()  # returns; nothing to raise
    finally:
        port.close()
        os.close(slave)


def test_a_device_unplugged_mid_console_is_a_one_line_error():
    import serial

    from gateway.cli import UserError
    from gateway.cli.provision import Console

    master, slave = os.openpty()
    port = serial.Serial(os.ttyname(slave), timeout=2.0)
    console = Console(port, 2.0)
    os.close(master)  # unplugged
    try:
        with pytest.raises(UserError, match="the device went away at 'HELLO'"):
            console.ask("HELLO")
    finally:
        port.close()
        os.close(slave)


def test_a_port_without_a_device_is_a_one_line_error(tmp_path, capsys):
    master, slave = os.openpty()
    try:
        rc = cli_main(["provision", os.ttyname(slave), "--id", "fh-01", "--timeout", "0.3",
                       "--config", gateway_toml(tmp_path)])  # fmt: skip
    finally:
        os.close(master)
        os.close(slave)
    assert rc == 2
    assert "no answer from the device" in capsys.readouterr().err
    assert not (tmp_path / "gw" / "enrolment.json").exists()


def test_a_label_that_cannot_be_written_stops_before_the_device_keeps_anything(
    tmp_path, device_on_pty, capsys
):
    """The label is the only copy of the pairing secret: a label path that cannot be written
    (a missing directory) is a one-line error before COMMIT, the device keeps nothing and
    nothing is enrolled; a label that can be written is readable by its owner only."""
    port, settings, proc = device_on_pty("fetal_heart")
    missing = tmp_path / "no-such-dir" / "fh-42.svg"
    rc = cli_main(["provision", port, "--id", "fh-42", "--config", gateway_toml(tmp_path),
                   "--label", str(missing)])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot write the label" in err and "Traceback" not in err
    assert not settings.exists() or "key" not in json.loads(settings.read_text())
    assert not (tmp_path / "gw" / "enrolment.json").exists()
    label = tmp_path / "fh-42.svg"
    rc = cli_main(["provision", port, "--id", "fh-42", "--config", gateway_toml(tmp_path),
                   "--label", str(label)])  # fmt: skip
    assert rc == 0
    assert proc.wait(10) == 0
    assert "fh-42" in label.read_text() and label.stat().st_mode & 0o077 == 0
    assert len(json.loads(settings.read_text())["pair_secret"]) == 32
