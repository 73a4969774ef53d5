"""Caption sensitivity: the same model codes every image with its real caption, an empty one and another
image's; the table gives each mode's means and mean differences from the real caption (docs/evaluation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

CAPTION_MODES = ("real", "empty", "other")
METRICS = ("bpp", "psnr", "lpips", "clip_score")
TABLE_COLUMNS = ("caption", "images", "bpp", "psnr", "lpips", "clip_score", "delta_bpp", "delta_bpp_pct", "delta_psnr",
                 "delta_lpips", "delta_clip_score")


def derangement(ids: Sequence[str]) -> dict[str, str]:
    """Fixed derangement of ids: each id -> the next one in sorted order (cyclic)."""
    order = sorted(ids)
    if len(order) < 2:
        raise ValueError("the 'other' caption mode needs at least two images")
    return {a: b for a, b in zip(order, order[1:] + order[:1])}


def _mean(values: pd.Series) -> Any:
    """Mean of the finite values, None when there is none (a metric not computed)."""
    mean = pd.to_numeric(values, errors="coerce").replace([float("inf"), float("-inf")], float("nan")).mean()
    return None if pd.isna(mean) else float(mean)


def sensitivity_table(rows_by_mode: Mapping[str, Sequence[Mapping[str, Any]]],
                      baseline: str = "real") -> list[dict[str, Any]]:
    """One row per caption mode (``baseline`` first) from each mode's ``per_image.csv`` rows: the
    means, and the means of the per-image differences from ``baseline`` (images paired by id)."""
    if baseline not in rows_by_mode:
        raise ValueError(f"no {baseline!r} rows to compare against")
    frames = {m: pd.DataFrame(list(rows)).set_index("id").reindex(columns=METRICS) for m, rows in rows_by_mode.items()}
    base = frames[baseline]
    table = []
    for mode in [baseline] + [m for m in frames if m != baseline]:
        frame = frames[mode]
        if set(frame.index) != set(base.index):
            raise ValueError(f"{mode!r} and {baseline!r} cover different images "
                             f"(e.g. {sorted(set(frame.index) ^ set(base.index))[:5]})")
        diff = frame.astype(float) - base.astype(float).loc[frame.index]  # paired by image id
        entry: dict[str, Any] = {"caption": mode, "images": len(frame), **{m: _mean(frame[m]) for m in METRICS},
                                 **{f"delta_{m}": _mean(diff[m]) for m in METRICS}}
        base_bpp = _mean(base["bpp"])
        entry["delta_bpp_pct"] = None if entry["delta_bpp"] is None or not base_bpp \
            else 100.0 * entry["delta_bpp"] / base_bpp
        table.append(entry)
    return table


def write_sensitivity(table: Sequence[Mapping[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Writes ``sensitivity.md`` (GitHub markdown) and ``sensitivity.csv`` in ``out_dir``."""
    (out_dir := Path(out_dir)).mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(list(table), columns=TABLE_COLUMNS)
    md, csv_path = out_dir / "sensitivity.md", out_dir / "sensitivity.csv"
    md.write_text(frame.to_markdown(index=False, floatfmt=".5g", missingval="—") + "\n", encoding="utf-8")
    frame.to_csv(csv_path, index=False)
    return md, csv_path
