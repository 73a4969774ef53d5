"""Shared fixtures. Tests run offline: no hub downloads, data read from ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
