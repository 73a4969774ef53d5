"""The study as jobs, end to end: ``python -m taco_plus.experiments run`` through hydra-submitit-launcher's
``submitit_local`` launcher at tiny sizes on the CPU: two runs x one rate point x two seeds, each trained,
evaluated by a job of its own, recorded into the registry and reported; a second submission finds the
work done."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO_ROOT

RUNS = ("quickstart", "quickstart_linformer")


def _study(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TACO_DATA=str(tmp_path / "data"), PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "taco_plus.experiments", "--results", str(tmp_path / "registry"), "run", *RUNS,
               "--lambda", "0.0067", "--seed", "0", "--seed", "1", "--runs-dir", str(tmp_path / "runs"),
               "--launcher", "submitit_local", "-L", "timeout_min=20", "--train", "debug=tiny",
               "--train", "trainer.max_steps=2", "--eval", "data.limit=2", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_the_study_runs_as_submitit_jobs_and_lands_in_the_registry(tmp_path, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from taco_plus.captions.skimage_photos import export_skimage_photos
    from taco_plus.experiments import report
    from taco_plus.experiments.record import load_recorded
    from taco_plus.experiments.registry import load_run

    for path in export_skimage_photos(tmp_path / "data" / "skimage_photos"):  # thumbnails: fast
        with Image.open(path) as im:
            im.convert("RGB").resize((64, 64)).save(path)
    done = _study(tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.count("train, evaluate, record") == 4 and "[jobs] 4 through hydra/launcher=submitit_local" in done.stdout
    assert len(list((tmp_path / "runs" / ".jobs" / "eval").glob("*/*_result.pkl"))) == 4  # one job per evaluation
    for name in RUNS:
        run = load_recorded(name, tmp_path / "registry")
        assert sorted((p["label"], p["seed"]) for p in run.provenance["points"]) == [
            ("lmbda_0.0067", 0), ("lmbda_0.0067_seed1", 1)]
        assert run.results["meta"]["seeds"] == [2] and run.results["meta"]["spread"]["bpp"][0] > 0
        assert (tmp_path / "runs" / name / "lmbda_0.0067_seed1" / "checkpoints" / "final.pt").is_file()

    again = _study(tmp_path)  # re-submission: every job is done
    assert again.returncode == 0 and "every point is recorded" in again.stdout
    assert again.stdout.count("nothing (recorded)") == 4

    monkeypatch.setattr(report, "load_runs", functools.cache(lambda: ({n: load_run(n) for n in RUNS}, {})))
    (tmp_path / "registry" / "bench").mkdir()
    (tmp_path / "registry" / "bench" / "attention.csv").write_bytes(
        (Path(__file__).parent / "fixtures" / "registry" / "bench" / "attention.csv").read_bytes())
    report.build_report(tmp_path / "registry", tmp_path / "generated")
    results = (tmp_path / "generated" / "results.tex").read_text().replace(r"\allowbreak{}", "")
    assert "Quickstart with Linformer (CPU) & quickstart & 2 & 1 &" in results
    assert "Quickstart (CPU, untrained text tower) & lmbda\\_0.0067 & 2 &" in results
    assert "recorded (1 points, 2 seeds)" in (tmp_path / "generated" / "runs.tex").read_text()


def test_a_stopped_training_job_ends_by_its_signal(tmp_path, monkeypatch):
    """A job whose training is stopped by a signal (SLURM pre-emption) ends as that signal's default
    action would, after one line; the evaluation stage is not reached."""
    import signal

    import taco_plus.train
    import taco_plus.train.preemption as preemption
    from omegaconf import OmegaConf

    from taco_plus.experiments.jobs import main

    def stopped(cfg, run_dir):
        raise preemption.TrainingInterrupted(signal.SIGTERM, 3, Path(run_dir) / "checkpoints" / "last.pt")

    def exit_by_signal(signum):
        raise SystemExit(128 + signum)

    monkeypatch.setattr(taco_plus.train, "train", stopped)
    monkeypatch.setattr(preemption, "exit_by_signal", exit_by_signal)
    cfg = OmegaConf.create({"job": "quickstart/0.0067/0", "runs_dir": str(tmp_path / "runs")})
    with pytest.raises(SystemExit) as stop:
        main.__wrapped__(cfg)
    assert stop.value.code == 128 + signal.SIGTERM
