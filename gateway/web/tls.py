"""The nurse view's certificate as a person checks it: its SHA-256 fingerprint.

`scripts/install-pi.sh` makes a self-signed certificate for the nurse view (no public CA knows a
home or ward gateway) and prints its fingerprint; `perimon nurse add` prints it again, and a
monitor's pairing label carries the start of it. The first time a browser opens the page it
warns about the certificate: the nurse compares the fingerprint the browser shows with this one
before going on (docs/security.md, "Nurse view").
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

from gateway.config import Config


def fingerprint(cert_file: Path) -> str:
    """SHA-256 of the certificate (DER), as browsers and `openssl x509 -fingerprint` show it."""
    der = ssl.PEM_cert_to_DER_cert(cert_file.read_text(encoding="ascii"))
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def web_fingerprint(cfg: Config) -> str | None:
    """The fingerprint of the nurse view's certificate, if it has one (and it can be read)."""
    if not cfg.web.cert_file:
        return None
    try:
        return fingerprint(cfg.base_dir / cfg.web.cert_file)
    except (OSError, ValueError):
        return None


def web_url(cfg: Config) -> str:
    host, _, port = cfg.web.listen.rpartition(":")
    host = "perimon.local" if host in ("0.0.0.0", "[::]", "::") else host
    return f"{'https' if cfg.web.cert_file else 'http'}://{host}:{port}/"
