"""The ``taco-plus`` command line.

Each subcommand lives in its own module that exposes ``register(subparsers)``; the
module's parser sets ``func`` to a plain function taking the parsed arguments and
returning an exit status. Modules are imported lazily so that ``taco-plus --help``
stays fast and a broken optional dependency only affects its own subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# Subcommand modules, in the order they appear in ``--help``.
_SUBCOMMAND_MODULES = (
    "taco_plus.cli.codec",  # compress, decompress
    "taco_plus.cli.captions",  # captions convert|regenerate|stats
    "taco_plus.cli.weights",  # weights (token-weight inspection, tf-idf fitting)
)


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2.

    An ``OSError`` no subcommand turned into one (an unreadable input, a full disk)
    is printed the same way.
    """


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taco-plus",
        description="Text-guided neural image compression (TACO) and its ablations.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # subcommand not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, OSError) as err:
        print(f"taco-plus {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
