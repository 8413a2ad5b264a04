"""`perimon-ingest`: the reference hospital subscriber's command line (hospital/ingest.py).

The hospital side stands alone: this command and its modules import nothing of the gateway.
`perimon ingest` is the same command under the gateway's `perimon` (it adds these arguments and
calls `run`). Settings come from the command line, the environment and a file (hospital/config.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from hospital.config import ENV_PREFIX, ConfigError, IngestConfig, load
from hospital.store import DatabaseError, Gap, safe_url

PROG = "perimon-ingest"
_GAPS_SHOWN = 20  # at the end of a run: the rest are counted (all of them: --gaps)


class IngestError(Exception):
    """A problem with the user's input or surroundings: printed as one line, exit code 2."""


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line, like every other error (scripts parse stderr)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# (flag, setting, type, help): each setting is also a key of the file and PERIMON_INGEST_{KEY}
_SETTINGS: tuple[tuple[str, type, str | None], ...] = (
    ("host", str, "MQTT broker (default 127.0.0.1)"),
    ("port", int, "default 1883"),
    ("prefix", str, "topic prefix (docs/mqtt.md; default perimon/v1)"),
    ("db", str, "SQLite file (or sqlite:///path), or a postgresql:// URL "
                "(default perimon-ingest.sqlite)"),
    ("group", str, "shared-subscription group (default perimon-ingest)"),
    ("worker", str, "this worker's MQTT client id (default: random); with it, the broker keeps "
                    "what arrives while the worker is away (--session-expiry-h)"),
    ("session_expiry_h", float, "how long the broker keeps a named worker's session (default 24)"),
    ("in_flight", int, "messages the broker may send ahead of this worker's acknowledgements "
                       "(MQTT 5 Receive Maximum; default 2000)"),
    ("batch_max", int, "messages stored in one transaction at most (default 1000)"),
    ("ack_retry_s", float, "send an unanswered alert acknowledgement again after this "
                           "(default 30; 0: never)"),
    ("schemas", str, "JSON Schemas directory (default: the ones installed)"),
    ("username", str, None),
    ("password", str, f"better in the environment ({ENV_PREFIX}PASSWORD)"),
    ("tls_ca", str, "CA file: connect with TLS"),
    ("tls_cert", str, "client certificate (with --tls-key)"),
    ("tls_key", str, None),
)  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments, on its own parser or on `perimon ingest`'s."""
    p.add_argument("--config", type=Path,
                   help=f"a TOML file of settings (or {ENV_PREFIX}CONFIG); "
                        f"each setting can also be {ENV_PREFIX}<NAME>")  # fmt: skip
    for name, kind, text in _SETTINGS:
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, help=text)
    p.add_argument("--no-ack", dest="ack_alerts", action="store_const", const=False,
                   help="do not acknowledge alerts")  # fmt: skip
    p.add_argument("--no-receipts", dest="receipts", action="store_const", const=False,
                   help="send gateways no receipts of what is stored")  # fmt: skip
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    p.add_argument("--gaps", action="store_true",
                   help="list the messages missing in --db (sequence gaps) and exit")  # fmt: skip
    p.add_argument("--verbose", "-v", action="store_true")


def config_of(args: argparse.Namespace) -> IngestConfig:
    given = {name: getattr(args, name) for name, _, _ in _SETTINGS}
    given["ack_alerts"] = args.ack_alerts
    given["receipts"] = args.receipts
    try:
        return load(args.config, os.environ, given)
    except ConfigError as exc:
        raise IngestError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Run the subscriber until Ctrl-C, SIGTERM or --seconds (or list the gaps); the exit code.
    Raises IngestError for what the user can fix."""
    from hospital.ingest import Ingest
    from hospital.messages import fast_validation
    from hospital.store import Store

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    cfg = config_of(args)
    if args.gaps:
        try:
            store = Store(cfg.db)
        except DatabaseError as exc:
            raise IngestError(str(exc)) from None
        _print_gaps(store.gaps(), limit=0)
        store.close()
        return 0
    if cfg.schemas and not (Path(cfg.schemas) / "observation.schema.json").exists():
        raise IngestError(f"{cfg.schemas}: no perimon JSON Schemas there")
    if not fast_validation():
        logging.getLogger(PROG).warning(
            "jsonschema-rs is not installed: validation is slow (pip install perimon[hospital])"
        )
    try:
        ingest = Ingest(cfg)
    except DatabaseError as exc:
        raise IngestError(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ingest.start()
    print(f"ingest worker {ingest.worker}: {cfg.host}:{cfg.port} -> {safe_url(cfg.db)}", flush=True)
    t0 = time.monotonic()
    while not stop.wait(1.0):
        if args.seconds and time.monotonic() - t0 >= args.seconds:
            break
    ingest.stop()
    gaps = ingest.store.gaps()
    ingest.store.close()
    c = ingest.counts
    print(f"received {c['received']}, stored {c['stored']}, duplicates {c['duplicates']}, "
          f"invalid {c['invalid']}, alerts acknowledged {c['acks_confirmed']}/{c['acks_sent']}")  # fmt: skip
    _print_gaps(gaps, limit=_GAPS_SHOWN)
    return 0


def _print_gaps(gaps: list[Gap], limit: int) -> None:
    """One line with the count, then one line a gap (the first `limit`, 0: all)."""
    missing = sum(g.missing for g in gaps)
    print(f"gaps: {missing} messages missing in {len(gaps)} places")
    shown = gaps if not limit else gaps[:limit]
    for g in shown:
        print(f"gap: {g}")
    if len(shown) < len(gaps):
        print(f"... and {len(gaps) - len(shown)} more ({PROG} --gaps --db ...)")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog=PROG, description="The reference hospital subscriber: validate, de-duplicate and "
        "store the readings and alerts of every gateway (docs/mqtt.md)."
    )  # fmt: skip
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except IngestError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
