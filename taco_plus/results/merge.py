"""Merges single-point results files (e.g. one per λ) into one RD curve.

Usage::

    python -m taco_plus.results.merge runs/lambda*/results.json -o taco_kodak.json --name TACO
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from taco_plus.results.format import load_results, merge_results, save_results


def merge_files(paths: Sequence[str | Path], out: str | Path, name: str, description: str = "") -> dict:
    """Loads ``paths``, merges them sorted by bpp, writes ``out``; returns the merged dict."""
    merged = merge_results([load_results(p) for p in paths], name, description)
    save_results(merged, out)
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.results.merge", description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", help="results JSON files (CompressAI format)")
    parser.add_argument("-o", "--output", required=True, help="merged results JSON to write")
    parser.add_argument("--name", default=None, help="curve name (default: the output file stem)")
    parser.add_argument("--description", default="", help="curve description")
    args = parser.parse_args(argv)
    try:
        merged = merge_files(args.inputs, args.output, args.name or Path(args.output).stem, args.description)
    except (OSError, ValueError) as err:
        print(f"merge: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {len(merged['results']['bpp'])} points, metrics {list(merged['results'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
