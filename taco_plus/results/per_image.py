"""Per-image evaluation rows: the CSV file, written as images finish, and its
summary into one rate point.

Columns (one row per image)::

    id,height,width,bytes,bpp,psnr,ms_ssim,lpips,clip_score,enc_ms,dec_ms,caption_policy,captions,caption_index

``bytes`` is the size of the ``.tacoz`` file, ``bpp = 8·bytes / (height·width)`` of
the original image. A metric that was not computed is an empty cell; one that
does not apply to the image (MS-SSIM under 161 px) is ``nan``. ``caption_policy``
says which caption(s) the encoder got (``first``, ``all``, ``oracle_lpips``),
``captions`` how many were coded, ``caption_index`` which one the row describes
(empty for ``all``, whose numbers, ``bytes`` included, are means over the
captions). Files written before these three columns existed still read.

:class:`PerImageLog` appends each row as soon as its image is done (flushed to
disk), so an interrupted evaluation keeps every finished row and can resume.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from taco_plus.atomic import atomic_write

CSV_COLUMNS = ("id", "height", "width", "bytes", "bpp", "psnr", "ms_ssim", "lpips", "clip_score", "enc_ms", "dec_ms",
               "caption_policy", "captions", "caption_index")
_ADDED_COLUMNS = ("caption_policy", "captions", "caption_index")  # absent from older files
_TEXT_COLUMNS = ("id", "caption_policy")
_INT_COLUMNS = ("height", "width", "bytes", "captions", "caption_index")  # bytes: a mean under policy "all"

# CSV column -> CompressAI results key, and the factor from the CSV unit.
RESULT_KEYS = {
    "bpp": ("bpp", 1.0),
    "psnr": ("psnr-rgb", 1.0),
    "ms_ssim": ("ms-ssim-rgb", 1.0),
    "lpips": ("lpips", 1.0),
    "clip_score": ("clip_score", 1.0),
    "enc_ms": ("encoding_time", 1e-3),  # CompressAI stores seconds
    "dec_ms": ("decoding_time", 1e-3),
}


def write_per_image_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Writes rows (dicts with :data:`CSV_COLUMNS` keys; None -> empty cell) atomically."""
    return atomic_write(path, _HEADER + "".join(_line(row) for row in rows))


def _line(row: Mapping[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="raise", lineterminator="\n")
    writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})
    return buffer.getvalue()


_HEADER = ",".join(CSV_COLUMNS) + "\n"


class PerImageLog:
    """``per_image.csv`` grown one row at a time, each row flushed and fsync'd.

    Opening it rewrites the file with ``rows`` (the finished rows an interrupted run
    left, see :func:`read_finished_rows`); :meth:`append` then adds one line per image.

    Args:
        path: the CSV file.
        rows: rows already finished (kept, in order).
    """

    def __init__(self, path: str | os.PathLike, rows: Sequence[Mapping[str, Any]] = ()) -> None:
        self.path = write_per_image_csv(rows, path)
        self.rows = [dict(r) for r in rows]
        self._file = self.path.open("a", encoding="utf-8", newline="")

    def append(self, row: Mapping[str, Any]) -> None:
        self._file.write(_line(row))
        self._file.flush()
        os.fsync(self._file.fileno())  # a crash after this keeps the row
        self.rows.append(dict(row))

    def close(self) -> None:
        self._file.close()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest exact round-trip text (nan/inf included)
    return value


def read_per_image_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a per-image CSV back: ints, floats (``nan`` kept), None for empty cells."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"per-image CSV not found: {path}")
    return _parse(path.read_text(encoding="utf-8"), path)


def read_finished_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete rows of a CSV that :class:`PerImageLog` was writing when the run
    stopped (a last line without its newline was cut mid-write and is dropped)."""
    data = Path(path).read_bytes()
    return _parse(data[: data.rfind(b"\n") + 1].decode("utf-8"), Path(path))


def _parse(text: str, path: Path) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in CSV_COLUMNS if c not in _ADDED_COLUMNS and c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: not a per-image results CSV (missing columns {missing})")
    rows = []
    for raw in reader:
        row: dict[str, Any] = {}
        for key in CSV_COLUMNS:
            cell = raw.get(key) or ""
            if key == "id":
                row[key] = cell
            elif cell == "":
                row[key] = None
            elif key in _TEXT_COLUMNS:
                row[key] = cell
            else:
                value = float(cell)
                row[key] = int(value) if key in _INT_COLUMNS and value.is_integer() else value
        rows.append(row)
    return rows


def column_mean(rows: Sequence[Mapping[str, Any]], column: str) -> tuple[Optional[float], int]:
    """Mean of a column over the images where it is a finite number, and that count.

    None when no image has a value (metric not computed or not applicable).
    """
    values = [float(r[column]) for r in rows if r.get(column) is not None and math.isfinite(float(r[column]))]
    return (float(np.mean(values)) if values else None), len(values)


def summarize(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list], dict[str, int]]:
    """One rate point from per-image rows, as CompressAI does: the mean of each
    per-image metric (mean PSNR in dB, not PSNR of the mean MSE).

    Returns the ``results`` lists (one value each; metrics nobody computed left
    out) and the number of images behind each value.
    """
    if not rows:
        raise ValueError("no images were evaluated")
    results, counts = {}, {}
    for column, (key, scale) in RESULT_KEYS.items():
        if all(r.get(column) is None for r in rows):
            continue  # not computed at all
        mean, count = column_mean(rows, column)
        results[key] = [None if mean is None else mean * scale]
        counts[key] = count
    return results, counts
