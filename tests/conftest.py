"""Shared fixtures. Tests run offline: no hub downloads, data read from ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests use tiny models: one intra-op thread is as fast, and avoids OpenMP threads
# spinning against each other when several test processes share the 2 cores.
torch.set_num_threads(int(os.environ.get("TACO_TEST_THREADS", "1")))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """Path under ../shared, skipping the test with a clear message when absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found: {path} (a user's clone has no ../shared)")
    return path


@pytest.fixture
def kodak_dir() -> Path:
    return shared_path("data", "kodak")


@pytest.fixture
def shared_dir() -> Path:
    return shared_path()
