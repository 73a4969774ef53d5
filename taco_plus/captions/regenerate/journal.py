"""The run journal: an append-only JSONL file that makes regeneration resumable.

Every finished caption is appended as one line and flushed to disk (``fsync``) before
the next is accepted, so killing the process loses at most the requests in flight.
A re-run reads the journal and skips finished images; an image never gets two
caption records. Batch mode also records uploaded input files and created batch ids,
so an interrupted run collects its batches instead of paying for them twice.

Record types (one JSON object per line, ``"type"`` first):

* ``header``     -- journal version and the request ``signature`` (model, prompt hash,
  sampling and image settings); a resumed run must match it.
* ``caption``    -- ``image_id``, ``caption``, ``usage``, ``attempts``, ``mode``, ...
* ``failure``    -- ``image_id``, ``reason`` (informational; the image is retried next run).
* ``upload``     -- batch mode: ``file_id`` of an uploaded input file and its ``image_ids``.
* ``batch``      -- batch mode: ``batch_id`` created for an input ``file_id``.
* ``batch_done`` -- batch mode: a batch whose results were merged.

A crash can leave the last line half-written; it is discarded (and cut off) when the
journal is reopened. Any other unreadable line is an error naming the line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

try:  # advisory lock so two runs cannot append to one journal (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

JOURNAL_VERSION = 1


class JournalError(RuntimeError):
    """An unusable journal (corrupt, locked, or made with different settings)."""


@dataclass
class JournalState:
    """What a journal says has happened so far."""

    header: Optional[dict] = None
    captions: dict = field(default_factory=dict)  # image id -> caption record
    failures: dict = field(default_factory=dict)  # image id -> last failure record
    uploads: dict = field(default_factory=dict)  # input file id -> upload record
    batches: dict = field(default_factory=dict)  # batch id -> batch record
    finished_batches: set = field(default_factory=set)
    duplicates: int = 0  # caption records for already captioned images (ignored)
    truncated_tail: bool = False

    def apply(self, record: dict) -> None:
        kind = record.get("type")
        if kind == "header":
            self.header = record
        elif kind == "caption":
            if record["image_id"] in self.captions:
                self.duplicates += 1
            else:
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

    def open_batches(self) -> list[dict]:
        """Batches created but not yet merged."""
        return [b for bid, b in self.batches.items() if bid not in self.finished_batches]

    def uploads_without_batch(self) -> list[dict]:
        used = {b["input_file_id"] for b in self.batches.values()}
        return [u for fid, u in self.uploads.items() if fid not in used]


def _parse(data: bytes, path: Path) -> tuple[JournalState, int]:
    """State from the journal bytes, and the length of the valid prefix."""
    state = JournalState()
    offset = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines)
        if is_last and not line:  # file ends with a newline
            break
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "type" not in record:
                raise ValueError("not a journal record")
        except ValueError as err:
            if is_last:  # half-written final line: the crash this journal exists for
                state.truncated_tail = True
                break
            raise JournalError(f"{path}: line {number} is unreadable ({err}); the journal is damaged") from None
        try:
            state.apply(record)
        except KeyError as err:
            raise JournalError(f"{path}: line {number} lacks {err}; the journal is damaged") from None
        offset += len(line) + (0 if is_last else 1)
    return state, offset


def read_journal(path: os.PathLike | str) -> JournalState:
    """Read a journal without opening it for writing (used by ``--dry-run``)."""
    path = Path(path)
    if not path.exists():
        return JournalState()
    return _parse(path.read_bytes(), path)[0]


class Journal:
    """An open, locked journal that appends durable records.

    Use :meth:`open`; records are written with :meth:`append` and also applied to
    :attr:`state`.
    """

    def __init__(self, path: Path, fh, state: JournalState) -> None:
        self.path = path
        self._fh = fh
        self.state = state

    @classmethod
    def open(cls, path: os.PathLike | str, signature: dict, resume: bool) -> "Journal":
        """Open (or create) the journal at ``path`` for a run with ``signature``.

        Args:
            path: the JSONL file.
            signature: request settings a resumed run must share (model, prompt hash, ...).
            resume: whether continuing an existing, non-empty journal is allowed.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+b")
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise JournalError(f"{path} is in use by another regenerate run") from None
            fh.seek(0)
            data = fh.read()
            state, valid = _parse(data, path)
            if state.header is not None and not resume:
                raise JournalError(
                    f"{path} already holds a run ({len(state.captions)} captions); pass --resume to "
                    "continue it, or remove it to start over"
                )
            if state.header is not None:
                _check_signature(path, state.header.get("signature", {}), signature)
            if state.truncated_tail:  # cut the half-written line so appends start clean
                fh.truncate(valid)
                os.fsync(fh.fileno())
            elif data and not data.endswith(b"\n"):  # complete last record, newline lost
                fh.write(b"\n")
                fh.flush()
            journal = cls(path, fh, state)
            if state.header is None:
                journal.append({"type": "header", "journal_version": JOURNAL_VERSION, "signature": signature})
            return journal
        except BaseException:
            fh.close()
            raise

    def append(self, record: dict) -> None:
        """Write one record and make it durable before returning."""
        self.append_many([record])

    def append_many(self, records: list[dict]) -> None:
        """Write records with a single ``fsync`` (group commit); durable on return.

        Raises :class:`JournalError`, writing nothing, if a record would give an image a
        second caption.
        """
        seen = set(self.state.captions)
        for record in records:
            if record.get("type") == "caption":
                if record["image_id"] in seen:
                    raise JournalError(f"refusing to journal a second caption for {record['image_id']!r}")
                seen.add(record["image_id"])
        data = b"".join(
            json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n" for r in records
        )
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        for record in records:
            self.state.apply(record)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()  # also releases the lock

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_signature(path: Path, old: dict, new: dict) -> None:
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise JournalError(
            f"{path} was started with different settings ({details}). Mixing them would give a "
            "caption set with two provenances: use the original settings, or a new --out"
        )
