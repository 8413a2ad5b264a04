"""systemd service notifications (sd_notify), written here because the protocol is one
datagram and a dependency would be larger than the code.

Under `Type=notify` the gateway says READY=1 once devices can connect and MQTT is started, and
WATCHDOG=1 from its main loop: if the loop hangs, systemd restarts the service
(deploy/systemd/perimon-gateway.service sets WatchdogSec). Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import socket


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    return "\0" + addr[1:] if addr.startswith("@") else addr


def notify(state: str) -> bool:
    """Send one notification ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..."); True if sent."""
    addr = _address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError:
        return False


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd gave us (WATCHDOG_USEC), or None without one."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.5, int(usec) / 2e6)
    except ValueError:
        return None
