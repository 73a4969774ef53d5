"""``python -m taco_plus.experiments.report``: regenerate ``paper/generated/``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from taco_plus.experiments.paths import ABLATIONS_FILE, GENERATED_DIR, REGISTRY_DIR


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.experiments.report",
                                     description="Generate the paper's tables and figures from the results registry.")
    parser.add_argument("--registry", type=Path, default=REGISTRY_DIR, help="results registry folder")
    parser.add_argument("--ablations", type=Path, default=ABLATIONS_FILE, help="ablation registry YAML")
    parser.add_argument("--out", type=Path, default=GENERATED_DIR, help="output folder (emptied of generated files)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from taco_plus.experiments.registry import load_registry
    from taco_plus.experiments.report.build import build_report
    from taco_plus.experiments.store import ResultsRegistry

    try:
        written = build_report(load_registry(args.ablations), ResultsRegistry(args.registry), args.out)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"report: error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
