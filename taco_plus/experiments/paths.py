"""Where the experiment registry, the paper and the shared reference data live.

Paths in registry files are written relative to the repository root (``../shared/...``
for the reference data beside it), so a recorded number names the file it came from
on any clone.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
ABLATIONS_FILE = EXPERIMENTS_DIR / "ablations.yaml"
REGISTRY_DIR = EXPERIMENTS_DIR / "results"
PAPER_DIR = REPO_ROOT / "paper"
GENERATED_DIR = PAPER_DIR / "generated"
SHARED_DIR = REPO_ROOT.parent / "shared"


def relative_to_repo(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root (``../shared/...`` outside it), POSIX style."""
    path = Path(path).resolve()
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, REPO_ROOT)).as_posix()
