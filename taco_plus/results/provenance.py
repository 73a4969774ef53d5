"""Provenance recorded in results files: file hashes, the code's git commit, library versions
and device, so that every curve can be traced back and re-run."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def git_commit(repo: str | os.PathLike = PACKAGE_DIR) -> Optional[str]:
    """``HEAD`` of the checkout holding the code (``+dirty`` if modified); None for a wheel or without git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


def environment(device: Any = None) -> dict[str, Any]:
    """Library versions, host and device of the run, and the time it was written."""
    import compressai
    import torch

    import taco_plus

    env = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "taco_plus": taco_plus.__version__,
           "git_commit": git_commit(), "torch": torch.__version__, "compressai": compressai.__version__,
           "python": platform.python_version(), "host": platform.node()}
    if device is not None:
        env["device"] = str(device)
        if str(device).startswith("cuda") and torch.cuda.is_available():
            env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return env
