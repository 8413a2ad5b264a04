"""`perimon provision PORT`: enrol a device over its USB serial port.

Generates the device's secret key and its pairing secret, writes id, key, pairing secret,
gateway and (jaundice meters) the factory calibration into the device's storage through its
provisioning console, then adds the device and its key to the gateway's enrolment list. The
key never leaves this machine otherwise. The pairing secret goes on the pairing label
(`--label`, gateway/cli/provision_label.py): a home gateway that a phone opens the label on
pairs the monitor by a key exchange that the secret authenticates (docs/home.md); the secret is
not a key and is not kept here.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from gateway.cli import Subparsers, UserError
from gateway.device.enrolment import DEVICE_ID_RE
from gateway.protocol import PAIR_SECRET_LEN

if TYPE_CHECKING:
    import serial

    from gateway.device.enrolment import Enrolment


def register(sub: Subparsers) -> None:
    s = sub.add_parser("provision", help="enrol a device over USB serial (id, key, calibration)")
    s.add_argument("port", metavar="PORT", help="the device's serial port, e.g. /dev/ttyACM0")
    s.add_argument("--id", required=True, help="opaque device id (no patient data), e.g. fh-07")
    s.add_argument("--gateway", help="the gateway it belongs to (default: the config's id)")
    s.add_argument("--calibration", help="factory calibration JSON (jaundice meters)")
    s.add_argument("--tcb-calibrate", metavar="CERTIFICATE",
                   help="jaundice meters: run the factory calibration on the phantom set this "
                        "certificate (JSON) describes (docs/jaundice.md)")  # fmt: skip
    s.add_argument("--config", "-c", help="the gateway's TOML config (its enrolment list)")
    s.add_argument("--enrolment", help="enrolment list file (overrides the config)")
    s.add_argument("--baud", type=int, default=115200)
    s.add_argument("--timeout", type=float, default=5.0, help="seconds to wait per reply")
    s.add_argument("--label", metavar="FILE",
                   help="write the monitor's pairing label: its QR code opens the home "
                        "gateway's pairing page (.svg: the label; .png: the code alone)")  # fmt: skip
    s.add_argument("--pair-url", default=None,
                   help="the home gateway's pairing page the label links to "
                        "(default https://perimon.local:8443/pair)")  # fmt: skip
    s.set_defaults(func=cmd_provision)


def _port_errors() -> tuple[type[BaseException], ...]:
    """What a serial port raises when its device has gone: pyserial's own error, and from its
    flush the tty's (termios.error, EIO) on POSIX."""
    import serial

    if sys.platform == "win32":
        return (serial.SerialException, OSError)
    import termios

    return (serial.SerialException, OSError, termios.error)


class Console:
    """The device's line protocol: one command, one reply line."""

    def __init__(self, port: serial.Serial, timeout_s: float) -> None:
        self.port = port
        self.port.timeout = timeout_s

    def ask(self, line: str) -> str:
        try:
            self.port.write((line + "\n").encode())
            self.port.flush()
            reply = self.port.readline().decode(errors="replace").strip()
        except _port_errors() as exc:  # unplugged: a one-line error, not a traceback
            step = " ".join(line.split(" ")[:2] if line.startswith("SET ") else line.split(" ")[:1])
            raise UserError(f"the device went away at {step!r}: {exc}") from None
        if not reply:
            raise UserError(f"no answer from the device to {line.split(' ')[0]!r}")
        return reply

    def quit(self) -> None:
        """End the console. The device leaves it at once (a board restarts into its normal
        mode, its USB port going away), so its goodbye may be lost with the port: not an
        error, everything before it was answered. pyserial's flush raises the tty's own
        error (termios.error: EIO) when the device is already gone."""
        try:
            self.port.write(b"QUIT\n")
            self.port.flush()
            self.port.readline()
        except _port_errors():
            pass

    def ok(self, line: str, what: str) -> str:
        reply = self.ask(line)
        if not reply.startswith("OK"):
            raise UserError(f"the device refused the {what}: {reply}")
        return reply[2:].strip()


def cmd_provision(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.device.enrolment import Enrolment, enrolment_path

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    gateway_id = args.gateway or cfg.gateway.id
    if args.config and args.gateway and args.gateway != cfg.gateway.id:
        raise UserError(f"--gateway {args.gateway} is not this config's gateway {cfg.gateway.id}")
    for what, value in (("--id", args.id), ("--gateway", gateway_id)):
        if not DEVICE_ID_RE.match(value):
            raise UserError(f"{what}: {value!r} must be 1-64 letters, digits, '-' or '_'")
    calibration: dict[str, Any] | None = None
    if args.calibration:
        try:
            calibration = json.loads(Path(args.calibration).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{args.calibration}: not a readable JSON file ({exc})") from None
        if not isinstance(calibration, dict):
            raise UserError(f"{args.calibration}: the calibration must be a JSON object")
    if args.tcb_calibrate:
        from gateway.cli.tcb_factory import load_certificate

        if calibration is not None:
            raise UserError("give --calibration or --tcb-calibrate, not both")
        load_certificate(args.tcb_calibrate)  # a bad file fails before the device is touched
    book = Enrolment(Path(args.enrolment) if args.enrolment else enrolment_path(cfg))
    if args.label and Path(args.label).suffix.lower() not in (".svg", ".png"):
        raise UserError(f"--label {args.label}: the label is written as .svg or .png")
    label_file: BinaryIO | None = None
    if args.label:
        from gateway.cli.provision_label import open_label

        # The label is the only copy of the pairing secret: make sure it can be written before
        # the device keeps a secret nobody could print.
        try:
            label_file = open_label(args.label)
        except OSError as exc:
            raise UserError(f"--label {args.label}: cannot write the label: {exc}") from None
    try:
        return _provision(args, gateway_id, calibration, book, label_file)
    finally:
        if label_file is not None and not label_file.closed:  # not provisioned: no label
            label_file.close()
            Path(args.label).unlink(missing_ok=True)


def _provision(args: argparse.Namespace, gateway_id: str, calibration: dict[str, Any] | None,
               book: Enrolment, label_file: BinaryIO | None) -> int:  # fmt: skip
    import serial

    from gateway.device.enrolment import EnrolmentError

    try:
        port = serial.Serial(args.port, args.baud, timeout=args.timeout)
    except (serial.SerialException, OSError) as exc:
        raise UserError(f"cannot open {args.port}: {exc}") from None
    with port:
        try:
            port.reset_input_buffer()
            con = Console(port, args.timeout)
        except _port_errors() as exc:
            raise UserError(f"{args.port}: the device went away: {exc}") from None
        hello = con.ok("HELLO", "greeting").split()
        if len(hello) < 3 or hello[0] != "perimon-provision":
            raise UserError(f"{args.port} is not a perimon device in provisioning mode")
        device_type = hello[2]
        if device_type not in ("fetal_heart", "jaundice"):
            raise UserError(f"unknown device type {device_type!r}")
        if device_type == "jaundice" and args.tcb_calibrate:
            from gateway.cli.tcb_factory import (
                factory_calibration,
                load_certificate,
                operator_ready,
            )

            cert = load_certificate(args.tcb_calibrate)
            calibration = factory_calibration(con, cert, operator_ready)
        if device_type == "jaundice" and calibration is None:
            raise UserError("a jaundice meter needs its factory calibration (--tcb-calibrate or "
                            "--calibration)")  # fmt: skip
        key = secrets.token_bytes(32)
        pair_secret = secrets.token_bytes(PAIR_SECRET_LEN)  # for the label only
        con.ok(f"SET id {args.id}", "device id")
        con.ok(f"SET gateway {gateway_id}", "gateway id")
        if calibration is not None:
            con.ok("SET calibration " + json.dumps(calibration, separators=(",", ":")),
                   "calibration")  # fmt: skip
        con.ok(f"SET key {key.hex()}", "key")
        con.ok(f"SET pair_secret {pair_secret.hex()}", "pairing secret")
        con.ok("COMMIT", "commit")
        stored = json.loads(con.ok("GET", "read-back") or "{}")
        if (
            stored.get("id") != args.id
            or not stored.get("key_set")
            or not stored.get("pair_secret_set")
        ):
            raise UserError(f"the device did not keep its settings: {stored}")
        con.quit()
    label_path = None
    if args.label:  # first: the label is the only copy of the pairing secret the device kept
        from gateway.cli.provision_label import write_label
        from gateway.config import load_config
        from gateway.web.pair_code import DEFAULT_PAIR_URL
        from gateway.web.tls import web_fingerprint

        url = args.pair_url or DEFAULT_PAIR_URL
        # the home gateway's nurse view certificate, when its config is given: on the label
        fp = web_fingerprint(load_config(args.config)) if args.config else None
        try:
            label_path = write_label(args.label, args.id, device_type, pair_secret, url,
                                     label_file, fp)  # fmt: skip
        except OSError as exc:
            raise UserError(f"--label {args.label}: the device is provisioned, but its label "
                            f"could not be written ({exc}): provision it again for a new "
                            "label") from None  # fmt: skip
    try:
        book.enrol(args.id, device_type, key)
    except (EnrolmentError, OSError) as exc:
        raise UserError(f"the device is provisioned but enrolment failed: {exc}") from None
    print(
        f"{args.id} ({device_type}) provisioned for gateway {gateway_id}; enrolled in {book.path}"
    )
    if label_path is not None:
        print(f"pairing label: {label_path} (it lets whoever holds it pair the monitor: print "
              "it, then delete the file)")  # fmt: skip
    return 0
