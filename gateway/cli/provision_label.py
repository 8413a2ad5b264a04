"""The pairing label of a monitor: a QR code of its pairing link (gateway/web/pair_code.py),
its id and what to do, to print and stick inside the battery cover. The link carries the
monitor's pairing secret, never its key.

`perimon provision PORT --id fh-07 --label fh-07.svg` writes it when the device is provisioned:
SVG (the whole label, 56 x 30 mm, for a label printer) or PNG (the QR code alone).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape

import segno

from gateway.web.pair_code import DEFAULT_PAIR_URL, encode, pair_link, short_fingerprint

_KIND = {"fetal_heart": "fetal-heart monitor", "jaundice": "jaundice meter"}
_BORDER = 4  # modules of quiet zone, as the QR standard asks


def label_link(device_id: str, device_type: str, secret: bytes,
               pair_url: str = DEFAULT_PAIR_URL, fingerprint: str | None = None) -> str:  # fmt: skip
    return pair_link(encode(device_id, device_type, secret), pair_url, fingerprint)


def open_label(path: str | Path) -> BinaryIO:
    """Create (or empty) the label file, readable by its owner only: it carries the pairing
    secret. Opened before the device is provisioned, so that a path that cannot be written
    fails before anything changes (OSError)."""
    path = Path(path)
    if path.suffix.lower() not in (".svg", ".png"):
        raise ValueError(f"{path}: a label is .svg or .png")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")


def write_label(path: str | Path, device_id: str, device_type: str, secret: bytes,
                pair_url: str = DEFAULT_PAIR_URL, out: BinaryIO | None = None,
                fingerprint: str | None = None) -> Path:  # fmt: skip
    """Write the label (by the file's suffix: .svg or .png) for the monitor's pairing secret,
    to `out` if given (from open_label) or to a file opened here; returns the path. With the
    home gateway's certificate `fingerprint`, its start is in the link and under the code."""
    path = Path(path)
    link = label_link(device_id, device_type, secret, pair_url, fingerprint)
    qr = segno.make_qr(link, error="m")
    with out if out is not None else open_label(path) as f:
        if path.suffix.lower() == ".png":
            qr.save(f, kind="png", scale=8, border=_BORDER)
        else:
            f.write(_svg(qr, device_id, device_type, fingerprint).encode("utf-8"))
    return path


def _svg(qr: segno.QRCode, device_id: str, device_type: str,
         fingerprint: str | None = None) -> str:  # fmt: skip
    rows = list(qr.matrix_iter(scale=1, border=_BORDER))
    n = len(rows)
    dark = "".join(
        f"M{x} {y}h1v1h-1z" for y, row in enumerate(rows) for x, on in enumerate(row) if on
    )
    size_mm = 28.0  # the code, quiet zone included; the text beside it
    text = [  # (line, font size in mm, weight): at most 20 characters beside the code
        (device_id, 4.0, "bold"),
        (_KIND[device_type], 2.2, "normal"),
        ("Pair at home: open", 2.2, "normal"),
        ("the phone's camera", 2.2, "normal"),
        ("on this code.", 2.2, "normal"),
        ("Keep it private.", 2.2, "bold"),
    ]
    y, lines = 6.0, []
    for s, mm, weight in text:
        lines.append(f'<text x="30" y="{y:.1f}" font-size="{mm}" font-weight="{weight}">'
                     f"{escape(s)}</text>")  # fmt: skip
        y += mm + 1.8
    if fingerprint:  # under the code: what the browser's certificate warning should show
        lines.append(f'<text x="1" y="29.6" font-size="1.4">gateway certificate SHA-256 '
                     f"{escape(short_fingerprint(fingerprint))}...</text>")  # fmt: skip
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="56mm" height="30mm" viewBox="0 0 56 30">\n'
        f"<title>perimon pairing label: {escape(device_id)}</title>\n"
        '<rect width="56" height="30" fill="#fff"/>\n'
        f'<g transform="translate(1 1) scale({size_mm / n:.5f})">'
        f'<path fill="#000" shape-rendering="crispEdges" d="{dark}"/></g>\n'
        '<g font-family="DejaVu Sans, Helvetica, Arial, sans-serif" fill="#000">\n'
        + "\n".join(lines)
        + "\n</g>\n</svg>\n"
    )
