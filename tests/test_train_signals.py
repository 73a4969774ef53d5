"""Long runs: a stop signal checkpoints at the next step and resuming is exact; a full
disk is a one-line error; the training log has one row per step after a resume."""

from __future__ import annotations

import csv
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from taco_plus.checkpoint import read_checkpoint
from taco_plus.train import Trainer
from taco_plus.train.metrics_log import MetricLog
from taco_plus.train.preemption import TrainingInterrupted
from tests.conftest import REPO_ROOT
from tests.test_train import run_tiny_rd, tiny_data, tiny_overrides  # noqa: F401  (fixture)


def logged_steps(run_dir: Path) -> list[int]:
    with (run_dir / "train_log.csv").open() as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def assert_same_final_state(a: Path, b: Path) -> None:
    """Bitwise-equal weights, optimiser states and RNG of two runs' final.pt."""
    x, y = (read_checkpoint(p / "checkpoints" / "final.pt") for p in (a, b))
    assert x["step"] == y["step"] and x["state_dict"].keys() == y["state_dict"].keys()
    for key, value in x["state_dict"].items():
        assert torch.equal(value, y["state_dict"][key]), key
    for name in ("optimizer", "aux_optimizer"):
        for pid, state in x[name]["state"].items():
            assert all(torch.equal(state[k], y[name]["state"][pid][k]) for k in state)
    assert torch.equal(x["rng"][0]["torch"], y["rng"][0]["torch"])


def wait_for_rows(run_dir: Path, rows: int, running, timeout: float = 300) -> None:
    """Waits until ``train_log.csv`` has ``rows`` rows while ``running()`` holds."""
    deadline = time.monotonic() + timeout
    log = run_dir / "train_log.csv"
    while time.monotonic() < deadline:
        assert running(), "training ended before it was signalled"
        if log.exists() and len(log.read_text().splitlines()) > rows:  # header + rows
            return
        time.sleep(0.05)
    raise TimeoutError("training did not log in time")


def sigterm_after_first_row(cmd: list[str], run_dir: Path, cwd: Path,
                            signum: int = signal.SIGTERM) -> tuple[subprocess.Popen, str]:
    """Starts ``cmd`` in its own session, sends SIGTERM (or ``signum``) to the whole group (as
    scancel does to a job) once the first step is logged, waits; returns the process and its stderr."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for_rows(run_dir, 1, lambda: proc.poll() is None)
        os.killpg(proc.pid, signum)
        return proc, proc.communicate(timeout=300)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_sigterm_to_the_process_group_checkpoints_and_resume_is_exact(tiny_data, tmp_path):  # noqa: F811
    """What scancel / SLURM pre-emption do: SIGTERM to every process of the job (the
    trainer and its data-loader worker), here a real `python -m taco_plus.train`."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "taco_plus.train", *tiny_overrides(tiny_data), "loss=rd",
           "trainer.max_steps=1000", "trainer.checkpoint_every=1000", "data.num_workers=1",
           f"run_dir={run_dir}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    proc, err = sigterm_after_first_row(cmd, run_dir, tmp_path)
    assert proc.returncode == -signal.SIGTERM, err[-3000:]  # ended as SIGTERM ends a process
    last = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    stopped = last["step"]
    assert f"taco-plus train: stopped by SIGTERM after step {stopped}; checkpoint {run_dir}/checkpoints/last.pt" in err
    assert 1 <= stopped < 1000 and not (run_dir / "checkpoints" / "final.pt").exists()
    assert logged_steps(run_dir) == list(range(1, stopped + 1))
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["last.pt"]

    # Resume (trainer.resume=auto) two steps further; compare with an uninterrupted run.
    end = stopped + 2
    resumed = run_tiny_rd(tiny_data, run_dir, "trainer.resume=auto", f"trainer.max_steps={end}",
                          "trainer.checkpoint_every=1000")
    assert [r["step"] for r in resumed.history] == [stopped + 1, end]
    run_tiny_rd(tiny_data, tmp_path / "reference", f"trainer.max_steps={end}", "trainer.checkpoint_every=1000")
    assert_same_final_state(run_dir, tmp_path / "reference")
    assert logged_steps(run_dir) == list(range(1, end + 1))


class RequeueableTraining:
    """What hydra-submitit-launcher hands to submitit: a callable whose ``checkpoint()``
    resubmits it (``BaseSubmititLauncher.checkpoint``). Here the resubmitted state also
    shortens the run to two steps past the checkpoint, so the test knows where it ends."""

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps

    def __call__(self, overrides: list[str], run_dir: str, pids: str) -> int:
        from taco_plus.schemas import compose
        from taco_plus.train import train

        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return train(compose([*overrides, f"trainer.max_steps={self.max_steps}"]), run_dir).steps

    def checkpoint(self, overrides: list[str], run_dir: str, pids: str):
        import submitit

        self.max_steps = read_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")["step"] + 2
        return submitit.helpers.DelayedSubmission(self, overrides, run_dir, pids)


@pytest.mark.slow
def test_submitit_requeues_after_the_checkpoint(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    """submitit's pre-emption signal (SIGUSR2) to a real submitit job: the trainer
    checkpoints at the step boundary, submitit requeues, the new attempt resumes exactly."""
    submitit = pytest.importorskip("submitit")
    # The job unpickles RequeueableTraining from this module, imported from tests/ by pytest.
    path = os.pathsep.join([str(REPO_ROOT), str(Path(__file__).parent)])
    for key, value in {"PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    run_dir, pids = tmp_path / "run", tmp_path / "pids"
    overrides = tiny_overrides(tiny_data, "loss=rd", "trainer.checkpoint_every=1000", "trainer.resume=auto")
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(RequeueableTraining(1000), overrides, str(run_dir), str(pids))
    wait_for_rows(run_dir, 1, lambda: not job.done())
    os.kill(int(pids.read_text().split()[0]), signal.SIGUSR2)
    end = job.result()
    attempts = pids.read_text().split()
    assert len(attempts) == 2 and attempts[0] != attempts[1], job.stderr()
    run_tiny_rd(tiny_data, tmp_path / "reference", f"trainer.max_steps={end}", "trainer.checkpoint_every=1000")
    assert_same_final_state(run_dir, tmp_path / "reference")
    assert logged_steps(run_dir) == list(range(1, end + 1))


def _signal_at_step(monkeypatch, signum: int, step: int, calls: list) -> None:
    """Sends a real ``signum`` to this process when ``step`` is logged."""
    real_flush = MetricLog.flush

    def flush(self, at, *args, **kwargs):
        row = real_flush(self, at, *args, **kwargs)
        if at == step:
            calls.append(at)
            os.kill(os.getpid(), signum)
        return row

    monkeypatch.setattr(MetricLog, "flush", flush)


def test_configured_signal_stops_at_the_step_boundary(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    before = signal.getsignal(signal.SIGUSR1)
    sent = []
    _signal_at_step(monkeypatch, signal.SIGUSR1, 2, sent)
    with pytest.raises(TrainingInterrupted) as stop:
        run_tiny_rd(tiny_data, tmp_path, "trainer.max_steps=6", "trainer.checkpoint_every=1000",
                    "trainer.stop_signals=[SIGUSR1]")
    assert sent == [2] and (stop.value.signum, stop.value.step) == (signal.SIGUSR1, 2)
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGUSR1) == before  # handlers restored after training


def test_previous_python_handler_decides(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    """submitit's way: its handler is called once the checkpoint is written; a handler
    that returns (submitit's for SIGTERM) lets training go on. An ignored signal stays ignored."""
    seen = []

    def handler(signum, frame):
        seen.append((signum, read_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"]))

    previous = signal.signal(signal.SIGUSR2, handler)
    try:
        _signal_at_step(monkeypatch, signal.SIGUSR2, 2, [])
        result = run_tiny_rd(tiny_data, tmp_path, "trainer.max_steps=4", "trainer.checkpoint_every=1000")
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == [(signal.SIGUSR2, 2)] and result.steps == 4 and result.final_checkpoint.is_file()

    monkeypatch.undo()
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        _signal_at_step(monkeypatch, signal.SIGUSR1, 1, [])
        result = run_tiny_rd(tiny_data, tmp_path / "ignored", "trainer.max_steps=2", "trainer.checkpoint_every=1000")
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert result.steps == 2 and not (tmp_path / "ignored" / "checkpoints" / "last.pt").exists()
    with pytest.raises(ValueError, match="SIGKILL"):
        Trainer(stop_signals=["SIGTERM", "SIGKILL"])


def _run_main(argv: list[str], monkeypatch) -> int:
    from hydra.core.global_hydra import GlobalHydra

    from taco_plus.train.__main__ import main

    monkeypatch.setattr(sys, "argv", ["taco_plus.train", *argv])
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        GlobalHydra.instance().clear()
    return exit_info.value.code


def test_full_disk_is_a_one_line_error(tiny_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    common = [*tiny_overrides(tiny_data), "loss=rd", "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'hydra'}"]
    # The log: train_log.csv on /dev/full, where every write fails with ENOSPC.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "train_log.csv").symlink_to("/dev/full")
    assert _run_main([*common, f"run_dir={tmp_path / 'a'}"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert f"taco-plus train: error: [Errno 28] cannot append step 1 to {tmp_path}/a/train_log.csv: " \
           "No space left on device" in err and "Traceback" not in err
    # A checkpoint: the kernel refuses writes past RLIMIT_FSIZE (EFBIG), mid-file.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
    try:
        status = _run_main([*common, f"run_dir={tmp_path / 'b'}"], monkeypatch)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, xfsz)
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert f"taco-plus train: error: [Errno 27] cannot write the step-1 checkpoint {tmp_path}/b/checkpoints/" \
           "last.pt (none was written yet): File too large" in err
    assert list((tmp_path / "b" / "checkpoints").iterdir()) == []  # no partial file left


def test_log_has_one_row_per_step_after_a_resume(tiny_data, tmp_path):  # noqa: F811
    """A run killed after logging step 3 but checkpointed at step 2 (what kill -9 leaves)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_tiny_rd(tiny_data, tmp_path, "trainer.max_steps=3", "trainer.checkpoint_every=2", "trainer.tensorboard=true")
    assert logged_steps(tmp_path) == [1, 2, 3] and read_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    run_tiny_rd(tiny_data, tmp_path, "trainer.max_steps=4", "trainer.resume=auto", "trainer.tensorboard=true")
    assert logged_steps(tmp_path) == [1, 2, 3, 4]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]


@pytest.mark.slow
def test_torchrun_ranks_stop_at_the_same_step(tiny_data, tmp_path):  # noqa: F811
    """SIGTERM to every process of a 2-rank torchrun job (Gloo on CPU): the ranks agree on
    one stop step (they may see the signal at different steps), rank 0 writes last.pt with
    every rank's RNG streams, both end."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29519",
           "-m", "taco_plus.train", *tiny_overrides(tiny_data), "loss=rd", "data.batch_size=1",
           "trainer.max_steps=1000", "trainer.checkpoint_every=1000", f"run_dir={run_dir}",
           f"hydra.run.dir={tmp_path / 'hydra'}"]
    proc, err = sigterm_after_first_row(cmd, run_dir, tmp_path)
    last = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["world_size"] == 2 and len(last["rng"]) == 2
    assert not torch.equal(last["rng"][0]["torch"], last["rng"][1]["torch"])  # per-rank streams
    assert err.count(f"taco-plus train: stopped by SIGTERM after step {last['step']};") == 2, err[-3000:]
    assert logged_steps(run_dir) == list(range(1, last["step"] + 1))
    # 4 images over 2 ranks with batch 1: 2 steps per epoch.
    with (run_dir / "train_log.csv").open() as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [(step - 1) // 2 for step in range(1, last["step"] + 1)]


def test_ctrl_c_checkpoints_like_sigterm(tiny_data, tmp_path):  # noqa: F811
    """Ctrl-C (SIGINT to the foreground process group: the trainer and its data-loader worker) in a real
    `python -m taco_plus.train`: last.pt at the step boundary, one line, ended by SIGINT (130 in a shell)."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "taco_plus.train", *tiny_overrides(tiny_data), "loss=rd", "trainer.max_steps=1000",
           "trainer.checkpoint_every=1000", "data.num_workers=1", f"run_dir={run_dir}", f"hydra.run.dir={tmp_path / 'h'}"]
    proc, err = sigterm_after_first_row(cmd, run_dir, tmp_path, signal.SIGINT)
    assert proc.returncode == -signal.SIGINT and "Traceback" not in err, err[-3000:]
    stopped = read_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert f"taco-plus train: stopped by SIGINT after step {stopped}; checkpoint {run_dir}/checkpoints/last.pt" in err
    assert logged_steps(run_dir) == list(range(1, stopped + 1))


def test_second_ctrl_c_stops_at_once(tiny_data, tmp_path):  # noqa: F811
    """Two SIGINTs within step 2: no waiting for the boundary, no new checkpoint, one line."""
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(tiny_data), "loss=rd", "trainer.max_steps=1000", "trainer.checkpoint_every=1",
                 f"run_dir={run_dir}", f"hydra.run.dir={tmp_path / 'h'}"]
    script = f"""
import os, signal, sys, time
from taco_plus.train import trainer
from taco_plus.train.__main__ import main
step = trainer.Trainer.step
def twice(self, batch, parts, *args):
    if args[-2].step == 1:  # progress: step 2 is running
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the handler runs here
    return step(self, batch, parts, *args)
trainer.Trainer.step = twice
sys.argv = ["taco_plus.train", *{overrides!r}]
main()
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGINT and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "taco-plus train: interrupted: stopped at once, without a new checkpoint" in proc.stderr
    assert read_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 1
