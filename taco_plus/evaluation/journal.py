"""The evaluation's output folder as a journal, so that a long evaluation can stop and resume:
``eval_state.json`` (the settings; resuming with others is refused), ``per_image.csv`` (a line
fsync'd per finished image) and ``fid_state.pt`` (FID sums and the rows they cover); docs/evaluation.md.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from taco_plus.atomic import atomic_write
from taco_plus.checkpoint import atomic_save
from taco_plus.metrics import FidAccumulator
from taco_plus.results.per_image import csv_lines, read_per_image_csv, write_per_image_csv

logger = logging.getLogger(__name__)

STATE_FILE = "eval_state.json"
FID_STATE_FILE = "fid_state.pt"
START_OVER = "choose another out_dir, or resume=false to start over there"


class EvaluationMismatchError(ValueError):
    """``out_dir`` holds an evaluation made with other settings."""


class EvaluationJournal:
    """Opens (or, with ``resume``, continues) the evaluation in ``out_dir``; :meth:`add` records one image.

    ``settings`` (JSON-able) is everything that changes the numbers. With ``fid``, its sums are
    snapshotted every ``fid_snapshot_every`` images and restored on resume, and the rows after the
    last snapshot are dropped (coded again: their samples are not in the sums).
    """

    def __init__(self, out_dir: Path, settings: Mapping[str, Any], fid: Optional[FidAccumulator] = None,
                 resume: bool = True, fid_snapshot_every: int = 100) -> None:
        self.out_dir = Path(out_dir)
        self.fid = fid
        self.fid_snapshot_every = max(1, fid_snapshot_every)
        settings = json.loads(json.dumps(settings, default=str))  # as it reads back
        state_path, csv_path = self.out_dir / STATE_FILE, self.out_dir / "per_image.csv"
        rows: list[dict[str, Any]] = []
        if resume and state_path.is_file():
            saved = json.loads(state_path.read_text(encoding="utf-8")).get("settings", {})
            differ = sorted(k for k in {*saved, *settings} if saved.get(k) != settings.get(k))
            if differ:
                raise EvaluationMismatchError(f"{self.out_dir} holds an evaluation with other settings "
                                              f"({', '.join(differ)}): {START_OVER}")
            rows = read_per_image_csv(csv_path, finished_only=True) if csv_path.is_file() else []
            if fid is not None:
                covered = 0
                if (self.out_dir / FID_STATE_FILE).is_file():
                    snapshot = torch.load(self.out_dir / FID_STATE_FILE, map_location="cpu", weights_only=True)
                    fid.load_state_dict(snapshot["state"])
                    covered = int(snapshot["rows"])
                if covered > len(rows):
                    raise EvaluationMismatchError(f"{self.out_dir / FID_STATE_FILE} covers {covered} images but "
                                                  f"{csv_path} has {len(rows)} rows: {START_OVER}")
                rows = rows[:covered]
        elif resume and csv_path.is_file():
            raise EvaluationMismatchError(f"{csv_path} exists but {STATE_FILE} does not, so it cannot be resumed: "
                                          f"{START_OVER}")
        else:
            (self.out_dir / FID_STATE_FILE).unlink(missing_ok=True)
        atomic_write(state_path, json.dumps({"settings": settings}, indent=2) + "\n")
        self.rows = rows
        self.resumed = len(rows)
        self._csv = write_per_image_csv(rows, csv_path).open("a", encoding="utf-8", newline="")
        if rows:
            logger.info("resuming the evaluation in %s: %d images already done", self.out_dir, len(rows))

    def add(self, row: Mapping[str, Any]) -> None:
        """Records a finished image (after its FID samples were added)."""
        self._csv.write(csv_lines([row]))
        self._csv.flush()
        os.fsync(self._csv.fileno())  # a crash after this keeps the row
        self.rows.append(dict(row))
        if self.fid is not None and len(self.rows) % self.fid_snapshot_every == 0:
            self.snapshot_fid()

    def snapshot_fid(self) -> None:
        if self.fid is not None:
            atomic_save({"rows": len(self.rows), "state": self.fid.state_dict()}, self.out_dir / FID_STATE_FILE)

    def close(self) -> None:
        self.snapshot_fid()
        self._csv.close()


class _LogLines:
    """A file for tqdm that writes its lines to the log (a batch job has no terminal)."""

    def write(self, text: str) -> None:
        if text.strip():
            logger.info("%s", text.strip())

    def flush(self) -> None:
        pass


def progress_bar(total: Optional[int], done: int, desc: str) -> Any:
    """A tqdm bar on a terminal; elsewhere a log line at most every minute and at the end."""
    from tqdm.auto import tqdm

    if sys.stderr.isatty():
        return tqdm(total=total, initial=done, desc=desc, unit="img", dynamic_ncols=True)
    return tqdm(total=total, initial=done, desc=desc, unit="img", file=_LogLines(), mininterval=60,
                bar_format="{desc}: {n_fmt}/{total_fmt} images, {rate_fmt}, {remaining} left{postfix}")
