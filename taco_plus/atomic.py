"""Atomic file writes: a crash mid-write leaves the previous file intact.

Data goes to ``.<name>.<pid>.<random>.tmp`` beside the destination (a name over 200 bytes
is cut to its first 100 and a hash, so the temporary's stays under the 255-byte limit), is
fsync'd, then renamed over it (``os.replace``). The result gets the mode a plain ``open(path, "w")``
would give (an existing file's, or ``0o666`` minus the umask; ``mkstemp`` alone gives 0o600).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Union

# Temporaries this process is writing now (never stale).
_writing: set[Path] = set()


def _prefix(path: Path) -> str:
    name = os.fsencode(path.name)
    if len(name) > 200:
        name = name[:100] + b"~" + hashlib.sha256(name).hexdigest()[:12].encode()
    return f".{os.fsdecode(name)}."


def remove_stale_temporaries(path: Union[str, os.PathLike]) -> list[Path]:
    """Removes the temporaries of ``path`` whose writer process is gone; returns them.

    Our own pid counts as gone when we are not writing that file (a restarted container
    often reuses the killed process's pid). A writer on another machine cannot be checked.
    """
    path = Path(path)
    prefix = _prefix(path)
    removed = []
    for tmp in path.parent.iterdir() if path.parent.is_dir() else ():
        pid = tmp.name[len(prefix) :].split(".", 1)[0]
        if not (tmp.name.startswith(prefix) and tmp.name.endswith(".tmp") and pid.isdigit()) or tmp in _writing:
            continue
        try:
            if int(pid) != os.getpid():
                os.kill(int(pid), 0)  # raises when no such process runs
                continue
        except ProcessLookupError:
            pass
        except PermissionError:  # alive, another user's
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


@contextmanager
def atomic_writer(path: Union[str, os.PathLike], mode: str = "wb") -> Iterator[IO]:
    """A temporary file beside ``path`` (``mode`` ``"wb"``, or ``"w"`` for UTF-8 text)
    that replaces ``path`` when the block ends without an exception."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        permissions = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0o077)  # the umask can only be read by setting it
        os.umask(umask)
        permissions = 0o666 & ~umask
    fd, name = tempfile.mkstemp(prefix=f"{_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def atomic_write(path: Union[str, os.PathLike], data: Union[bytes, memoryview, str]) -> Path:
    """Writes ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns the path."""
    with atomic_writer(path, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)
    return Path(path)


def write_error(err: OSError, what: str) -> OSError:
    """``err`` (same errno) saying what could not be written, e.g.
    ``[Errno 28] cannot write checkpoint last.pt: No space left on device``."""
    return OSError(f"{what}: {err}") if err.errno is None else OSError(err.errno, f"{what}: {err.strerror}")


def file_sha256(path: Union[str, os.PathLike], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (what provenance records of the files a result came from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
