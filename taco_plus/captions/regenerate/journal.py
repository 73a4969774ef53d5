"""The run journal: an append-only JSONL file that makes regeneration resumable; a half-written last
line is cut off on reopening, any other bad line is an error (docs/captions.md, "Journal")."""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from taco_plus.captions.format import json_bytes
from taco_plus.captions.regenerate.config import RegenerateError

FSYNC_INTERVAL = 1.0  # seconds


class Journal:
    """What a journal says has happened, and (``fh``: the open file) :meth:`append` for more."""

    def __init__(self, fh=None) -> None:
        self._fh, self._synced, self.header = fh, time.monotonic(), None
        # image id -> caption record (the first one), -> last failure; input file id -> upload; batch id -> batch
        self.captions, self.failures, self.uploads, self.batches = {}, {}, {}, {}
        self.finished_batches: set[str] = set()

    def apply(self, record: dict) -> None:
        kind = record.get("type")
        if kind == "header":
            self.header = record
        elif kind == "caption" and record["image_id"] not in self.captions:
            self.captions[record["image_id"]] = record
            self.failures.pop(record["image_id"], None)
        elif kind == "failure":
            self.failures[record["image_id"]] = record
        elif kind == "upload":
            self.uploads[record["file_id"]] = record
        elif kind == "batch":
            self.batches[record["batch_id"]] = record
        elif kind == "batch_done":
            self.finished_batches.add(record["batch_id"])

    def open_batches(self) -> list[str]:
        """Batches created but not yet merged."""
        return [b for b in self.batches if b not in self.finished_batches]

    def uploads_without_batch(self) -> list[str]:
        used = {b["input_file_id"] for b in self.batches.values()}
        return [f for f in self.uploads if f not in used]

    def in_open_batches(self) -> set[str]:
        """Image ids sent in uploads whose results have not been merged yet."""
        done = {self.batches[b]["input_file_id"] for b in self.finished_batches if b in self.batches}
        return {i for f, u in self.uploads.items() if f not in done for i in u["image_ids"]}

    def append(self, record: dict, sync: bool = False) -> None:
        """Write one record; it survives the process from here on (``sync``: the machine too)."""
        if record.get("type") == "caption" and record["image_id"] in self.captions:
            raise RegenerateError(f"refusing to journal a second caption for {record['image_id']!r}")
        self._fh.write(json_bytes(record))
        self._fh.flush()  # in the kernel now: a killed process loses nothing
        self.apply(record)
        if sync or time.monotonic() - self._synced > FSYNC_INTERVAL:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._fh.fileno())
        self._synced = time.monotonic()


def _parse(data: bytes, path: Path, journal: Journal) -> int:
    """Apply the records in ``data`` to ``journal``; returns the length of the valid prefix."""
    offset, lines = 0, data.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "type" not in record:
                raise ValueError("not a journal record")
            journal.apply(record)
        except KeyError as err:
            raise RegenerateError(f"{path}: line {number} lacks {err}; the journal is damaged") from None
        except (ValueError, RecursionError) as err:
            if number == len(lines):  # half-written final line: the crash this journal exists for
                break
            raise RegenerateError(f"{path}: line {number} is unreadable ({err}); the journal is damaged") from None
        offset += len(line)
    return offset


def read_journal(path: os.PathLike | str) -> Journal:
    """A journal's state, read without opening it for writing (dry runs)."""
    journal = Journal()
    if Path(path).exists():
        _parse(Path(path).read_bytes(), Path(path), journal)
    return journal


@contextmanager
def open_journal(path: os.PathLike | str, signature: dict, resume: bool) -> Iterator[Journal]:
    """The journal of a run with ``signature`` (the request settings), created or, with
    ``resume``, continued; locked against a second run until the ``with`` block ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:  # closing it releases the lock
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RegenerateError(f"{path} is in use by another regenerate run") from None
        fh.seek(0)
        data, journal = fh.read(), Journal(fh)
        valid = _parse(data, path, journal)
        if journal.header is not None and not resume:
            raise RegenerateError(f"{path} already holds a run ({len(journal.captions)} captions); pass --resume "
                               "to continue it, or remove it to start over")
        old = journal.header.get("signature", {}) if journal.header else signature
        if changed := sorted(k for k in set(old) | set(signature) if old.get(k) != signature.get(k)):
            details = "; ".join(f"{k}: {old.get(k)!r} -> {signature.get(k)!r}" for k in changed)
            raise RegenerateError(f"{path} was started with different settings ({details}). Mixing them would give "
                               "a caption set with two provenances: use the original settings, or a new --out")
        if valid < len(data):  # cut the half-written line so appends start clean
            fh.truncate(valid)
        elif data and not data.endswith(b"\n"):  # complete last record, newline lost
            fh.write(b"\n")
        if journal.header is None:
            journal.append({"type": "header", "journal_version": 1, "signature": signature})
        try:
            yield journal
        finally:
            journal.sync()
