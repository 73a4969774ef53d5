"""The registered runs: the experiment files ``taco_plus/configs/experiment/*.yaml``, each a delta on
its base with a ``meta`` node and its rate points as a Hydra sweep; what a run needs, changes and runs
is derived from the composed config (docs/experiments.md).
"""

from __future__ import annotations

import functools
import operator
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf

from taco_plus.config import CONFIG_DIR, compose

EXPERIMENT_DIR = CONFIG_DIR / "experiment"
RUNS_DIR = "runs/experiments"
STAGES = ("prepare", "train", "eval", "record")


def lambda_label(lmbda: float) -> str:
    """λ as it names a run folder (``lmbda_0.0016``): Python's shortest repr."""
    return f"lmbda_{float(lmbda)!r}"


@dataclass(frozen=True)
class Run:
    """One registered run: its name (the file stem), title, base run (None for an anchor), the
    groups/keys it changes, rate points, evaluation overrides, prepare commands (resolved), what
    it needs beyond this machine, and the composed training config (hydra node included)."""

    name: str
    title: str
    base: Optional[str]
    changes: tuple[str, ...]
    lambdas: tuple[float, ...]
    eval: tuple[str, ...]
    prepare: tuple[str, ...]
    needs: tuple[str, ...]
    cfg: DictConfig

    def change_text(self) -> str:
        """``attention=linformer, model.mask_padding=True``: each declared change and its (unresolved) value."""
        choices, raw = self.cfg.hydra.runtime.choices, OmegaConf.to_container(self.cfg, resolve=False)
        values = [choices[c] if c in choices else functools.reduce(operator.getitem, c.split("."), raw)
                  for c in self.changes]
        return ", ".join(f"{c}={v}" for c, v in zip(self.changes, values)) or "(anchor)"

    def commands(self, runs_dir: str = RUNS_DIR, lambdas: Sequence[float] = ()) -> dict[str, list[list[str]]]:
        """Argument lists per stage; ``lambdas`` restricts training to those rate points."""
        train = ["python", "-m", "taco_plus.train", "-m", f"experiment={self.name}",
                 f"hydra.sweep.dir={runs_dir}/{self.name}", "hydra.sweep.subdir=lmbda_${loss.lmbda}"]
        if lambdas:
            train.append("loss.lmbda=" + ",".join(repr(float(v)) for v in lambdas))
        checkpoints = [f"{runs_dir}/{self.name}/{lambda_label(v)}/checkpoints/final.pt" for v in self.lambdas]
        eval_dir = f"{runs_dir}/{self.name}/eval"
        return {
            "prepare": [shlex.split(c) for c in self.prepare],
            "train": [train],
            "eval": [["python", "-m", "taco_plus.evaluate", "-m", f"name={self.name}",
                      "checkpoint=" + ",".join(checkpoints), *self.eval, f"hydra.sweep.dir={eval_dir}"]],
            "record": [["python", "-m", "taco_plus.experiments", "record", eval_dir, "--name", self.name]],
        }


def creates(command: str) -> Optional[str]:
    """The file a prepare command writes (the argument after ``--out``)."""
    words = shlex.split(command)
    return words[words.index("--out") + 1] if "--out" in words[:-1] else None


def declared(name: str) -> tuple[Optional[str], tuple[str, ...]]:
    """The base run (the experiment ``name``'s defaults list includes) and its declared changes,
    read from its file without composing; (None, ()) for a name that is not registered."""
    path = EXPERIMENT_DIR / f"{name}.yaml"
    data = (yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None) or {}
    bases = [d.removeprefix("/experiment/") for d in data.get("defaults") or [] if isinstance(d, str) and d != "_self_"]
    return (bases[0] if bases else None), tuple((data.get("meta") or {}).get("changes") or ())


def load_run(name: str, overrides: Sequence[str] = ()) -> Run:
    """Composes ``experiment=name`` (plus ``overrides``) into a :class:`Run`."""
    if not (EXPERIMENT_DIR / f"{name}.yaml").is_file():
        known = ", ".join(run_names())
        raise KeyError(f"no registered run {name!r} (no {EXPERIMENT_DIR / name}.yaml); known: {known}")
    cfg = compose([f"experiment={name}", *overrides], return_hydra_config=True)
    if cfg.name != name:
        raise ValueError(f"experiment/{name}.yaml sets name={cfg.name!r}: a run's name is its file name")
    sweep = cfg.hydra.sweeper.params or {}
    lambdas = str(sweep["loss.lmbda"]).split(",") if "loss.lmbda" in sweep else [cfg.loss.lmbda]
    prepare = tuple(cfg.meta.prepare)
    needs = ["GPU training"] if cfg.trainer.device != "cpu" else []
    if cfg.trainer.init_from is not None:
        needs.append("the released TACO checkpoints")
    if any(c.startswith("taco-plus captions regenerate") for c in prepare):
        needs.append("the OpenAI API (caption regeneration)")
    return Run(name, cfg.meta.title or name, declared(name)[0], tuple(cfg.meta.changes), tuple(map(float, lambdas)),
               tuple(cfg.meta.eval), prepare, tuple(needs), cfg)


def run_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))


def load_runs() -> tuple[dict[str, Run], dict[str, str]]:
    """Every registered run, and the runs whose config does not compose (name -> error)."""
    runs, broken = {}, {}
    for name in run_names():
        try:
            runs[name] = load_run(name)
        except Exception as err:  # noqa: BLE001 - listed with its reason, never hidden
            broken[name] = f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return runs, broken


def plan(run: Run, stages: Sequence[str] = STAGES, lambdas: Sequence[float] = (), runs_dir: str = RUNS_DIR,
         root: Path = Path(".")) -> list[tuple[str, list[str], str]]:
    """(stage, command, skip reason or "") in execution order. A prepare step whose output exists
    and a rate point whose ``final.pt`` exists are skipped: an interrupted study resumes."""
    unknown = sorted(set(stages) - set(STAGES)) + sorted(set(map(float, lambdas)) - set(run.lambdas))
    if unknown:
        raise ValueError(f"run {run.name!r}: unknown stages or rate points {unknown} (stages {STAGES}, "
                         f"rate points {list(run.lambdas)})")
    todo = [v for v in (lambdas or run.lambdas)
            if not (root / f"{runs_dir}/{run.name}/{lambda_label(v)}/checkpoints/final.pt").exists()]
    commands = run.commands(runs_dir, todo if list(todo) != list(run.lambdas) else ())
    steps = []
    if "prepare" in stages:
        for text, command in zip(run.prepare, commands["prepare"]):
            out = creates(text)
            steps.append(("prepare", command, f"{out} exists" if out and (root / out).exists() else ""))
    if "train" in stages:
        steps.append(("train", commands["train"][0], "" if todo else "every rate point has its final.pt"))
    return steps + [(stage, commands[stage][0], "") for stage in ("eval", "record") if stage in stages]


def execute(run: Run, stages: Sequence[str] = STAGES, lambdas: Sequence[float] = (), runs_dir: str = RUNS_DIR,
            dry_run: bool = False, force_record: bool = False) -> int:
    """Runs (or prints) the plan with this interpreter; stops at the first failing command with its status."""
    for stage, command, skip in plan(run, stages, lambdas, runs_dir):
        command = [*command, "--force"] if stage == "record" and force_record else command
        print(f"[{stage}] {'skip (' + skip + '): ' if skip else ''}{shlex.join(command)}", flush=True)
        if skip or dry_run:
            continue
        program = {"python": [sys.executable], "taco-plus": [sys.executable, "-m", "taco_plus"]}.get(command[0])
        code = subprocess.call([*program, *command[1:]] if program else command)
        if code != 0:
            print(f"[{stage}] failed with exit status {code}; fix it and re-run (finished steps are skipped)",
                  file=sys.stderr)
            return code
    return 0
