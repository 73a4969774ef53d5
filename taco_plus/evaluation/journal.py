"""The evaluation's output folder as a journal, so a long evaluation can stop and resume.

MS-COCO 30k takes hours; a pre-empted job, a crash or an unreadable image must not
lose what was computed. The folder holds:

* ``eval_state.json`` -- the settings the rows were computed with (model fingerprint,
  text encoder, caption mode and policy, metrics). Resuming with other settings is
  refused: numbers computed two ways would be averaged together.
* ``per_image.csv`` -- one line appended (and fsync'd) per finished image. A line
  cut by a crash is dropped on resume.
* ``fid_state.pt`` -- the FID running sums and the number of rows they cover, saved
  every ``fid_snapshot_every`` images. On resume the rows after the snapshot are
  recomputed (their FID samples are not in the sums); without FID every row is kept.

An image is done when its row is in the CSV; a resumed run skips it without reading it.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from taco_plus.atomic import atomic_write
from taco_plus.metrics import FidAccumulator
from taco_plus.results.per_image import PerImageLog, read_finished_rows

logger = logging.getLogger(__name__)

STATE_FILE = "eval_state.json"
FID_STATE_FILE = "fid_state.pt"
CSV_FILE = "per_image.csv"


class EvaluationMismatchError(ValueError):
    """``out_dir`` holds an evaluation made with other settings."""


class EvaluationJournal:
    """Opens (or resumes) the evaluation in ``out_dir``; :meth:`add` records one image.

    Args:
        out_dir: the evaluation folder.
        settings: JSON-able description of everything that changes the numbers.
        fid: the run's FID accumulator (its sums are restored on resume), or None.
        resume: continue an evaluation found in ``out_dir``; False starts over.
        fid_snapshot_every: images between two FID snapshots.
    """

    def __init__(
        self,
        out_dir: Path,
        settings: Mapping[str, Any],
        fid: Optional[FidAccumulator] = None,
        resume: bool = True,
        fid_snapshot_every: int = 100,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.fid = fid
        self.fid_snapshot_every = max(1, fid_snapshot_every)
        settings = json.loads(json.dumps(settings, default=str))  # as it reads back
        state_path, csv_path = self.out_dir / STATE_FILE, self.out_dir / CSV_FILE
        rows: list[dict[str, Any]] = []
        if resume and state_path.is_file():
            saved = json.loads(state_path.read_text(encoding="utf-8")).get("settings", {})
            differ = sorted(k for k in {*saved, *settings} if saved.get(k) != settings.get(k))
            if differ:
                raise EvaluationMismatchError(
                    f"{self.out_dir} holds an evaluation with other settings ({', '.join(differ)}): "
                    "choose another out_dir, or resume=false to start over there"
                )
            rows = read_finished_rows(csv_path) if csv_path.is_file() else []
            if fid is not None:
                covered = self._restore_fid()
                if covered > len(rows):
                    raise EvaluationMismatchError(
                        f"{self.out_dir / FID_STATE_FILE} covers {covered} images but {csv_path} has {len(rows)} "
                        "rows: resume=false to start over"
                    )
                rows = rows[:covered]
        elif resume and csv_path.is_file():
            raise EvaluationMismatchError(
                f"{csv_path} exists but {STATE_FILE} does not, so it cannot be resumed: "
                "choose another out_dir, or resume=false to start over there"
            )
        else:
            (self.out_dir / FID_STATE_FILE).unlink(missing_ok=True)
        atomic_write(state_path, json.dumps({"settings": settings}, indent=2) + "\n")
        self.log = PerImageLog(csv_path, rows)
        self.resumed = len(rows)
        if rows:
            logger.info("resuming the evaluation in %s: %d images already done", self.out_dir, len(rows))

    def _restore_fid(self) -> int:
        """Loads the FID snapshot; returns how many rows it covers (0 without one)."""
        path = self.out_dir / FID_STATE_FILE
        if not path.is_file():
            return 0
        snapshot = torch.load(path, map_location="cpu", weights_only=True)
        self.fid.load_state_dict(snapshot["state"])
        return int(snapshot["rows"])

    @property
    def done(self) -> set[str]:
        return {row["id"] for row in self.log.rows}

    def add(self, row: Mapping[str, Any]) -> None:
        """Records a finished image (after its FID samples were added)."""
        self.log.append(row)
        if self.fid is not None and len(self.log.rows) % self.fid_snapshot_every == 0:
            self.snapshot_fid()

    def snapshot_fid(self) -> None:
        if self.fid is None:
            return
        buffer = io.BytesIO()
        torch.save({"rows": len(self.log.rows), "state": self.fid.state_dict()}, buffer)
        atomic_write(self.out_dir / FID_STATE_FILE, buffer.getvalue())

    def close(self) -> None:
        self.snapshot_fid()
        self.log.close()


class Progress:
    """A tqdm bar on a terminal, and a log line at most every ``every_s`` seconds
    (batch jobs' logs): images done of the total, rate, time left, skipped images.

    Args:
        total: images in the run (None when unknown).
        done: images already done by an earlier run.
        desc: label.
        every_s: seconds between two log lines.
    """

    def __init__(self, total: Optional[int], done: int = 0, desc: str = "eval", every_s: float = 60.0) -> None:
        from tqdm.auto import tqdm

        self.total, self.done, self.desc, self.every_s = total, done, desc, every_s
        self.skipped = 0
        self._start_done, self._start = done, time.monotonic()
        self._last_log = self._start
        self._bar = tqdm(total=total, initial=done, desc=desc, unit="img", dynamic_ncols=True, disable=None)

    def update(self, skipped: bool = False) -> None:
        self.done += 1
        self.skipped += skipped
        if self._bar is not None:
            self._bar.update(1)
            if skipped:
                self._bar.set_postfix_str(f"unreadable={self.skipped}")
        now = time.monotonic()
        if now - self._last_log >= self.every_s or self.done == self.total:
            self._last_log = now
            logger.info("%s", self.line(now))

    def line(self, now: Optional[float] = None) -> str:
        elapsed = (now or time.monotonic()) - self._start
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total else ""
        left = ""
        if self.total and rate > 0:
            left = f", {(self.total - self.done) / rate / 60:.1f} min left"
        return f"{self.desc}: {self.done}{of} images, {rate:.2f} img/s{left}, {self.skipped} unreadable skipped"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
