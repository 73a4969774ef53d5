"""Training logs: ``train_log.csv`` (the mean of each term per logged step) and TensorBoard scalars; a resumed
run first drops what was logged past its step (docs/training.md, "The loop")."""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Optional

from taco_plus.atomic import atomic_write, write_error

CSV_COLUMNS = ("step", "epoch", "loss", "bpp", "mse", "lpips", "joint", "aux", "lr", "time")
TB_ONLY = ("contrastive", "embedding_distance")


class MetricLog:
    """Accumulates per-step terms and writes averaged rows to ``run_dir`` (nothing when not
    ``enabled``: ranks > 0); rows and scalars logged after ``start_step`` are dropped."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, enabled: bool = True, start_step: int = 0) -> None:
        self.enabled, self.path, self.rows = enabled, Path(run_dir) / "train_log.csv", []
        self._sums: dict[str, float] = defaultdict(float)
        self._count, self._start, self._writer = 0, time.perf_counter(), None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate(start_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides the events of steps >= it that an earlier attempt wrote.
            self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step + 1)

    def _truncate(self, start_step: int) -> None:
        """Keeps the header and the rows of steps <= ``start_step`` (atomically)."""
        if self.path.exists() and not self.path.is_file():
            return  # a device or pipe the user chose: append to it as it is
        rows = list(csv.reader(self.path.read_text().splitlines())) if self.path.is_file() else []
        kept = [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= start_step]
        if rows and rows[0] == list(CSV_COLUMNS) and len(kept) == len(rows) - 1:
            return  # nothing to drop
        text = io.StringIO()
        csv.writer(text).writerows([CSV_COLUMNS, *kept])
        atomic_write(self.path, text.getvalue())

    def accumulate(self, terms: Mapping[str, float]) -> None:  # one step's terms (plain floats)
        for key, value in terms.items():
            self._sums[key] += value
        self._count += 1

    def flush(self, step: int, epoch: int, lr: float) -> Optional[dict[str, float]]:
        """Writes the mean of the accumulated steps as one row; returns it."""
        if self._count == 0:
            return None
        means = {k: v / self._count for k, v in self._sums.items()}
        row = {"step": step, "epoch": epoch, **means, "lr": lr, "time": time.perf_counter() - self._start}
        self._sums, self._count = defaultdict(float), 0
        self.rows.append(row)
        if not self.enabled:
            return row
        try:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
        except OSError as err:  # disk full: the rows written so far stay
            raise write_error(err, f"cannot append step {step} to {self.path}") from err
        if self._writer is not None:
            for key in (*CSV_COLUMNS[2:-1], *TB_ONLY):
                if key in row:
                    self._writer.add_scalar(f"train/{key}", row[key], step)
            self._writer.flush()
        return row

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _cell(value: Optional[float]) -> str:  # nan, inf as such
    return "" if value is None else str(value) if isinstance(value, int) else f"{value:.6g}"
