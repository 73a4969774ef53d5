"""The evaluation's output folder as a journal, so that a long evaluation can stop and resume (docs/evaluation.md):
``eval_state.json`` (the settings), ``per_image.csv`` (a line fsync'd per image), ``unreadable.jsonl`` and
``fid_state.pt`` (FID sums and the rows they cover). Damaged lines are dropped, named (their images are coded again).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from taco_plus.atomic import atomic_write
from taco_plus.checkpoint import atomic_save
from taco_plus.metrics import FidAccumulator
from taco_plus.results.per_image import CSV_HEADER, csv_lines, parse_row, write_per_image_csv

logger = logging.getLogger(__name__)

STATE_FILE = "eval_state.json"
FID_STATE_FILE = "fid_state.pt"
UNREADABLE_FILE = "unreadable.jsonl"
START_OVER = "choose another out_dir, or resume=false to start over there"


class EvaluationMismatchError(ValueError):
    """``out_dir`` holds an evaluation that cannot be continued (other settings, damaged files)."""


def _read(path: Path, parse: Callable[[str], Any], skip: int = 0) -> tuple[list[tuple[int, Any]], list[int]]:
    """(line number, ``parse(line)``) of ``path``'s lines after the first ``skip``, and the numbers of those that
    do not parse or are cut (no newline: killed mid-write); each dropped line is named in a warning."""
    *lines, cut = path.read_bytes().split(b"\n") if path.is_file() else [b""]
    parsed, damaged = [], []
    for number, line in enumerate(lines[skip:] + ([cut] if cut else []), skip + 1):
        try:
            if number > len(lines):
                raise ValueError("unfinished, cut mid-write")
            parsed.append((number, parse(line.decode("utf-8"))))
        except (ValueError, KeyError, TypeError) as err:  # UnicodeDecodeError included
            damaged.append(number)
            logger.warning("%s line %d dropped (%s): its image is done again", path, number, err)
    return parsed, damaged


class EvaluationJournal:
    """Opens (or, with ``resume``, continues) the evaluation in ``out_dir``; :meth:`add` records one image,
    :meth:`skip` one unreadable image. ``settings`` (JSON-able) is everything that changes the numbers. With
    ``fid``, its sums are snapshotted every ``fid_snapshot_every`` images and restored on resume; rows after
    the last snapshot are dropped (coded again: their samples are not in the sums)."""

    def __init__(self, out_dir: Path, settings: Mapping[str, Any], fid: Optional[FidAccumulator] = None,
                 resume: bool = True, fid_snapshot_every: int = 100) -> None:
        self.out_dir, self.fid, self.fid_snapshot_every = Path(out_dir), fid, max(1, fid_snapshot_every)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        settings = json.loads(json.dumps({**settings, "columns": CSV_HEADER.strip()}, default=str))  # as it reads back
        state_path, csv_path, skip_path = (self.out_dir / f for f in (STATE_FILE, "per_image.csv", UNREADABLE_FILE))
        rows, skips = [], []
        if resume and state_path.is_file():
            try:
                saved = json.loads(state_path.read_text(encoding="utf-8"))["settings"]
                differ = [k for k in sorted({*saved, *settings}) if saved.get(k) != settings.get(k)]
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise EvaluationMismatchError(f"{state_path} is damaged ({type(err).__name__}: {err}), so the rows "
                                              f"in {self.out_dir} cannot be checked: {START_OVER}") from err
            if differ:
                what = "; ".join(f"{k}: {textwrap.shorten(json.dumps(saved.get(k)), 70)} -> "
                                 f"{textwrap.shorten(json.dumps(settings.get(k)), 70)}" for k in differ)
                raise EvaluationMismatchError(f"{self.out_dir} holds an evaluation with other settings ({what}): "
                                              f"{START_OVER}")
            if csv_path.is_file() and not csv_path.read_bytes().startswith(CSV_HEADER.encode()):
                raise EvaluationMismatchError(f"{csv_path} line 1 is not the per-image header: {START_OVER}")
            rows = self._covered(*_read(csv_path, parse_row, skip=1))
            skips = _read(skip_path, lambda line: tuple(str(json.loads(line)[k]) for k in ("id", "error")))[0]
        elif resume and csv_path.is_file():
            raise EvaluationMismatchError(f"{csv_path} exists but {STATE_FILE} does not, so it cannot be resumed: "
                                          f"{START_OVER}")
        else:
            (self.out_dir / FID_STATE_FILE).unlink(missing_ok=True)
        atomic_write(state_path, json.dumps({"settings": settings}, indent=2) + "\n")
        self.rows, self.resumed = rows, len(rows)
        self.unreadable: dict[str, str] = dict(entry for _, entry in skips)  # id -> why it was skipped
        self._csv = write_per_image_csv(rows, csv_path).open("a", encoding="utf-8", newline="")
        self._skips = atomic_write(skip_path, "".join(json.dumps({"id": i, "error": e}) + "\n"
                                                      for i, e in self.unreadable.items())).open("a", encoding="utf-8")
        if rows or skips:
            logger.info("resuming the evaluation in %s: %d images already done, %d unreadable", out_dir, len(rows),
                        len(skips))

    def _covered(self, rows: list[tuple[int, dict[str, Any]]], damaged: list[int]) -> list[dict[str, Any]]:
        """The rows that read back (line numbers from 2) and, with FID, that its snapshot covers."""
        if self.fid is None:
            return [row for _, row in rows]
        snapshot, covered = self.out_dir / FID_STATE_FILE, 0
        if snapshot.is_file():
            try:
                state = torch.load(snapshot, map_location="cpu", weights_only=True)
                self.fid.load_state_dict(state["state"])
                covered = int(state["rows"])
            except Exception as err:  # any damage: the sums cannot be trusted
                raise EvaluationMismatchError(f"{snapshot} is damaged ({type(err).__name__}: {err}): {START_OVER}") from err
        if covered > len(rows) + len(damaged) or any(n - 1 <= covered for n in damaged):
            raise EvaluationMismatchError(f"{snapshot} covers {covered} images but {self.out_dir / 'per_image.csv'} "
                                          f"has {len(rows)} intact rows: {START_OVER}")
        return [row for n, row in rows if n - 1 <= covered]

    def add(self, row: Mapping[str, Any]) -> None:
        """Records a finished image (after its FID samples were added)."""
        self._csv.write(csv_lines([row]))
        self._csv.flush()
        os.fsync(self._csv.fileno())  # a crash after this keeps the row
        self.rows.append(dict(row))
        if self.fid is not None and len(self.rows) % self.fid_snapshot_every == 0:
            self.snapshot_fid()

    def skip(self, image_id: str, error: str) -> None:
        """Records an unreadable image: a resume does not read it again."""
        self._skips.write(json.dumps({"id": image_id, "error": error}) + "\n")
        self._skips.flush()
        self.unreadable[image_id] = error

    def snapshot_fid(self) -> None:
        if self.fid is not None:
            atomic_save({"rows": len(self.rows), "state": self.fid.state_dict()}, self.out_dir / FID_STATE_FILE)

    def close(self) -> None:
        self.snapshot_fid()
        self._csv.close()
        self._skips.close()


class _LogLines:  # a file for tqdm that writes its lines to the log (a batch job has no terminal)
    def write(self, text: str) -> None:
        if text.strip():
            logger.info("%s", text.strip())

    def flush(self) -> None:
        pass


def progress_bar(total: Optional[int], done: int, desc: str, enabled: bool = True) -> Any:
    """A tqdm bar on a terminal; elsewhere a log line at most every minute and at the end."""
    from tqdm.auto import tqdm

    where = dict(dynamic_ncols=True) if sys.stderr.isatty() else dict(file=_LogLines(), mininterval=60, bar_format=(
        "{desc}: {n_fmt}/{total_fmt} images, {rate_fmt}, {remaining} left{postfix}"))
    return tqdm(total=total, initial=done, desc=desc, unit="img", disable=not enabled, **where)
