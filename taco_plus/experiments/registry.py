"""The ablation registry: ``experiments/ablations.yaml`` as typed entries and commands.

Each entry is one run of the study: the Hydra overrides that train it (one model per
rate point λ), the overrides that evaluate it, what it changes, what it needs, and the
step-time profile its cost is estimated from. :meth:`Ablation.commands` renders the
exact shell commands (prepare -> train per λ -> evaluate -> record); the tests
compose every override list against ``taco_plus/configs/`` so a command in the registry cannot
silently rot.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from taco_plus.experiments.paths import ABLATIONS_FILE

FORMAT = "taco-plus/ablations"
DEVICES = ("gpu", "cpu")
DEFAULT_RUNS_DIR = "runs/experiments"


class RegistryError(ValueError):
    """``experiments/ablations.yaml`` is malformed; the message names the entry and key."""


@dataclass(frozen=True)
class Prepare:
    """A one-off command an entry needs before training (an artefact fit, a caption set).

    Args:
        command: shell command with ``{data}``/``{official}`` placeholders.
        creates: the file it writes; the step is skipped when it exists.
    """

    command: str
    creates: str


@dataclass(frozen=True)
class Ablation:
    """One run of the ablation study (one entry of ``ablations.yaml``).

    Args:
        name: run name; its results land in ``experiments/results/<name>/``.
        title: short label for tables and plots.
        ablation: which study it belongs to (baseline, attention, weighting, captions,
            combination, finetune, quickstart).
        changes: what differs from the baseline, in words.
        train: Hydra overrides of ``python -m taco_plus.train`` (placeholders allowed).
        lambdas: rate points; one model is trained per λ.
        eval: Hydra overrides of ``python -m taco_plus.evaluate``.
        device: ``gpu`` or ``cpu`` (what the training is meant to run on).
        cost_profile: key of ``taco_plus.experiments.step_time.PROFILES``.
        needs: keys of the registry's ``needs`` table (why it may not have been run).
        prepare: one-off commands before training.
    """

    name: str
    title: str
    ablation: str
    changes: str
    train: tuple[str, ...]
    lambdas: tuple[float, ...]
    eval: tuple[str, ...]
    device: str
    cost_profile: str
    needs: tuple[str, ...] = ()
    prepare: tuple[Prepare, ...] = ()

    # -------------------------------------------------------------- commands
    def train_overrides(self, lmbda: float, placeholders: Optional[Mapping[str, str]] = None) -> list[str]:
        """The training overrides of rate point ``lmbda`` with placeholders filled in."""
        values = {**default_placeholders(), **dict(placeholders or {}), "lmbda": format_lambda(lmbda)}
        return [render(o, values) for o in self.train] + [f"loss.lmbda={format_lambda(lmbda)}"]

    def run_dir(self, lmbda: float, runs_dir: str = DEFAULT_RUNS_DIR) -> str:
        return f"{runs_dir}/{self.name}/lmbda_{format_lambda(lmbda)}"

    def checkpoints(self, runs_dir: str = DEFAULT_RUNS_DIR) -> list[str]:
        return [f"{self.run_dir(lam, runs_dir)}/checkpoints/final.pt" for lam in self.lambdas]

    def eval_dir(self, runs_dir: str = DEFAULT_RUNS_DIR) -> str:
        return f"{runs_dir}/{self.name}/eval"

    def eval_overrides(self, runs_dir: str = DEFAULT_RUNS_DIR, placeholders: Optional[Mapping[str, str]] = None) -> list[str]:
        values = {**default_placeholders(), **dict(placeholders or {})}
        return [f"name={self.name}", "checkpoint=" + ",".join(self.checkpoints(runs_dir)),
                *[render(o, values) for o in self.eval], f"hydra.sweep.dir={self.eval_dir(runs_dir)}"]

    def commands(
        self, runs_dir: str = DEFAULT_RUNS_DIR, placeholders: Optional[Mapping[str, str]] = None
    ) -> dict[str, list[list[str]]]:
        """Argument lists per stage: ``prepare``, ``train`` (one per λ), ``eval``, ``record``."""
        values = {**default_placeholders(), **dict(placeholders or {})}
        return {
            "prepare": [shlex.split(render(p.command, values)) for p in self.prepare],
            "train": [
                ["python", "-m", "taco_plus.train", *self.train_overrides(lam, values),
                 f"run_dir={self.run_dir(lam, runs_dir)}"]
                for lam in self.lambdas
            ],
            "eval": [["python", "-m", "taco_plus.evaluate", "-m", *self.eval_overrides(runs_dir, values)]],
            "record": [["python", "-m", "taco_plus.experiments", "record", self.eval_dir(runs_dir),
                        "--name", self.name]],
        }

    @property
    def dataset(self) -> str:
        """The evaluation dataset: the ``data=`` choice of its eval overrides (eval.yaml: kodak)."""
        choices = [o.split("=", 1)[1] for o in self.eval if o.startswith("data=")]
        return choices[-1] if choices else "kodak"

    def anchor(self) -> str:
        """The heading anchor of this run in ``experiments/README.md`` (heading ``### <name>``)."""
        return self.name


@dataclass(frozen=True)
class Registry:
    """The parsed ``ablations.yaml``.

    Args:
        runs: entries in file order.
        cost_model: the ``cost_model`` node (step-time file, assumed GPU throughput).
        needs: reason key -> human text ("needs GPU training").
        path: the file read.
    """

    runs: tuple[Ablation, ...]
    cost_model: Mapping[str, Any]
    needs: Mapping[str, str]
    path: Path
    by_name: Mapping[str, Ablation] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {r.name: r for r in self.runs})

    def __getitem__(self, name: str) -> Ablation:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"no run {name!r} in {self.path}; known: {', '.join(self.by_name)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __iter__(self):
        return iter(self.runs)

    def not_run_reason(self, run: Ablation, readme: str = "experiments/README.md") -> str:
        """Why ``run`` has no results: its needs, and where to read how to run it."""
        reasons = [self.needs.get(n, n) for n in run.needs] or ["not recorded yet"]
        return f"not run: {'; '.join(reasons)}, see {readme}#{run.anchor()}"


def format_lambda(lmbda: float) -> str:
    """λ as Python prints it (``0.0016``), the form used in run folder names."""
    return repr(float(lmbda))


def default_placeholders() -> dict[str, str]:
    """``{data}`` from ``$TACO_DATA`` (default ``data``), ``{official}`` from ``$TACO_OFFICIAL``."""
    return {"data": os.environ.get("TACO_DATA", "data"),
            "official": os.environ.get("TACO_OFFICIAL", "checkpoints/official")}


def render(text: str, values: Mapping[str, str]) -> str:
    """Fills ``{name}`` placeholders; an unknown one is an error naming it."""
    try:
        return text.format(**values)
    except KeyError as err:
        raise RegistryError(f"unknown placeholder {{{err.args[0]}}} in {text!r}") from None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise RegistryError(f"{where}: expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _parse_run(raw: Any, defaults: Mapping[str, Any], index: int) -> Ablation:
    if not isinstance(raw, dict):
        raise RegistryError(f"runs[{index}]: expected a mapping, got {type(raw).__name__}")
    name = raw.get("name")
    where = f"runs[{index}] ({name})"
    known = {"name", "title", "ablation", "changes", "train", "lambdas", "eval", "device", "cost_profile",
             "needs", "prepare"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RegistryError(f"{where}: unknown keys {unknown}")
    entry = {**defaults, **raw}
    for key in ("name", "title", "ablation", "changes"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise RegistryError(f"{where}: '{key}' must be a non-empty string")
    if not name.replace("_", "").isalnum() or name != name.lower():
        raise RegistryError(f"{where}: name must be lower-case letters, digits and '_'")
    lambdas = entry.get("lambdas")
    if not isinstance(lambdas, list) or not lambdas or not all(
        isinstance(v, (int, float)) and v > 0 for v in lambdas
    ):
        raise RegistryError(f"{where}: 'lambdas' must be a non-empty list of positive numbers")
    if len(set(lambdas)) != len(lambdas):
        raise RegistryError(f"{where}: repeated λ in {lambdas}")
    if entry.get("device") not in DEVICES:
        raise RegistryError(f"{where}: 'device' must be one of {DEVICES}")
    prepare = []
    for j, p in enumerate(entry.get("prepare") or []):
        if not isinstance(p, dict) or set(p) != {"command", "creates"}:
            raise RegistryError(f"{where}: prepare[{j}] needs exactly 'command' and 'creates'")
        prepare.append(Prepare(str(p["command"]), str(p["creates"])))
    train = _strings(entry.get("train"), f"{where}.train")
    if any(o.split("=", 1)[0].lstrip("+~") in ("loss.lmbda", "run_dir") for o in train):
        raise RegistryError(f"{where}: 'train' must not set loss.lmbda or run_dir (they come from 'lambdas')")
    return Ablation(
        name=name, title=entry["title"].strip(), ablation=entry["ablation"], changes=" ".join(entry["changes"].split()),
        train=train, lambdas=tuple(float(v) for v in lambdas), eval=_strings(entry.get("eval"), f"{where}.eval"),
        device=entry["device"], cost_profile=str(entry.get("cost_profile")),
        needs=_strings(entry.get("needs") or [], f"{where}.needs"),
        prepare=tuple(prepare),
    )


def parse_registry(data: Any, path: Path = ABLATIONS_FILE) -> Registry:
    """Validates the loaded YAML; raises :class:`RegistryError` naming the problem."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RegistryError(f"{path}: not an ablation registry (format must be {FORMAT!r})")
    if data.get("format_version") != 1:
        raise RegistryError(f"{path}: unsupported format_version {data.get('format_version')!r}")
    defaults = data.get("defaults") or {}
    runs = [_parse_run(r, defaults, i) for i, r in enumerate(data.get("runs") or [])]
    if not runs:
        raise RegistryError(f"{path}: no runs")
    names = [r.name for r in runs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RegistryError(f"{path}: duplicate run names {duplicates}")
    needs = {str(k): str(v) for k, v in (data.get("needs") or {}).items()}
    for r in runs:
        missing = [n for n in r.needs if n not in needs]
        if missing:
            raise RegistryError(f"{path}: run {r.name!r} needs {missing}, not described under 'needs'")
    return Registry(tuple(runs), dict(data.get("cost_model") or {}), needs, Path(path))


def load_registry(path: str | os.PathLike = ABLATIONS_FILE) -> Registry:
    """Reads ``experiments/ablations.yaml`` (or another registry file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ablation registry not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise RegistryError(f"{path}: invalid YAML: {err}") from None
    return parse_registry(data, path)


def format_commands(run: Ablation, runs_dir: str = DEFAULT_RUNS_DIR) -> str:
    """The run's commands as shell lines, stage by stage (``show``)."""
    lines = []
    for stage, commands in run.commands(runs_dir).items():
        lines.append(f"# {stage}")
        if stage == "prepare":
            lines += [f"[ -e {shlex.quote(p.creates)} ] || {shlex.join(c)}" for p, c in zip(run.prepare, commands)]
        else:
            lines += [shlex.join(c) for c in commands]
    return "\n".join(lines)


__all__ = ["Ablation", "Prepare", "Registry", "RegistryError", "format_commands", "format_lambda",
           "load_registry", "parse_registry", "render"]
