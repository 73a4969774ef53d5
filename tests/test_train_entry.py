"""The training and evaluation entry points on bad input: exit 2 with one line, never a traceback or a hang."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_train import CAPTIONS, run_tiny_rd, tiny_data, tiny_overrides  # noqa: F401  (tiny_data: fixture)


def test_entry_point_reports_user_errors_in_one_line(tiny_data, tmp_path, monkeypatch, capsys):
    from hydra.core.global_hydra import GlobalHydra

    from taco_plus.train.__main__ import main

    argv = ["taco_plus.train", *tiny_overrides(tiny_data), f"data.image_dir={tmp_path / 'missing'}",
            f"run_dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        GlobalHydra.instance().clear()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"taco-plus train: error: image folder not found: {tmp_path / 'missing'}" in err
    assert "Traceback" not in err


def _python(args: list[str], cwd: Path) -> tuple[int, str]:
    import subprocess

    from tests.conftest import REPO_ROOT

    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    return proc.returncode, proc.stdout + proc.stderr  # Hydra's job log (evaluate's errors) goes to stdout


def test_entry_points_print_bad_input_in_one_line(tiny_data, tmp_path):
    """A real `python -m taco_plus.train` / `taco_plus.evaluate`: exit 2, one line, no traceback."""
    garbage = tmp_path / "random.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    run_tiny_rd(tiny_data, tmp_path / "run", "trainer.max_steps=1")
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in CAPTIONS:
        (bad / name).write_bytes(b"not an image")
    common = ["-m", "taco_plus.train", *tiny_overrides(tiny_data), "loss=rd", f"hydra.run.dir={tmp_path / 'h'}"]
    cases = [
        ([*common, f"trainer.resume={garbage}", f"run_dir={tmp_path / 'a'}"],
         f"taco-plus train: error: {garbage} is not a checkpoint, or is damaged"),
        ([*common, "trainer.resume=auto", "model.N=24", f"run_dir={tmp_path / 'run'}"],
         f"taco-plus train: error: cannot resume from {tmp_path / 'run'}/checkpoints/last.pt: it was trained with"),
        ([*common, f"data.image_dir={bad}", "data.num_workers=1", f"run_dir={tmp_path / 'b'}"],
         f"taco-plus train: error: no readable image in {bad}: 4 files failed"),
        (["-m", "taco_plus.evaluate", f"checkpoint={garbage}", "data=kodak", f"data.image_dir={tiny_data}",
          "device=cpu", "metrics.fid.enabled=false", "metrics.clip_score=null", "metrics.lpips=null",
          f"out_dir={tmp_path / 'e'}", f"hydra.run.dir={tmp_path / 'h'}"],
         f"{garbage} is not a checkpoint, or is damaged"),
    ]
    for args, message in cases:
        status, err = _python(args, tmp_path)
        assert status == 2 and message in err and "Traceback" not in err, err[-3000:]
        assert len([line for line in err.splitlines() if "error" in line.lower()]) == 1, err[-3000:]
