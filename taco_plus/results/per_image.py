"""Per-image evaluation rows: the CSV file and its summary into one rate point.

Columns (one row per image)::

    id,height,width,bytes,bpp,psnr,ms_ssim,lpips,clip_score,enc_ms,dec_ms

``bytes`` is the size of the ``.tacoz`` file, ``bpp = 8·bytes / (height·width)`` of
the original image. A metric that was not computed is an empty cell; one that
does not apply to the image (MS-SSIM under 161 px) is ``nan``.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

CSV_COLUMNS = ("id", "height", "width", "bytes", "bpp", "psnr", "ms_ssim", "lpips", "clip_score", "enc_ms", "dec_ms")
_INT_COLUMNS = ("height", "width", "bytes")

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
    """Writes rows (dicts with :data:`CSV_COLUMNS` keys; None -> empty cell)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})
    return path


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
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a per-image results CSV (missing columns {missing})")
        rows = []
        for raw in reader:
            row: dict[str, Any] = {"id": raw["id"]}
            for key in CSV_COLUMNS[1:]:
                text = raw[key]
                row[key] = None if text == "" else (int(text) if key in _INT_COLUMNS else float(text))
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
