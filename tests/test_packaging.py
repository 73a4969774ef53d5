"""The package works installed from its wheel, outside this checkout: configs/ ships inside it
(``pkg://taco_plus.configs``), and no code looks for the repository or its neighbours."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# With the installed package, in one interpreter: compose, write a tiny random checkpoint
# (what training saves), the command line's compress and decompress (twice: decoding is
# deterministic), then `python -m taco_plus.train experiment=taco_baseline --cfg job`.
ROUND_TRIP = """
import contextlib, io, runpy, sys
import numpy as np
from PIL import Image
import taco_plus
from taco_plus.checkpoint import build_model, save_codec
from taco_plus.cli import main
from taco_plus.schemas import compose, to_container
assert taco_plus.__file__.startswith(sys.argv[1]), taco_plus.__file__  # the installed copy, not the checkout
cfg = compose(["model=tiny", "text_encoder=tiny"])
save_codec("tiny.pt", build_model(to_container(cfg.model)).eval(), to_container(cfg.model),
           to_container(cfg.text_encoder))
Image.fromarray((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)).save("image.png")
assert main(["compress", "image.png", "--caption", "a test pattern", "--checkpoint", "tiny.pt", "-o", "x.tacoz"]) == 0
for out in ("a.png", "b.png"):
    assert main(["decompress", "x.tacoz", "--checkpoint", "tiny.pt", "-o", out]) == 0
a, b = (np.asarray(Image.open(f)) for f in ("a.png", "b.png"))
assert a.shape == (48, 80, 3) and np.array_equal(a, b)
print("round trip ok")
sys.argv = ["taco_plus.train", "experiment=taco_baseline", "--cfg", "job"]
job = io.StringIO()
with contextlib.redirect_stdout(job):
    runpy.run_module("taco_plus.train", run_name="__main__", alter_sys=True)  # as python -m does
print(job.getvalue())
"""


def _run(args: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_composes_and_codes(tmp_path):
    source = tmp_path / "src"  # a clean copy: no stale build/ folder can leak into the wheel
    for folder in ("taco_plus", "configs"):  # configs/ ships as taco_plus.configs
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    _run(["-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
         tmp_path, dict(os.environ))
    site = tmp_path / "site"
    wheel = next((tmp_path / "dist").glob("taco_plus-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        assert "taco_plus/py.typed" in z.namelist()  # PEP 561: type checkers read the hints
        assert {"taco_plus/configs/train.yaml", "taco_plus/configs/weighting/tfidf.yaml"} <= set(z.namelist())
    _run(["-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], tmp_path, dict(os.environ))

    elsewhere = tmp_path / "elsewhere"  # neither the checkout nor its ../shared
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TACO_DATA",)}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = _run(["-c", ROUND_TRIP, str(site)], elsewhere, env)
    assert "round trip ok" in out
    assert "name: taco_baseline" in out and "mask_padding: false" in out and "convention: reference" in out


def test_open_clip_is_pinned_to_the_tested_release_line():
    """The text encoder reads open_clip's internals: the dependency names a bounded range that
    holds the installed (tested) version."""
    tomllib = pytest.importorskip("tomllib")
    from importlib.metadata import version

    from packaging.requirements import Requirement

    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (open_clip,) = [Requirement(d) for d in dependencies if Requirement(d).name == "open_clip_torch"]
    assert any(s.operator == "<" for s in open_clip.specifier), open_clip
    assert open_clip.specifier.contains(version("open_clip_torch")), (open_clip, version("open_clip_torch"))
