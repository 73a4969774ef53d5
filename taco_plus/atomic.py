"""Atomic file writes: a crash mid-write leaves the previous file intact.

Every file the project writes for later use (checkpoints, caption sets, results,
weighting artefacts, ``.tacoz`` files, decoded PNGs) goes through :func:`atomic_writer`:
the data is written to a temporary file in the destination folder, flushed and
fsync'd, then renamed over the destination with ``os.replace`` (atomic on POSIX and
Windows).

The result has the permissions a plain ``open(path, "w")`` would give it: an existing
file keeps its mode, a new one gets ``0o666`` minus the umask (``mkstemp`` alone would
leave ``0o600``). The temporary file is named ``.<name>.<pid>.<random>.tmp``, so that
one left behind by a killed writer (``kill -9`` mid-checkpoint) can be recognised and
removed by :func:`remove_stale_temporaries` (checkpoint writes call it; it lists the
folder, too slow to do for every file of a 30k-image evaluation).
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Union


# Temporaries this process is writing now.
_writing: set[Path] = set()


def _umask() -> int:
    # os.umask can only be read by setting it; 0o077 in the meantime errs on the safe side
    # for a file another thread might create in this instant.
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: Union[str, os.PathLike]) -> list[Path]:
    """Removes temporaries of ``path`` whose writer process is gone; returns them.

    A writer on another machine (a shared file system) cannot be checked: its
    temporary is removed when no process of that id runs here.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    if not path.parent.is_dir():
        return removed
    for tmp in path.parent.iterdir():
        if not (tmp.name.startswith(prefix) and tmp.name.endswith(".tmp")):
            continue
        pid = tmp.name[len(prefix) :].split(".", 1)[0]
        if not pid.isdigit() or tmp in _writing:
            continue
        # Our own id but not being written: stale (a restarted container often gives the
        # new process the id of the killed one).
        if int(pid) == os.getpid() or not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


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
    try:
        permissions = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        permissions = 0o666 & ~_umask()
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    _writing.add(tmp)
    try:
        os.chmod(tmp, permissions)
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _writing.discard(tmp)


def write_error(err: OSError, what: str) -> OSError:
    """``err`` (same errno) with a message saying what could not be written, e.g.
    ``[Errno 28] cannot write checkpoint last.pt: No space left on device``."""
    if err.errno is None:
        return OSError(f"{what}: {err}")
    return OSError(err.errno, f"{what}: {err.strerror}")


def atomic_write(path: Union[str, os.PathLike], data: Union[bytes, str]) -> Path:
    """Writes ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns the path."""
    with atomic_writer(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(path)
