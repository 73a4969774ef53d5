"""``per_image.csv``, one row per evaluated image (an empty cell: not computed; ``nan``: does not
apply), and its summary into one rate point. Columns: docs/evaluation.md, "Output files"."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from taco_plus.atomic import atomic_write

CSV_COLUMNS = ("id", "height", "width", "bytes", "bpp", "psnr", "ms_ssim", "lpips", "clip_score", "enc_ms", "dec_ms",
               "caption_policy", "captions", "caption_index", "lpips_reference", "lpips_correct")
CSV_HEADER = ",".join(CSV_COLUMNS) + "\n"
_REQUIRED = CSV_COLUMNS[:11]  # the caption-policy and two-convention LPIPS columns came later
_TEXT_COLUMNS = ("id", "caption_policy")
_INT_COLUMNS = ("height", "width", "bytes", "captions", "caption_index")  # bytes: a mean under policy "all"
# CSV column -> CompressAI results key, and the factor from the CSV unit (CompressAI stores seconds).
RESULT_KEYS = {"bpp": ("bpp", 1.0), "psnr": ("psnr-rgb", 1.0), "ms_ssim": ("ms-ssim-rgb", 1.0),
               "lpips": ("lpips", 1.0), "clip_score": ("clip_score", 1.0), "enc_ms": ("encoding_time", 1e-3),
               "dec_ms": ("decoding_time", 1e-3), "lpips_reference": ("lpips-reference", 1.0),
               "lpips_correct": ("lpips-correct", 1.0)}


def csv_lines(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV lines of ``rows`` (None -> empty cell; floats as their shortest exact text, nan included)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(
        ["" if row.get(k) is None else repr(row[k]) if isinstance(row[k], float) else row[k] for k in CSV_COLUMNS]
        for row in rows)
    return buffer.getvalue()


def write_per_image_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Writes the CSV atomically."""
    return atomic_write(path, CSV_HEADER + csv_lines(rows))


def read_per_image_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads a per-image CSV back: ints, floats (``nan`` kept), None for empty cells."""
    reader = csv.DictReader(io.StringIO(Path(path).read_bytes().decode("utf-8"), newline=""))
    missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: not a per-image results CSV (missing columns {missing})")
    return [{key: _value(key, raw.get(key) or "") for key in CSV_COLUMNS} for raw in reader]


def parse_row(line: str) -> dict[str, Any]:
    """One line as :func:`csv_lines` writes it -> its row; ``ValueError`` when it is not one."""
    cells = next(csv.reader([line]), [])
    if len(cells) != len(CSV_COLUMNS) or not cells[0]:
        raise ValueError(f"{len(cells)} fields where {len(CSV_COLUMNS)} are expected")
    return {key: _value(key, cell) for key, cell in zip(CSV_COLUMNS, cells)}


def _value(key: str, cell: str) -> Any:
    if key == "id" or (cell and key in _TEXT_COLUMNS):
        return cell
    if not cell:
        return None
    value = float(cell)
    return int(value) if key in _INT_COLUMNS and value.is_integer() else value


def summarize(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list], dict[str, int]]:
    """One rate point from per-image rows, as CompressAI does: the mean of each per-image metric over the
    images where it is finite (mean PSNR in dB, not PSNR of the mean MSE). Returns the ``results`` lists
    (one value each; metrics nobody computed left out) and the number of images behind each value."""
    if not rows:
        raise ValueError("no images were evaluated")
    results, counts = {}, {}
    for column, (key, scale) in RESULT_KEYS.items():
        values = [r.get(column) for r in rows]
        if all(v is None for v in values):
            continue  # not computed at all
        finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        results[key] = [float(np.mean(finite)) * scale if finite else None]
        counts[key] = len(finite)
    return results, counts
