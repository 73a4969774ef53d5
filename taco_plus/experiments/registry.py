"""The registered runs, ``configs/experiment/*.yaml``: what each needs, changes and runs, derived from
its composed config (docs/experiments.md, "A run is an experiment file"); running them: :mod:`.jobs`."""

from __future__ import annotations

import functools
import operator
import shlex
from dataclasses import dataclass
from typing import Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf

from taco_plus.schemas import CONFIG_DIR, compose

EXPERIMENT_DIR = CONFIG_DIR / "experiment"
RUNS_DIR = "runs/experiments"
STAGES = ("prepare", "train", "eval", "record")


def lambda_label(lmbda: float) -> str:
    """λ as it names a run folder (``lmbda_0.0016``): Python's shortest repr."""
    return f"lmbda_{float(lmbda)!r}"


@dataclass(frozen=True)
class Run:
    """One registered run: name (the file stem), title, base (None for an anchor), declared changes, rate points,
    evaluation overrides, prepare commands, what it needs beyond this machine, and its composed config."""

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


def eval_dataset(overrides: Sequence[str]) -> str:
    """The dataset evaluation ``overrides`` evaluate on: their last ``data=``, else eval.yaml's Kodak."""
    return next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("data=")), "kodak")


def creates(command: str) -> Optional[str]:
    """The file a prepare command writes (the argument after ``--out``)."""
    words = shlex.split(command)
    return words[words.index("--out") + 1] if "--out" in words[:-1] else None


def declared(name: str) -> tuple[Optional[str], tuple[str, ...]]:
    """The base run and declared changes of ``name``, read without composing ((None, ()) if unregistered)."""
    path = EXPERIMENT_DIR / f"{name}.yaml"
    data = (yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None) or {}
    bases = [d.removeprefix("/experiment/") for d in data.get("defaults") or [] if isinstance(d, str) and d != "_self_"]
    return (bases[0] if bases else None), tuple((data.get("meta") or {}).get("changes") or ())


def load_run(name: str, overrides: Sequence[str] = ()) -> Run:
    """Composes ``experiment=name`` (plus ``overrides``) into a :class:`Run`."""
    if not (EXPERIMENT_DIR / f"{name}.yaml").is_file():
        raise KeyError(f"no registered run {name!r} (no {EXPERIMENT_DIR / name}.yaml); known: {', '.join(run_names())}")
    cfg = compose([f"experiment={name}", *overrides], return_hydra_config=True)
    if cfg.name != name:
        raise ValueError(f"experiment/{name}.yaml sets name={cfg.name!r}: a run's name is its file name")
    sweep = cfg.hydra.sweeper.params or {}
    lambdas = str(sweep["loss.lmbda"]).split(",") if "loss.lmbda" in sweep else [cfg.loss.lmbda]
    prepare = tuple(cfg.meta.prepare)
    regenerates = any(c.startswith("taco-plus captions regenerate") for c in prepare)
    needs = [what for what, needed in (("GPU training", cfg.trainer.device != "cpu"), ("the released TACO checkpoints",
             cfg.trainer.init_from is not None), ("the OpenAI API (caption regeneration)", regenerates)) if needed]
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
