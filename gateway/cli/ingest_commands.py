"""`perimon ingest`: the reference hospital subscriber (hospital/ingest.py)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path

from gateway.cli import UserError


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("ingest", help="hospital side: validate, de-duplicate and store readings")
    g.add_argument("--host", default="127.0.0.1", help="MQTT broker")
    g.add_argument("--port", type=int, default=1883)
    g.add_argument("--prefix", default="perimon/v1", help="topic prefix (docs/mqtt.md)")
    g.add_argument("--db", default="perimon-ingest.sqlite",
                   help="SQLite file (or sqlite:///path), or a postgresql:// URL")  # fmt: skip
    g.add_argument("--group", default="perimon-ingest", help="shared-subscription group")
    g.add_argument(
        "--worker",
        help="this worker's MQTT client id (default: random); with it, "
        "the broker keeps what arrives while the worker is away (--session-expiry-h)",
    )
    g.add_argument("--session-expiry-h", type=float, default=24.0,
                   help="how long the broker keeps a named worker's session (default 24)")  # fmt: skip
    g.add_argument("--schemas", help="JSON Schemas directory (default: docs/schemas)")
    g.add_argument("--no-ack", action="store_true", help="do not acknowledge alerts")
    g.add_argument("--username", default="")
    g.add_argument("--password", default="")
    g.add_argument("--tls-ca", default="", help="CA file: connect with TLS")
    g.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    g.add_argument("--gaps", action="store_true",
                   help="list the messages missing in --db (sequence gaps) and exit")  # fmt: skip
    g.add_argument("--verbose", "-v", action="store_true")
    g.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from hospital.ingest import DEFAULT_SCHEMAS, Ingest, Store

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    if args.gaps:
        try:
            store = Store(args.db)
        except (RuntimeError, OSError, ValueError) as exc:
            raise UserError(str(exc)) from None
        _print_gaps(store.gaps(), limit=0)
        store.close()
        return 0
    schemas = Path(args.schemas) if args.schemas else DEFAULT_SCHEMAS
    if not (schemas / "observation.schema.json").exists():
        raise UserError(f"{schemas}: no perimon JSON Schemas there (use --schemas DIR)")
    if not 0 <= args.session_expiry_h <= _MAX_EXPIRY_H:
        raise UserError(f"--session-expiry-h: 0 to {_MAX_EXPIRY_H}, got {args.session_expiry_h}")
    expiry_s = round(args.session_expiry_h * 3600) if args.worker else 0
    try:
        store = Store(args.db)
        ingest = Ingest(args.host, args.port, store, prefix=args.prefix, group=args.group,
                        worker=args.worker, schemas_dir=schemas, ack_alerts=not args.no_ack,
                        username=args.username, password=args.password, tls_ca=args.tls_ca,
                        session_expiry_s=expiry_s)  # fmt: skip
    except ImportError as exc:
        raise UserError(f"{exc} (pip install perimon[ingest])") from None
    except (RuntimeError, OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
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


_MAX_EXPIRY_H = 24 * 365  # MQTT 5 allows up to 2^32 - 1 s; a year is plenty
_GAPS_SHOWN = 20  # at the end of a run: the rest are counted (all of them: --gaps)


def _print_gaps(gaps: list, limit: int) -> None:
    """One line with the count, then one line a gap (the first `limit`, 0: all)."""
    missing = sum(g.missing for g in gaps)
    print(f"gaps: {missing} messages missing in {len(gaps)} places")
    shown = gaps if not limit else gaps[:limit]
    for g in shown:
        print(f"gap: {g}")
    if len(shown) < len(gaps):
        print(f"... and {len(gaps) - len(shown)} more (perimon ingest --gaps --db ...)")
