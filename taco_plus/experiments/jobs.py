"""The study as jobs of a Hydra launcher, one per (run, λ, seed): train (resumable), evaluate (under submitit a job
of its own), record the point into the results registry (docs/experiments.md, "Running the study")."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Sequence

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from taco_plus.schemas import CONFIG_PATH, compose
from taco_plus.experiments.record import RESULTS_DIR, record_run
from taco_plus.experiments.registry import RUNS_DIR, Run, eval_dataset, lambda_label

# hydra-submitit-launcher's parameters that submitit takes without the cluster's prefix
BASE_PARAMS = ("timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name")


def point_label(lmbda: float, seed: int, run_seed: int) -> str:
    """A job's training folder and registry point: ``lmbda_<λ>``, plus ``_seed<S>`` for another seed than the run's."""
    return lambda_label(lmbda) + ("" if int(seed) == run_seed else f"_seed{seed}")


@dataclass
class Evaluation:
    """Evaluates a trained point into ``<runs_dir>/<run>/eval/<label>`` (resumable) and records it."""

    name: str
    label: str
    overrides: List[str]
    runs_dir: str
    results: str
    force: bool = False

    def __call__(self) -> Path:
        import taco_plus.evaluate as evaluate

        out, run_dir = Path(self.runs_dir) / self.name / "eval" / self.label, Path(self.runs_dir) / self.name
        evaluate.run(compose([*self.overrides, f"checkpoint={run_dir / self.label / 'checkpoints' / 'final.pt'}",
                              f"out_dir={out}", f"name={self.name}"], "eval"))
        return record_run(out, self.name, Path(self.results), dataset=eval_dataset(self.overrides), force=self.force,
                          command=f"python -m taco_plus.experiments run {self.name} ({self.label})")

    def checkpoint(self) -> Any:  # submitit's pre-emption and time-limit hook: requeue
        return __import__("submitit").helpers.DelayedSubmission(self)


def submit_evaluation(evaluation: Evaluation, launcher: Any) -> None:
    """Submits ``evaluation`` with the training job's launcher parameters (a local job is awaited)."""
    import submitit

    params = {**OmegaConf.to_container(launcher, resolve=True), "tasks_per_node": 1, "nodes": 1,
              "name": f"{evaluation.name}_eval"}
    cluster = "slurm" if params.pop("_target_").endswith("SlurmLauncher") else "local"
    executor = submitit.AutoExecutor(Path(params.pop("submitit_folder")).parent.parent / "eval" / "%j", cluster=cluster,
                                     **{f"{cluster}_{k}": params.pop(k) for k in ["max_num_timeout"] if k in params})
    executor.update_parameters(**{k if k in BASE_PARAMS else f"{cluster}_{k}": v for k, v in params.items()})
    job = executor.submit(evaluation)
    print(f"{evaluation.name} {evaluation.label}: evaluation job {job.job_id}", flush=True)
    if cluster == "local":
        job.result()


@hydra.main(config_path=CONFIG_PATH, config_name=None, version_base="1.3")  # compose() finds the configs
def main(cfg: Any) -> None:
    """One job, ``+job=RUN/λ/SEED``, with what :func:`jobs_command` and ``run`` add (defaults below)."""
    from taco_plus.train import train
    from taco_plus.train.preemption import TrainingInterrupted, exit_by_signal

    cfg = OmegaConf.merge({"runs_dir": RUNS_DIR, "results": str(RESULTS_DIR), "stages": ["train", "eval"], "train": [],
                           "eval": [], "force": False}, cfg)  # train, eval: overrides added to every job's
    name, lmbda, seed = cfg.job.split("/")
    run = compose([f"experiment={name}"])
    train_cfg = compose([f"experiment={name}", f"loss.lmbda={lmbda}", f"trainer.seed={seed}", "trainer.resume=auto",
                         *cfg.train])
    label = point_label(float(lmbda), seed, run.trainer.seed)
    if "train" in cfg.stages and not (Path(cfg.runs_dir) / name / label / "checkpoints" / "final.pt").is_file():
        try:
            train(train_cfg, Path(cfg.runs_dir) / name / label)
        except TrainingInterrupted as stop:  # the signal's default action; submitit's handler requeues instead
            print(f"taco-plus train: {stop}", file=sys.stderr)
            exit_by_signal(stop.signum)
    if {"eval", "record"} & set(cfg.stages) and int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0))) == 0:
        evaluation = Evaluation(name, label, [*run.meta.eval, *cfg.eval], cfg.runs_dir, cfg.results, cfg.force)
        launcher = HydraConfig.get().launcher  # under submitit a job of its own, else here and now
        submit_evaluation(evaluation, launcher) if "submitit" in launcher._target_ else evaluation()


def jobs_command(jobs: Iterable[tuple[str, float, int]], runs_dir: str = RUNS_DIR, launcher: str = "basic",
                 overrides: Sequence[str] = ()) -> list[str]:
    """The Hydra multirun of this module over ``jobs`` (run, λ, seed)."""
    jobs = ",".join(f"{n}/{v!r}/{s}" for n, v, s in jobs)
    return ["python", "-m", "taco_plus.experiments.jobs", "-m", f"+job={jobs}", f"+runs_dir={runs_dir}",
            f"hydra/launcher={launcher}", f"hydra.sweep.dir={runs_dir}/.jobs", "hydra.sweep.subdir=${hydra.job.num}",
            *overrides]


def job_table(runs: Sequence[Run], lambdas: Sequence[float] = (), seeds: Sequence[int] = (), runs_dir: str = RUNS_DIR,
              results: Path = RESULTS_DIR, force: bool = False, launcher_args: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (run, λ, seed): GPUs per job, the recorded step time, and what is left to do."""
    gpus = {k: int(v) for k, _, v in (a.partition("=") for a in launcher_args) if k in ("gpus_per_node", "nodes")}
    bench = Path(results) / "bench" / "train_step.csv"
    steps = pd.read_csv(bench) if bench.is_file() else pd.DataFrame(columns=["variant", "precision", "compile"])
    rows = []
    for run in runs:
        if set(map(float, lambdas)) - set(run.lambdas):
            raise ValueError(f"run {run.name!r}: unknown rate points {list(lambdas)} (its own: {list(run.lambdas)})")
        provenance = Path(results) / run.name / "provenance.json"
        done = {p["label"] for p in json.loads(provenance.read_text())["points"]} if provenance.is_file() else set()
        step = steps[(steps.variant == run.cfg.hydra.runtime.choices.attention) & ~steps["compile"].astype(bool)
                     & (steps.precision == run.cfg.trainer.precision)].get("step_ms", [])
        for lmbda in lambdas or run.lambdas:
            for seed in seeds or [run.cfg.trainer.seed]:
                label = point_label(lmbda, seed, run.cfg.trainer.seed)
                trained = (Path(runs_dir) / run.name / label / "checkpoints" / "final.pt").is_file()
                rows.append({"run": run.name, "λ": lmbda, "seed": seed, "folder": label,
                             "GPUs": 0 if run.cfg.trainer.device == "cpu" else gpus.get("gpus_per_node", 1) *
                             gpus.get("nodes", 1), "step (ms)": f"{step.iloc[0]:.0f}" if len(step) else "—",
                             "to do": "nothing (recorded)" if label in done and not force else
                             "evaluate, record" if trained else "train, evaluate, record"})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
