"""Helpers shared by the caption tests: tiny images, a fast run config, the fake server fixture."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captions_server import FakeOpenAIServer

from taco_plus.captions.regenerate import RegenerateConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

# A key that must never show up in any file a run writes.
SENTINEL_KEY = "sk-taco-plus-test-SENTINEL-7f3c9a2b"


def make_images(directory: Path, n: int) -> list[str]:
    """``n`` small random PNGs with distinct sizes (im00.png is 40x30, im01.png 41x31, ...)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        name = f"im{i:02d}.png"
        pixels = rng.integers(0, 256, size=(30 + i, 40 + i, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / name)
        names.append(name)
    return names


def caption_size(caption: str) -> tuple[int, int]:
    """The image size the fake server saw, from its caption."""
    match = re.match(r"A test photograph of (\d+)x(\d+) pixels", caption)
    assert match, caption
    return int(match.group(1)), int(match.group(2))


def expected_size(image_id: str) -> tuple[int, int]:
    i = int(image_id[2:4])
    return 40 + i, 30 + i


def fast_config(tmp_path: Path, server: FakeOpenAIServer, **overrides) -> RegenerateConfig:
    """A run against ``server`` with tiny timeouts and backoff."""
    settings = dict(
        out=tmp_path / "out" / "set.json",
        image_root=tmp_path / "images",
        base_url=server.base_url,
        concurrency=4,
        timeout=2.0,
        poll_interval=0.01,
        progress=False,
    )
    settings.update(overrides)
    return RegenerateConfig(**settings)


def assert_key_absent(directory: Path) -> None:
    """No file under ``directory`` contains the sentinel key."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert SENTINEL_KEY.encode() not in path.read_bytes(), path


@pytest.fixture
def fake_server():
    with FakeOpenAIServer(api_key=SENTINEL_KEY, hang_seconds=3.0) as server:
        yield server


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_KEY)
    return SENTINEL_KEY


# A regeneration run in a child process (the library directly: fast to start).
CHILD = (
    "import json, sys\n"
    "from taco_plus.captions.regenerate import RegenerateConfig, regenerate\n"
    "regenerate(RegenerateConfig(**json.loads(sys.argv[1])))\n"
)


def journal_records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_and_kill(cfg, until, timeout=60.0):
    """Start ``regenerate(cfg)`` in a subprocess and SIGKILL it once ``until(journal_text)``."""
    settings = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in vars(cfg).items()}
    env = dict(os.environ, OPENAI_API_KEY=SENTINEL_KEY, PYTHONPATH=str(REPO_ROOT))
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(settings)], env=env)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            text = cfg.journal_path.read_text() if cfg.journal_path.exists() else ""
            if until(text) or child.poll() is not None:
                break
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, "the run ended before it could be interrupted"
