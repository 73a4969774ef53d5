"""``run NAME``: executes a registry run's commands, stage by stage.

Stages: ``prepare`` (skipped per step when its output exists), ``train`` (one
``python -m taco_plus.train`` per rate point; a point whose ``final.pt`` exists is
skipped, so an interrupted study resumes), ``eval`` (one Hydra multirun over the
checkpoints), ``record`` (into ``experiments/results/<name>``). ``--stage`` picks
stages, ``--lambda`` rate points (e.g. one SLURM job per point), ``--dry-run`` only
prints. Commands run with this interpreter (``python`` and ``taco-plus`` in the printed
form map to ``sys.executable -m ...``) from the repository root.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from taco_plus.experiments.paths import REPO_ROOT
from taco_plus.experiments.registry import Ablation, format_lambda

STAGES = ("prepare", "train", "eval", "record")


def executable(command: Sequence[str]) -> list[str]:
    """The printed command with ``python`` / ``taco-plus`` mapped to this interpreter."""
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    if command[0] == "taco-plus":
        return [sys.executable, "-m", "taco_plus", *command[1:]]
    return list(command)


def planned(run: Ablation, stages: Sequence[str], lambdas: Sequence[float] = (), runs_dir: str = "runs/experiments",
            root: Path = REPO_ROOT) -> list[tuple[str, list[str], str]]:
    """(stage, command, skip reason or "") in execution order."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; stages: {', '.join(STAGES)}")
    chosen = {format_lambda(v) for v in lambdas}
    known = {format_lambda(v) for v in run.lambdas}
    if chosen - known:
        raise ValueError(f"run {run.name!r} has no rate point {sorted(chosen - known)}; its λ: {sorted(known)}")
    commands = run.commands(runs_dir)
    plan = []
    for stage in STAGES:
        if stage not in stages:
            continue
        for i, command in enumerate(commands[stage]):
            skip = ""
            if stage == "prepare" and (root / run.prepare[i].creates).exists():
                skip = f"{run.prepare[i].creates} exists"
            if stage == "train":
                lam = run.lambdas[i]
                if chosen and format_lambda(lam) not in chosen:
                    continue
                final = root / run.run_dir(lam, runs_dir) / "checkpoints" / "final.pt"
                if final.exists():
                    skip = f"{final.relative_to(root)} exists"
            plan.append((stage, command, skip))
    return plan


def execute(run: Ablation, stages: Sequence[str] = STAGES, lambdas: Sequence[float] = (),
            runs_dir: str = "runs/experiments", dry_run: bool = False, force_record: bool = False) -> int:
    """Runs (or prints) the plan; stops at the first failing command with its exit status."""
    for stage, command, skip in planned(run, stages, lambdas, runs_dir):
        if stage == "record" and force_record:
            command = [*command, "--force"]
        line = shlex.join(command)
        if skip:
            print(f"[{stage}] skip ({skip}): {line}")
            continue
        print(f"[{stage}] {line}", flush=True)
        if dry_run:
            continue
        code = subprocess.call(executable(command), cwd=REPO_ROOT)
        if code != 0:
            print(f"[{stage}] failed with exit status {code}; fix it and re-run (finished stages are skipped)",
                  file=sys.stderr)
            return code
    return 0


def main_run(args: Any) -> int:
    from taco_plus.experiments.registry import load_registry

    run = load_registry(args.ablations)[args.name]
    return execute(run, args.stage or STAGES, args.lmbda or (), args.runs_dir, args.dry_run, args.force)
