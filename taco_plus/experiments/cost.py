"""Expected training cost of each registry run, from the measured step profile.

For a GPU run::

    steps per model = trainer.max_steps, or epochs × ⌊training images / batch size⌋
    GPU hours       = rate points × steps per model × FLOPs per step / sustained throughput

* FLOPs per step: measured (``torch.utils.flop_counter`` over one whole training step
  of the run's profile, ``cost/step_time.json``);
* epochs, batch size, ``data.min_side``: from the run's composed training config;
* training images: COCO train2014's 82,783 times the share with both sides ≥ 256
  measured on the COCO sample beside the repository (all of them when no sample);
* the sustained throughput: an assumption of ``ablations.yaml`` (``cost_model``), stated
  in every table that shows GPU hours.

CPU runs (the quickstart) are costed from the CPU step time of their own recorded
training logs when recorded, else not estimated.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional

from taco_plus.experiments.registry import Ablation, Registry
from taco_plus.experiments.store import ResultsRegistry


@dataclass(frozen=True)
class RunCost:
    """Estimated cost of one registry run.

    Args:
        name: run name.
        device: ``gpu`` or ``cpu``.
        models: rate points (one model each).
        steps_per_model: optimiser steps per model.
        flops_per_step: measured FLOPs of one training step of its profile (None for CPU runs).
        gpu_hours: estimated GPU hours for all rate points (None for CPU runs).
        cpu_minutes: measured CPU minutes of all rate points (recorded CPU runs only).
        relative_step_flops: FLOPs per step relative to the baseline profile.
    """

    name: str
    device: str
    models: int
    steps_per_model: int
    flops_per_step: Optional[float]
    gpu_hours: Optional[float]
    cpu_minutes: Optional[float]
    relative_step_flops: Optional[float]


def training_images(step_time: Mapping[str, Any], min_side: int) -> int:
    """COCO train2014 images kept by ``data.min_side`` (estimated from the measured share)."""
    dataset = step_time["dataset"]
    total = int(dataset["coco_train2014_images"])
    sample = dataset.get("min_side_256")
    if min_side <= 0 or sample is None:
        return total
    if min_side != 256:
        raise ValueError(f"the measured share is for min_side 256, not {min_side}")
    return round(total * float(sample["fraction"]))


@lru_cache(maxsize=256)
def _compose(overrides: tuple[str, ...]):
    from taco_plus.config import compose

    return compose(list(overrides))


def _train_config(run: Ablation):
    return _compose(tuple(run.train_overrides(run.lambdas[0])))


def steps_per_model(run: Ablation, step_time: Mapping[str, Any]) -> int:
    cfg = _train_config(run)
    if cfg.trainer.max_steps is not None:
        return int(cfg.trainer.max_steps)
    images = training_images(step_time, int(cfg.data.get("min_side", 0) or 0))
    return int(cfg.trainer.epochs) * (images // int(cfg.data.batch_size))


def _recorded_cpu_minutes(run: Ablation, results: ResultsRegistry) -> Optional[float]:
    """Sum over rate points of the last ``time`` (seconds) in each recorded training log."""
    if not results.has_run(run.name):
        return None
    total, found = 0.0, False
    for log in sorted((results.run_dir(run.name) / "points").glob("*/train_log.csv")):
        with log.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and rows[-1].get("time"):
            total += float(rows[-1]["time"])
            found = True
    return total / 60 if found else None


def run_cost(run: Ablation, registry: Registry, results: ResultsRegistry,
             step_time: Optional[Mapping[str, Any]] = None) -> RunCost:
    """The cost of one run (see the module docstring)."""
    step_time = step_time if step_time is not None else load_step_time(registry, results)
    steps = steps_per_model(run, step_time)
    if run.device == "cpu":
        return RunCost(run.name, "cpu", len(run.lambdas), steps, None, None,
                       _recorded_cpu_minutes(run, results), None)
    profiles = step_time["profiles"]
    if run.cost_profile not in profiles:
        raise KeyError(f"run {run.name!r}: profile {run.cost_profile!r} not measured in the step-time file "
                       f"(measured: {', '.join(profiles)})")
    flops = float(profiles[run.cost_profile]["flops_per_step"])
    baseline = profiles.get("full_38")
    tflops = float(registry.cost_model["assumed_sustained_tflops"])
    hours = len(run.lambdas) * steps * flops / (tflops * 1e12) / 3600
    relative = flops / float(baseline["flops_per_step"]) if baseline else None
    return RunCost(run.name, "gpu", len(run.lambdas), steps, flops, hours, None, relative)


def load_step_time(registry: Registry, results: ResultsRegistry) -> dict[str, Any]:
    """The step-time measurement named by the registry's ``cost_model.step_time``."""
    relative = Path(registry.cost_model.get("step_time", "results/cost/step_time.json"))
    # The path is relative to experiments/; the results registry is experiments/results.
    parts = relative.parts[1:] if relative.parts[:1] == ("results",) else relative.parts
    return results.json("/".join(parts))


def all_costs(registry: Registry, results: ResultsRegistry) -> dict[str, RunCost]:
    step_time = load_step_time(registry, results)
    return {run.name: run_cost(run, registry, results, step_time) for run in registry}
