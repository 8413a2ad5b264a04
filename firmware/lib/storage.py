# Persistent device settings: the provisioning record (device.json) and the boot counter.
# On the board these live on the flash filesystem; under the Unix port in the device's folder.
import json


def load_settings(path):
    with open(path) as f:
        return json.load(f)


def next_boot(path):
    """Increment and persist the boot counter, so a reboot is never mistaken for a gap."""
    try:
        with open(path) as f:
            n = int(f.read().strip() or "0")
    except (OSError, ValueError):
        n = 0
    n = (n + 1) & 0xFFFF
    with open(path, "w") as f:
        f.write(str(n))
    return n


def provisioning_wanted(path, args):
    """The USB provisioning console runs when asked for (Unix port: a `provision` argument)
    or on a board that has no key yet."""
    import sys

    if "provision" in args:
        return True
    try:
        return sys.platform == "esp32" and not load_settings(path).get("key")
    except (OSError, ValueError):
        return sys.platform == "esp32"
