"""``python -m taco_plus.experiments``: the ablation study's command line (docs/experiments.md).

Subcommands: ``list``, ``show NAME``, ``run NAME``, ``record RUN_DIR --name NAME``, ``compare NAME...``, ``report``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from taco_plus.experiments.compare import FORMATS
from taco_plus.experiments.record import RESULTS_DIR
from taco_plus.experiments.registry import RUNS_DIR, STAGES


def _list(args: Any) -> int:
    from taco_plus.experiments.registry import load_runs
    from taco_plus.experiments.report import runs_frame

    print(runs_frame(*load_runs(), args.results).to_markdown(index=False, tablefmt="simple"))
    return 0


def _show(args: Any) -> int:
    from taco_plus.experiments.registry import creates, load_run

    run = load_run(args.name)
    print(f"{run.name}: {run.title}\nbase: {run.base or '(anchor)'}; changes: {run.change_text()}")
    print(f"rate points: {', '.join(f'{v:g}' for v in run.lambdas)}; needs: {', '.join(run.needs) or 'nothing'}\n")
    for stage, commands in run.commands(args.runs_dir).items():
        print(f"# {stage}")
        for text, command in zip(run.prepare if stage == "prepare" else [""] * len(commands), commands):
            out = creates(text)
            print(f"[ -e {shlex.quote(out)} ] || {shlex.join(command)}" if out else shlex.join(command))
    return 0


def _run(args: Any) -> int:
    from taco_plus.experiments.registry import execute, load_run

    return execute(load_run(args.name), args.stage or STAGES, args.lmbda or (), args.runs_dir, args.dry_run, args.force)


def _record(args: Any) -> int:
    from taco_plus.experiments.record import record_run

    path = record_run(args.run_dir, args.name, args.results, title=args.title, dataset=args.dataset,
                      caption_set=args.caption_set, force=args.force,
                      command="python -m taco_plus.experiments " + " ".join(sys.argv[1:]))
    print(f"recorded {args.name!r} in {path}")
    return 0


def _compare(args: Any) -> int:
    from taco_plus.experiments.compare import compare, render
    from taco_plus.results.plot import plot_rd

    curves, anchor, summary, notes, points = compare(args.names, args.results, args.anchor, args.method)
    print(render(summary, args.format, notes, f"BD-rate against {anchor.label} ({args.method}); negative saves bits"))
    print(render(points, args.format, caption="Rate points"))
    if args.plot:
        print(f"wrote {plot_rd([dict(c.results, name=c.label) for c in curves], args.plot, references=args.reference)}")
    return 0


def _report(args: Any) -> int:
    from taco_plus.experiments.report import build_report

    for path in build_report(args.results, args.out):
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.experiments", description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help=f"results registry (default {RESULTS_DIR})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every registered run and its status").set_defaults(func=_list)
    for name, func, what in (("show", _show, "a run's changes and commands"), ("run", _run, "prepare, train, "
                             "evaluate and record a run")):
        p = sub.add_parser(name, help=what)
        p.add_argument("name")
        p.add_argument("--runs-dir", default=RUNS_DIR, help=f"run folders (default {RUNS_DIR})")
        p.set_defaults(func=func)
    p.add_argument("--stage", action="append", choices=STAGES, help="only these stages (repeatable; default all)")
    p.add_argument("--lambda", dest="lmbda", type=float, action="append", help="only this rate point (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.add_argument("--force", action="store_true", help="replace an existing record")
    p = sub.add_parser("record", help="record a finished evaluation folder into the results registry")
    p.add_argument("run_dir", type=Path, help="evaluation folder, or a sweep folder of them")
    p.add_argument("--name", required=True, help="run name (folder in the registry)")
    p.add_argument("--title", default=None, help="curve name in results.json (default: the name)")
    p.add_argument("--dataset", default=None, help="evaluation dataset label (default: Hydra's data choice)")
    p.add_argument("--caption-set", default=None, help="caption file, when the results do not name theirs")
    p.add_argument("--force", action="store_true", help="replace an existing record")
    p.set_defaults(func=_record)
    p = sub.add_parser("compare", help="comparison tables and RD plots of runs")
    p.add_argument("names", nargs="+", help="recorded runs, reference curves or results files")
    p.add_argument("--anchor", default=None, help="BD-rate anchor (default: the first name)")
    p.add_argument("--method", choices=("pchip", "cubic"), default="pchip")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument("--plot", type=Path, default=None, help="write the RD plots to this PNG")
    p.add_argument("--reference", action="append", default=[], help="shipped reference curve to add to the plot")
    p.set_defaults(func=_compare)
    p = sub.add_parser("report", help="regenerate the report's tables and figures")
    p.add_argument("--out", type=Path, default=Path("paper/generated"))
    p.set_defaults(func=_report)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as err:  # MissingResultError, RecordError included
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"experiments {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
