"""Atomic writes keep the old file when writing fails half-way, give the permissions of
a plain open, and leave no temporary behind a killed writer."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import torch

from taco_plus.atomic import atomic_write, atomic_writer, remove_stale_temporaries
from taco_plus.checkpoint import atomic_save
from tests.conftest import REPO_ROOT


def test_replaces_content(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write(path, "first")
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temporary left


def test_failure_keeps_previous_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write(path, "good")
    with pytest.raises(RuntimeError):
        with atomic_writer(path, "w") as f:
            f.write("half of a new ver")
            raise RuntimeError("disk full")
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_rejects_unknown_mode(tmp_path):
    with pytest.raises(ValueError):
        with atomic_writer(tmp_path / "x", "a"):
            pass


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w") as f:  # what a plain open gives
            f.write("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode)


def test_existing_files_keep_their_mode(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write(path, "first")
    path.chmod(0o640)
    atomic_write(path, "second")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "second"


def test_temporary_of_a_killed_writer_is_removed(tmp_path):
    """kill -9 in the middle of a write leaves the temporary; the next checkpoint write
    to the same path removes it, and leaves a live writer's temporary alone."""
    path = tmp_path / "last.pt"
    writer = (
        "import sys, time\n"
        "from taco_plus.atomic import atomic_writer\n"
        "with atomic_writer(sys.argv[1]) as f:\n"
        "    f.write(b'half a checkpoint'); f.flush(); print('writing', flush=True); time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))

    def start():
        proc = subprocess.Popen([sys.executable, "-c", writer, str(path)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline() == b"writing\n"
        return proc

    killed, alive = start(), start()
    killed.kill()
    killed.wait()
    temporaries = sorted(p.name for p in tmp_path.iterdir())
    assert len(temporaries) == 2 and all(n.startswith(".last.pt.") and n.endswith(".tmp") for n in temporaries)
    try:
        atomic_save({"step": torch.tensor(1)}, path)
        left = sorted(p.name for p in tmp_path.iterdir())
        assert len(left) == 2 and left[0].startswith(f".last.pt.{alive.pid}.") and left[1] == "last.pt"
    finally:
        alive.kill()
        alive.wait()
    assert remove_stale_temporaries(path) and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
