"""`perimon nurse add USER` / `perimon nurse list` / `perimon nurse remove USER`: nurse
accounts for the nurse view, kept under the gateway's data_dir."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from gateway.cli import Subparsers, UserError
from gateway.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from gateway.web.nurses import NurseAccounts


def register(sub: Subparsers) -> None:
    n = sub.add_parser("nurse", help="nurse accounts for the nurse view")
    n.add_argument("--config", "-c", help="the gateway's TOML config (for its data_dir)")
    nsub = n.add_subparsers(dest="nurse_command", metavar="COMMAND", required=True)
    a = nsub.add_parser("add", help="add a nurse or set a new password")
    a.add_argument("user")
    a.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input (scripts), not the terminal")  # fmt: skip
    a.set_defaults(func=cmd_add)
    ls = nsub.add_parser("list", help="list nurse accounts")
    ls.set_defaults(func=cmd_list)
    rm = nsub.add_parser("remove", help="remove a nurse account")
    rm.add_argument("user")
    rm.set_defaults(func=cmd_remove)


def _config(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def _accounts(args: argparse.Namespace) -> NurseAccounts:
    from gateway.web.nurses import NurseAccounts

    return NurseAccounts(_config(args).data_dir / "nurses.json")


def cmd_add(args: argparse.Namespace) -> int:
    accounts = _accounts(args)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the passwords differ")
    try:
        accounts.add(args.user, password)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"nurse {args.user} saved in {accounts.path}")
    from gateway.web.tls import web_fingerprint, web_url

    cfg = _config(args)
    fp = web_fingerprint(cfg)
    if fp is not None:  # what she compares with the browser's warning, the first time
        print(f"the nurse view: {web_url(cfg)}\nits certificate's SHA-256 fingerprint: {fp}")
    else:
        print(f"the nurse view: {web_url(cfg)} (plain HTTP: no [web] cert_file)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for user in _accounts(args).users():
        print(user)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    if not _accounts(args).remove(args.user):
        raise UserError(f"no nurse {args.user!r}")
    return 0
