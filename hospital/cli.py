"""`perimon-ingest`: the reference hospital subscriber's command line (hospital/ingest.py).

The hospital side stands alone: this command and its module import nothing of the gateway.
`perimon ingest` is the same command under the gateway's `perimon` (it adds these arguments and
calls `run`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

PROG = "perimon-ingest"
_MAX_EXPIRY_H = 24 * 365  # MQTT 5 allows up to 2^32 - 1 s; a year is plenty
_GAPS_SHOWN = 20  # at the end of a run: the rest are counted (all of them: --gaps)


class IngestError(Exception):
    """A problem with the user's input or surroundings: printed as one line, exit code 2."""


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line, like every other error (scripts parse stderr)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments, on its own parser or on `perimon ingest`'s."""
    p.add_argument("--host", default="127.0.0.1", help="MQTT broker")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--prefix", default="perimon/v1", help="topic prefix (docs/mqtt.md)")
    p.add_argument("--db", default="perimon-ingest.sqlite",
                   help="SQLite file (or sqlite:///path), or a postgresql:// URL")  # fmt: skip
    p.add_argument("--group", default="perimon-ingest", help="shared-subscription group")
    p.add_argument(
        "--worker",
        help="this worker's MQTT client id (default: random); with it, "
        "the broker keeps what arrives while the worker is away (--session-expiry-h)",
    )
    p.add_argument("--session-expiry-h", type=float, default=24.0,
                   help="how long the broker keeps a named worker's session (default 24)")  # fmt: skip
    p.add_argument("--schemas", help="JSON Schemas directory (default: the ones installed)")
    p.add_argument("--no-ack", action="store_true", help="do not acknowledge alerts")
    p.add_argument("--username", default="")
    p.add_argument("--password", default="")
    p.add_argument("--tls-ca", default="", help="CA file: connect with TLS")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    p.add_argument("--gaps", action="store_true",
                   help="list the messages missing in --db (sequence gaps) and exit")  # fmt: skip
    p.add_argument("--verbose", "-v", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Run the subscriber until Ctrl-C or --seconds (or list the gaps); the exit code.
    Raises IngestError for what the user can fix."""
    from hospital.ingest import Ingest, Store

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    if args.gaps:
        try:
            store = Store(args.db)
        except (RuntimeError, OSError, ValueError) as exc:
            raise IngestError(str(exc)) from None
        _print_gaps(store.gaps(), limit=0)
        store.close()
        return 0
    schemas = Path(args.schemas) if args.schemas else None
    if schemas is not None and not (schemas / "observation.schema.json").exists():
        raise IngestError(f"{schemas}: no perimon JSON Schemas there")
    if not 0 <= args.session_expiry_h <= _MAX_EXPIRY_H:
        raise IngestError(f"--session-expiry-h: 0 to {_MAX_EXPIRY_H}, got {args.session_expiry_h}")
    expiry_s = round(args.session_expiry_h * 3600) if args.worker else 0
    try:
        store = Store(args.db)
        ingest = Ingest(args.host, args.port, store, prefix=args.prefix, group=args.group,
                        worker=args.worker, schemas_dir=schemas, ack_alerts=not args.no_ack,
                        username=args.username, password=args.password, tls_ca=args.tls_ca,
                        session_expiry_s=expiry_s)  # fmt: skip
    except ImportError as exc:
        raise IngestError(f"{exc} (pip install perimon[ingest])") from None
    except (RuntimeError, OSError, ValueError) as exc:
        raise IngestError(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ingest.start()
    print(f"ingest worker {ingest.worker}: {args.host}:{args.port} -> {args.db}")
    t0 = time.monotonic()
    while not stop.wait(1.0):
        if args.seconds and time.monotonic() - t0 >= args.seconds:
            break
    ingest.stop()
    gaps = store.gaps()
    store.close()
    c = ingest.counts
    print(f"received {c['received']}, stored {c['stored']}, duplicates {c['duplicates']}, "
          f"invalid {c['invalid']}, alerts acknowledged {c['acks_confirmed']}/{c['acks_sent']}")  # fmt: skip
    _print_gaps(gaps, limit=_GAPS_SHOWN)
    return 0


def _print_gaps(gaps: list, limit: int) -> None:
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
