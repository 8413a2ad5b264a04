# Provisioning console on the USB serial port: `perimon provision PORT` writes the device id,
# the per-device key, the label's pairing secret, the factory calibration and the gateway the
# device belongs to into device.json. One command per line, one reply line each: "OK ..." or
# "ERR reason". The key and the pairing secret can be written, never read back. On the board the console runs while the device has no key; under
# the Unix port with `main.py device.json provision`, on stdin (a pseudo-terminal in the tests).
import json
import os
import sys

from micropython import const

_MAX_LINE = const(4096)
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
_REQUIRED = ("id", "gateway", "key")
_SECRETS = {"key": 64, "pair_secret": 32}  # hex digits: written, never read back


def _valid_id(s):
    if not 1 <= len(s) <= 64 or s[0] in "-_":
        return False
    for c in s:
        if c not in _ID_CHARS:
            return False
    return True


def _check(field, value):
    """(stored value, None) or (None, error)."""
    if field in ("id", "gateway"):
        return (value, None) if _valid_id(value) else (None, "bad " + field)
    if field in _SECRETS:
        value = value.lower()
        if len(value) != _SECRETS[field] or value.strip("0123456789abcdef"):
            return None, "%s must be %d hex digits" % (field, _SECRETS[field])
        return value, None
    if field == "calibration":
        try:
            cal = json.loads(value)
        except ValueError:
            return None, "calibration is not JSON"
        return (cal, None) if isinstance(cal, dict) else (None, "calibration must be an object")
    if field in ("name", "radio", "doppler_encoding"):
        return (value, None) if len(value) <= 64 else (None, field + " too long")
    return None, "unknown field " + field


def handle(line, settings, device_type, firmware, path, measure=None):
    """One command -> one reply line (without newline). Mutates `settings`. measure: the
    device's factory measurement (jaundice meter: drives -> one press as a dict), for MEASURE."""
    parts = line.split(" ", 2)
    cmd = parts[0].upper()
    if cmd == "MEASURE" and measure is not None:
        try:
            return "OK " + json.dumps(measure([int(x) for x in line.split()[1:]]))
        except ValueError as e:
            return "ERR %s" % e
    if cmd == "HELLO":
        return "OK perimon-provision 1 %s %s" % (device_type, firmware)
    if cmd == "SET" and len(parts) == 3:
        value, err = _check(parts[1], parts[2])
        if err:
            return "ERR " + err
        settings[parts[1]] = value
        return "OK"
    if cmd == "GET":
        shown = {}
        for k in settings:
            if k not in _SECRETS:
                shown[k] = settings[k]
        for k in _SECRETS:
            shown[k + "_set"] = bool(settings.get(k))
        return "OK " + json.dumps(shown)
    if cmd == "COMMIT":
        for k in _REQUIRED:
            if not settings.get(k):
                return "ERR missing " + k
        tmp = path + ".new"
        with open(tmp, "w") as f:
            json.dump(settings, f)
        os.rename(tmp, path)  # atomic on both filesystems: never a half-written device.json
        return "OK"
    if cmd == "QUIT":
        return None
    return "ERR unknown command"


def console(path, device_type, firmware, inp=None, out=None, measure=None):
    """Serve commands until QUIT or end of input. Returns True if something was committed."""
    inp = inp or sys.stdin
    out = out or sys.stdout
    try:
        with open(path) as f:
            settings = json.load(f)
    except (OSError, ValueError):
        settings = {}
    committed = False
    while True:
        line = inp.readline()
        if not line:
            break
        if isinstance(line, bytes):
            line = line.decode()
        line = line.strip()
        if not line:
            continue
        if len(line) > _MAX_LINE:
            reply = "ERR line too long"
        else:
            try:
                reply = handle(line, settings, device_type, firmware, path, measure)
            except OSError as e:
                reply = "ERR storage %s" % e
        committed = committed or (line.upper() == "COMMIT" and reply == "OK")
        out.write(("OK bye" if reply is None else reply) + "\n")
        if hasattr(out, "flush"):
            out.flush()
        if reply is None:
            break
    return committed
