"""The `perimon` command: one argparse tree, one module per command group.

Every command module exposes `register(subparsers)`, which adds its parser and sets
`func` to a callable taking the parsed namespace and returning an exit code. Errors a user
can cause (bad files, bad config) are raised as `UserError` and printed as one line.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, TypeAlias


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line, like every other user error (scripts parse stderr).

    argparse prints the whole usage block before the message; `--help` still shows it.
    Sub-parsers inherit the class, so every command behaves the same.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# What a command module's `register` is given: the group its parser is added to.
Subparsers: TypeAlias = "argparse._SubParsersAction[OneLineParser]"


def _dsp_parser(subparsers: Subparsers) -> None:
    dsp = subparsers.add_parser("dsp", help="signal processing on files (FHR, CTG, TcB)")
    dsp_sub = dsp.add_subparsers(dest="dsp_command", metavar="COMMAND", required=True)
    from gateway.cli import dsp_fhr, dsp_tcb

    dsp_fhr.register(dsp_sub)
    dsp_tcb.register(dsp_sub)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("perimon")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="perimon", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"perimon {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from gateway.cli import provision, run_commands

    run_commands.register(sub)
    provision.register(sub)
    _dsp_parser(sub)
    from gateway.cli import ingest_commands, nurse_commands

    nurse_commands.register(sub)
    ingest_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"perimon: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
