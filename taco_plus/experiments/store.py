"""The results registry: recorded runs and measurements under ``experiments/results/``.

Layout (every file traceable to the code, config and captions that made it)::

    experiments/results/
      <run>/                       one recorded run (``python -m taco_plus.experiments record``)
        results.json               its RD curve, CompressAI format, one value per rate point
        provenance.json            commits, caption-set fingerprints, checkpoints, sha256 of every file
        points/<label>/            one folder per rate point (label: the training run folder, lmbda_<λ>)
          results.json             that point's evaluation results (with its own provenance meta)
          per_image.csv            per-image metrics (taco_plus.results.per_image columns)
          eval_config.yaml         the resolved evaluation config (when known)
          train_config.yaml        the resolved training config (when known)
          train_log.csv            the training log (when found)
          sensitivity/             caption-sensitivity table and per-mode CSVs (when evaluated)
      bench/attention.csv          adapter attention benchmark + attention.provenance.json, attention.log
      cost/step_time.json          training-step time and FLOPs per profile (+ step_time.log)
      captions/caption_stats.json  caption-set statistics (originals; regenerated when present)
      weighting/token_weights.json token-weight examples from the weighting code

Readers raise :class:`MissingResultError` naming the missing file and the command that
makes it, so a table or figure never silently loses its source.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from taco_plus.experiments.paths import REGISTRY_DIR
from taco_plus.results.format import load_results
from taco_plus.results.per_image import read_per_image_csv

# Folders of the registry that hold measurements, not runs.
RESERVED = ("bench", "cost", "captions", "weighting")
RUN_FORMAT = "taco-plus/recorded-run"

# Relative path -> the command that writes it (for error messages).
MADE_BY = {
    "bench/attention.csv": "python -m taco_plus.experiments bench-attention",
    "bench/attention.provenance.json": "python -m taco_plus.experiments bench-attention",
    "cost/step_time.json": "python -m taco_plus.experiments.step_time",
    "captions/caption_stats.json": "python -m taco_plus.experiments caption-stats",
    "weighting/token_weights.json": "python -m taco_plus.experiments token-weights",
}


class MissingResultError(FileNotFoundError):
    """A source file of a table, figure or comparison is missing."""


def require(path: Path, made_by: Optional[str] = None) -> Path:
    """``path`` if it is a file, else :class:`MissingResultError` naming it (and its maker)."""
    if not Path(path).is_file():
        hint = f"; it is written by `{made_by}`" if made_by else ""
        raise MissingResultError(f"missing result file: {path}{hint}")
    return Path(path)


def read_json(path: Path, made_by: Optional[str] = None) -> Any:
    require(path, made_by)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON: {err}") from None


@dataclass
class RecordedRun:
    """A run recorded in the registry.

    Args:
        name: run name (folder name).
        path: its folder.
        results: the RD curve (CompressAI results dict).
        provenance: ``provenance.json``.
    """

    name: str
    path: Path
    results: dict[str, Any]
    provenance: dict[str, Any]

    @property
    def dataset(self) -> str:
        return str(self.provenance.get("dataset") or "unknown")

    @property
    def labels(self) -> list[str]:
        return [p["label"] for p in self.provenance.get("points", [])]

    def per_image(self, label: str) -> list[dict[str, Any]]:
        """Per-image rows of rate point ``label``."""
        return read_per_image_csv(require(self.path / "points" / label / "per_image.csv"))

    def sensitivity_csv(self, label: str) -> Optional[Path]:
        """The point's caption-sensitivity table, or None when it was not evaluated."""
        path = self.path / "points" / label / "sensitivity" / "sensitivity.csv"
        return path if path.is_file() else None


class ResultsRegistry:
    """Read access to ``experiments/results`` (or another registry folder).

    Args:
        root: the registry folder.
    """

    def __init__(self, root: str | os.PathLike = REGISTRY_DIR) -> None:
        self.root = Path(root)

    def file(self, relative: str) -> Path:
        """A measurement file of the registry (``bench/attention.csv`` ...), required to exist."""
        return require(self.root / relative, MADE_BY.get(relative))

    def json(self, relative: str) -> Any:
        return read_json(self.root / relative, MADE_BY.get(relative))

    def run_dir(self, name: str) -> Path:
        if name in RESERVED:
            raise ValueError(f"{name!r} is a reserved registry folder, not a run name")
        return self.root / name

    def has_run(self, name: str) -> bool:
        """True when ``name`` was recorded (its folder exists; it may still be incomplete)."""
        return name not in RESERVED and (self.root / name).is_dir()

    def runs(self) -> list[str]:
        """Names of the recorded runs, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and p.name not in RESERVED and not p.name.startswith("."))

    def run(self, name: str) -> RecordedRun:
        """Loads a recorded run; :class:`MissingResultError` if it or one of its files is missing."""
        path = self.run_dir(name)
        if not path.is_dir():
            raise MissingResultError(
                f"run {name!r} is not in the registry ({path} does not exist); record it with "
                f"`python -m taco_plus.experiments record RUN_DIR --name {name}`"
            )
        provenance = read_json(path / "provenance.json", "python -m taco_plus.experiments record")
        if provenance.get("format") != RUN_FORMAT:
            raise ValueError(f"{path / 'provenance.json'}: not a recorded-run provenance file")
        results = load_results(require(path / "results.json", "python -m taco_plus.experiments record"))
        run = RecordedRun(name, path, results, provenance)
        for label in run.labels:  # every point's files must be there
            require(path / "points" / label / "per_image.csv", "python -m taco_plus.experiments record")
        return run
