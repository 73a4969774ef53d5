"""Atomic file writes: a crash mid-write leaves the previous file intact.

Every file the project writes for later use (checkpoints, caption sets, results,
weighting artefacts, ``.tacoz`` files) goes through :func:`atomic_writer`: the data
is written to a temporary file in the destination folder, flushed and fsync'd, then
renamed over the destination with ``os.replace`` (atomic on POSIX and Windows).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Union


@contextmanager
def atomic_writer(path: Union[str, os.PathLike], mode: str = "wb") -> Iterator[IO]:
    """Opens a temporary file beside ``path``; on success it replaces ``path``.

    Args:
        path: destination file (its folder is created if needed).
        mode: ``"wb"`` for bytes or ``"w"`` for UTF-8 text.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Union[str, os.PathLike], data: Union[bytes, str]) -> Path:
    """Writes ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns the path."""
    with atomic_writer(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(path)
