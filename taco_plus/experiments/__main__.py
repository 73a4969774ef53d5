"""``python -m taco_plus.experiments``: the ablation study's command line.

Subcommands::

    list                          every run: study, rate points, status, estimated cost
    show NAME                     what a run changes and its exact commands
    run NAME [--stage S] [--lambda L] [--dry-run]   prepare -> train -> evaluate -> record
    record RUN_DIR --name NAME    copy a finished evaluation into experiments/results/NAME
    compare NAME... [--plot rd.png] [--anchor NAME] [--format text|markdown|latex|csv]
    bench-attention [benchmark options]             attention benchmark into the registry
    caption-stats [--data DIR]    caption-set statistics into the registry
    token-weights [--data DIR]    token-weight examples into the registry
    report [--out DIR]            regenerate paper/generated/ (same as python -m taco_plus.experiments.report)

The training-step measurement behind the cost estimates is
``python -m taco_plus.experiments.step_time``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from taco_plus.experiments.paths import ABLATIONS_FILE, GENERATED_DIR, REGISTRY_DIR, SHARED_DIR
from taco_plus.experiments.registry import DEFAULT_RUNS_DIR, RegistryError
from taco_plus.experiments.store import MissingResultError
from taco_plus.experiments.tables import FORMATS


def _list(args: Any) -> int:
    from taco_plus.experiments.cost import all_costs
    from taco_plus.experiments.registry import load_registry
    from taco_plus.experiments.store import ResultsRegistry

    registry, results = load_registry(args.ablations), ResultsRegistry(args.registry)
    try:
        costs = all_costs(registry, results)
    except (MissingResultError, KeyError) as err:
        print(f"(no cost estimates: {err.args[0] if isinstance(err, KeyError) else err})")
        costs = {}
    print(f"{'run':40s} {'study':12s} {'λ':>2s} {'est. cost':>16s}  status")
    for run in registry:
        c = costs.get(run.name)
        cost = "" if c is None else (f"{c.gpu_hours:,.0f} GPU h" if c.gpu_hours is not None else
                                     (f"{c.cpu_minutes:.0f} CPU min" if c.cpu_minutes else "CPU"))
        status = "recorded" if results.has_run(run.name) else registry.not_run_reason(run)
        print(f"{run.name:40s} {run.ablation:12s} {len(run.lambdas):2d} {cost:>16s}  {status}")
    if costs:
        print(f"\nGPU hours assume {registry.cost_model['assumed_sustained_tflops']:g} TFLOP/s sustained "
              f"({registry.cost_model['assumed_gpu']}); see experiments/README.md#cost.")
    return 0


def _show(args: Any) -> int:
    from taco_plus.experiments.registry import format_commands, load_registry

    run = load_registry(args.ablations)[args.name]
    print(f"{run.name}: {run.title} ({run.ablation})\n{run.changes}\n")
    print(f"rate points: {', '.join(f'{v:g}' for v in run.lambdas)}; evaluated on {run.dataset}; "
          f"results: experiments/results/{run.name}/\n")
    print(format_commands(run, args.runs_dir))
    return 0


def _report(args: Any) -> int:
    from taco_plus.experiments.report.__main__ import main

    return main(["--registry", str(args.registry), "--ablations", str(args.ablations), "--out", str(args.out)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.experiments", description=__doc__.split("\n")[0])
    parser.add_argument("--registry", type=Path, default=REGISTRY_DIR, help="results registry folder")
    parser.add_argument("--ablations", type=Path, default=ABLATIONS_FILE, help="ablation registry YAML")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="every run with status and cost").set_defaults(func=_list)

    p = sub.add_parser("show", help="a run's description and commands")
    p.add_argument("name")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR)
    p.set_defaults(func=_show)

    p = sub.add_parser("run", help="prepare, train, evaluate and record a run")
    p.add_argument("name")
    p.add_argument("--stage", action="append", choices=("prepare", "train", "eval", "record"),
                   help="only these stages (repeatable; default all)")
    p.add_argument("--lambda", dest="lmbda", type=float, action="append", help="only this rate point (repeatable)")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help=f"run folders (default {DEFAULT_RUNS_DIR})")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.add_argument("--force", action="store_true", help="replace an existing record")
    p.set_defaults(func=_lazy("runner", "main_run"))

    p = sub.add_parser("record", help="record a finished evaluation folder into the registry")
    p.add_argument("run_dir", type=Path, help="evaluation folder, or a sweep folder of them")
    p.add_argument("--name", required=True, help="run name (folder in the registry)")
    p.add_argument("--title", default=None, help="curve name in results.json (default: the name)")
    p.add_argument("--dataset", default=None, help="evaluation dataset label (default: Hydra's data choice)")
    p.add_argument("--caption-set", default=None, help="caption file, when the results do not name theirs")
    p.add_argument("--force", action="store_true", help="replace an existing record")
    p.set_defaults(func=_lazy("record", "main_record"))

    p = sub.add_parser("compare", help="comparison tables and RD plots of runs")
    p.add_argument("names", nargs="+", help="recorded runs, registry entries, reference curves or results files")
    p.add_argument("--anchor", default=None, help="BD-rate anchor (default: the first name)")
    p.add_argument("--method", choices=("pchip", "cubic"), default="pchip")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument("--plot", type=Path, default=None, help="write the RD plots to this PNG")
    p.add_argument("--reference", action="append", default=[], help="shipped reference curve to add to the plot")
    p.set_defaults(func=_lazy("compare", "main_compare"))

    p = sub.add_parser("bench-attention", help="run the attention benchmark into the registry")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="options of python -m taco_plus.bench.attention")
    p.set_defaults(func=_lazy("bench_record", "main_bench"))

    for name, module, func, what in (
        ("caption-stats", "caption_stats", "main_caption_stats", "caption-set statistics"),
        ("token-weights", "token_weights", "main_token_weights", "token-weight examples"),
    ):
        p = sub.add_parser(name, help=f"compute the {what} into the registry")
        p.add_argument("--data", type=Path, default=SHARED_DIR / "data", help="folder with captions/ and coco_mini/")
        sub_dir = "captions/caption_stats.json" if name == "caption-stats" else "weighting/token_weights.json"
        p.add_argument("--out", type=Path, default=None, help=f"default: <registry>/{sub_dir}")
        p.set_defaults(func=_with_out(module, func, sub_dir))

    p = sub.add_parser("report", help="regenerate the paper's tables and figures")
    p.add_argument("--out", type=Path, default=GENERATED_DIR)
    p.set_defaults(func=_report)
    return parser


def _lazy(module: str, func: str):
    """``taco_plus.experiments.<module>.<func>``, imported when the subcommand runs."""

    def call(args: Any) -> int:
        return getattr(importlib.import_module(f"taco_plus.experiments.{module}"), func)(args)

    return call


def _with_out(module: str, func: str, sub_dir: str):
    """Like :func:`_lazy`, defaulting ``--out`` to ``<registry>/<sub_dir>``."""

    def call(args: Any) -> int:
        args.out = args.out or Path(args.registry) / sub_dir
        return _lazy(module, func)(args)

    return call


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, RegistryError, ValueError) as err:
        print(f"experiments {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyError as err:
        print(f"experiments {args.command}: error: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
