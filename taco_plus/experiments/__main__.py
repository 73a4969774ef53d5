"""``python -m taco_plus.experiments``: the ablation study's command line (docs/experiments.md). Subcommands:
``list``, ``show NAME``, ``run NAME... | --all``, ``record RUN_DIR --name NAME``, ``compare NAME...``, ``report``."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from taco_plus.experiments.compare import FORMATS
from taco_plus.experiments.record import RESULTS_DIR
from taco_plus.experiments.registry import RUNS_DIR, STAGES


def _list(args: Any) -> None:
    from taco_plus.experiments.registry import load_runs
    from taco_plus.experiments.report import runs_frame

    print(runs_frame(*load_runs(), args.results).to_markdown(index=False, tablefmt="simple"))


def _show(args: Any) -> None:
    from taco_plus.experiments.jobs import jobs_command
    from taco_plus.experiments.registry import creates, load_run

    run = load_run(args.name)
    print(f"{run.name}: {run.title}\nbase: {run.base or '(anchor)'}; changes: {run.change_text()}")
    print(f"rate points: {', '.join(f'{v:g}' for v in run.lambdas)}; needs: {', '.join(run.needs) or 'nothing'}\n")
    print("# prepare (once), then one job per rate point: train, evaluate, record (`run NAME` runs them)")
    for command in run.prepare:
        print(f"[ -e {shlex.quote(creates(command))} ] || {command}" if creates(command) else command)
    print(shlex.join(jobs_command([(run.name, v, run.cfg.trainer.seed) for v in run.lambdas], args.runs_dir)))


def _run(args: Any) -> int:
    """The job table; the missing prepare outputs, here; the jobs left as one multirun through ``--launcher``."""
    from taco_plus.experiments.jobs import job_table, jobs_command
    from taco_plus.experiments.registry import creates, load_run, run_names

    if bool(args.names) == args.all:
        raise ValueError("name the runs to run, or --all")
    runs = [load_run(name) for name in (run_names() if args.all else args.names)]
    table = job_table(runs, args.lmbda or (), args.seed or (), args.runs_dir, args.results, args.force,
                      args.launcher_arg)
    print(table.to_string(index=False) + "\n", flush=True)
    stages = args.stage or STAGES
    if args.dry_run:
        return 0
    for command in [c for run in runs for c in run.prepare] if "prepare" in stages else []:
        if not (creates(command) and Path(creates(command)).exists()):
            print(f"[prepare] {command}", flush=True)
            words = shlex.split(command)
            program = {"python": [sys.executable], "taco-plus": [sys.executable, "-m", "taco_plus"]}.get(words[0])
            if subprocess.call([*program, *words[1:]] if program else words):
                return 1
    todo = table[table["to do"] != "nothing (recorded)"]
    if todo.empty or not {"train", "eval", "record"} & set(stages):
        return print("no job to run" + (": every point is recorded" if todo.empty else ""), flush=True) or 0
    overrides = [f"+stages={json.dumps(list(stages))}", f"+results={args.results}", f"+force={args.force}",
                 f"+train={json.dumps(args.train)}", f"+eval={json.dumps(args.eval)}",
                 *(f"hydra.launcher.{a}" for a in args.launcher_arg)]
    if args.launcher == "submitit_slurm" and not any(a.startswith("max_num_timeout=") for a in args.launcher_arg):
        overrides.append("hydra.launcher.max_num_timeout=10")  # requeues after pre-emption or time limits
    print(f"[jobs] {len(todo)} through hydra/launcher={args.launcher}", flush=True)
    command = jobs_command(zip(todo.run, todo.λ, todo.seed), args.runs_dir, args.launcher, overrides)
    return subprocess.call([sys.executable, *command[1:]])


def _record(args: Any) -> None:
    from taco_plus.experiments.record import record_run

    path = record_run(args.run_dir, args.name, args.results, title=args.title, dataset=args.dataset, force=args.force,
                      caption_set=args.caption_set, command="python -m taco_plus.experiments " + " ".join(sys.argv[1:]))
    print(f"recorded {args.name!r} in {path}")


def _compare(args: Any) -> None:
    from taco_plus.experiments.compare import compare, render
    from taco_plus.results.plot import plot_rd

    curves, summary, notes, points = compare(args.names, args.results, args.anchor, args.method)
    against = args.anchor or "each run's declared base"
    print(render(summary, args.format, notes, f"BD-rate against {against} ({args.method}); negative saves bits"))
    print(render(points, args.format, caption="Rate points"))
    if args.plot:
        print(f"wrote {plot_rd([dict(c.results, name=c.label) for c in curves], args.plot, references=args.reference)}")


def _report(args: Any) -> None:
    from taco_plus.experiments.report import build_report

    for path in build_report(args.results, args.out):
        print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.experiments", description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help=f"results registry (default {RESULTS_DIR})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every registered run and its status").set_defaults(func=_list)
    p = sub.add_parser("show", help="a run's changes and commands")
    p.add_argument("name")
    p.add_argument("--runs-dir", default=RUNS_DIR, help=f"run folders (default {RUNS_DIR})")
    p.set_defaults(func=_show)
    p = sub.add_parser("run", help="prepare, train, evaluate and record runs: one job per (run, λ, seed)")
    p.add_argument("names", nargs="*", help="registered runs")
    p.add_argument("--all", action="store_true", help="every registered run")
    p.add_argument("--runs-dir", default=RUNS_DIR, help=f"run folders (default {RUNS_DIR})")
    p.add_argument("--stage", action="append", choices=STAGES, help="only these stages (repeatable; default all)")
    p.add_argument("--lambda", dest="lmbda", type=float, action="append", help="only this rate point (repeatable)")
    p.add_argument("--seed", type=int, action="append", help="train with this seed (repeatable; default the run's)")
    p.add_argument("--launcher", default="basic", choices=("basic", "submitit_local", "submitit_slurm"),
                   help="Hydra launcher of the jobs (default basic: here, one after another)")
    p.add_argument("-L", "--launcher-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="hydra.launcher.KEY=VALUE, e.g. partition=gpu gpus_per_node=1 timeout_min=2880")
    p.add_argument("--train", action="append", default=[], metavar="OVERRIDE", help="override of every training")
    p.add_argument("--eval", action="append", default=[], metavar="OVERRIDE", help="override of every evaluation")
    p.add_argument("--dry-run", action="store_true", help="print the job table only")
    p.add_argument("--force", action="store_true", help="evaluate and record points already recorded again")
    p.set_defaults(func=_run)
    p = sub.add_parser("record", help="record a finished evaluation folder into the results registry")
    p.add_argument("run_dir", type=Path, help="evaluation folder, or a sweep folder of them")
    p.add_argument("--name", required=True, help="run name (folder in the registry)")
    p.add_argument("--title", default=None, help="curve name in results.json (default: the name)")
    p.add_argument("--dataset", default=None, help="evaluation dataset label (default: Hydra's data choice)")
    p.add_argument("--caption-set", default=None, help="caption file, when the results do not name theirs")
    p.add_argument("--force", action="store_true", help="replace points already recorded")
    p.set_defaults(func=_record)
    p = sub.add_parser("compare", help="comparison tables and RD plots of runs")
    p.add_argument("names", nargs="+", help="recorded runs, reference curves or results files")
    p.add_argument("--anchor", default=None, help="BD-rate anchor of every row (default: a registered run's declared "
                   "base, the first name for other curves)")
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
