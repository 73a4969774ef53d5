"""Atomic file writes: data goes to ``.<name>.<pid>.<random>.tmp`` beside the destination, fsync'd and renamed
over it, so a crash mid-write leaves the previous file intact."""

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
    if len(name) > 200:  # the temporary's name stays under the 255-byte limit
        name = name[:100] + b"~" + hashlib.sha256(name).hexdigest()[:12].encode()
    return f".{os.fsdecode(name)}."


def remove_stale_temporaries(path: Union[str, os.PathLike]) -> list[Path]:
    """Removes (and returns) the temporaries of ``path`` whose writer process is gone."""
    # Our own pid counts as gone when we are not writing that file: a restarted container reuses pids.
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
    """A temporary file beside ``path`` (``"wb"``, or ``"w"``: UTF-8) replacing it if the block ends normally."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    (path := Path(path)).parent.mkdir(parents=True, exist_ok=True)
    try:
        permissions = stat.S_IMODE(path.stat().st_mode)  # mkstemp alone would give 0o600
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
    """``err`` (same errno) saying ``what`` could not be written: ``[Errno 28] {what}: No space left...``."""
    return OSError(f"{what}: {err}") if err.errno is None else OSError(err.errno, f"{what}: {err.strerror}")


def file_sha256(path: Union[str, os.PathLike], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (what provenance records of the files a result came from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
