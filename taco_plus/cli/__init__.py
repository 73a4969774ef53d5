"""The ``taco-plus`` command line.

Each subcommand module exposes ``register(subparsers)``; its parser's ``func`` takes the
parsed arguments and returns an exit status. A :class:`CLIError`, an ``OSError`` (a missing
input, a full disk) or a ``ValueError`` (every bad-input error of the package: damaged
checkpoints and files, refused configs) is printed as one line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

_SUBCOMMAND_MODULES = ("taco_plus.cli.compress", "taco_plus.cli.captions", "taco_plus.cli.weights",
                       "taco_plus.cli.download")


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taco-plus",
        description="Text-guided neural image compression (TACO) and its ablations.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, OSError, ValueError) as err:
        print(f"taco-plus {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
