"""`perimon ingest`: the hospital's own `perimon-ingest` (hospital/cli.py) under `perimon`.

The one place the gateway imports the hospital side: this command delegates to it, so both names
run the same code. Nothing else in gateway/ may import hospital/.
"""

from __future__ import annotations

import argparse

from gateway.cli import Subparsers, UserError
from hospital import cli as hospital_cli


def register(sub: Subparsers) -> None:
    g = sub.add_parser("ingest", help="hospital side: validate, de-duplicate and store readings")
    hospital_cli.add_arguments(g)
    g.set_defaults(func=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    try:
        return hospital_cli.run(args)
    except hospital_cli.IngestError as exc:
        raise UserError(str(exc)) from None
