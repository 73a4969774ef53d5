"""Caption sensitivity: does the text change what TACO codes?

The same model encodes every image three times: with its real caption, with an
empty caption, and with another image's caption (a fixed derangement: image *i*
in sorted id order gets the caption of image *i+1*, the last gets the first's).
The table gives, per caption mode, the mean bpp / PSNR / LPIPS / CLIP score and the
mean per-image difference from the real caption (images paired by id). A codec
whose text matters shows non-zero deltas; TACO's released models barely move
(DESIGN.md: < 0.0005 LPIPS on Kodak with an empty caption).

Usage (from the per-image CSVs of three evaluations)::

    python -m taco_plus.results.sensitivity runs/eval/sensitivity        # {real,empty,other}/per_image.csv
    python -m taco_plus.results.sensitivity real=a.csv empty=b.csv other=c.csv -o table_dir
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from taco_plus.results.per_image import read_per_image_csv

CAPTION_MODES = ("real", "empty", "other")
METRICS = ("bpp", "psnr", "lpips", "clip_score")
TABLE_COLUMNS = (
    "caption", "images", "bpp", "psnr", "lpips", "clip_score",
    "delta_bpp", "delta_bpp_pct", "delta_psnr", "delta_lpips", "delta_clip_score",
)


def derangement(ids: Sequence[str]) -> dict[str, str]:
    """Fixed derangement of ids: each id -> the next one in sorted order (cyclic)."""
    order = sorted(ids)
    if len(order) < 2:
        raise ValueError("the 'other' caption mode needs at least two images")
    if len(set(order)) != len(order):
        raise ValueError("image ids are not unique")
    return {a: b for a, b in zip(order, order[1:] + order[:1])}


def _finite_mean(values: list[Optional[float]]) -> Optional[float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def sensitivity_table(
    rows_by_mode: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str = "real"
) -> list[dict[str, Any]]:
    """One row per caption mode (baseline first), deltas relative to ``baseline``.

    Args:
        rows_by_mode: caption mode -> per-image rows (``per_image`` CSV rows).
        baseline: the mode the deltas are taken against.
    """
    if baseline not in rows_by_mode:
        raise ValueError(f"no {baseline!r} rows to compare against")
    base = {r["id"]: r for r in rows_by_mode[baseline]}
    table = []
    for mode in [baseline] + [m for m in rows_by_mode if m != baseline]:
        rows = {r["id"]: r for r in rows_by_mode[mode]}
        if set(rows) != set(base):
            missing = sorted(set(base) ^ set(rows))[:5]
            raise ValueError(f"{mode!r} and {baseline!r} cover different images (e.g. {missing})")
        entry: dict[str, Any] = {"caption": mode, "images": len(rows)}
        for metric in METRICS:
            entry[metric] = _finite_mean([rows[i].get(metric) for i in rows])
            diffs = [
                None if rows[i].get(metric) is None or base[i].get(metric) is None
                else rows[i][metric] - base[i][metric]
                for i in rows
            ]
            entry[f"delta_{metric}"] = _finite_mean(diffs)
        base_bpp = _finite_mean([r.get("bpp") for r in base.values()])
        entry["delta_bpp_pct"] = (
            None if entry["delta_bpp"] is None or not base_bpp else 100.0 * entry["delta_bpp"] / base_bpp
        )
        table.append(entry)
    return table


def _fmt(value: Any, digits: int, signed: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_markdown(table: Sequence[Mapping[str, Any]]) -> str:
    """The table as GitHub markdown (deltas are means of per-image differences)."""
    lines = [
        "| caption | images | bpp | PSNR (dB) | LPIPS | CLIP score | Δbpp | Δbpp (%) | ΔPSNR (dB) | ΔLPIPS | ΔCLIP score |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        cells = [
            r["caption"], _fmt(r["images"], 0), _fmt(r["bpp"], 4), _fmt(r["psnr"], 3), _fmt(r["lpips"], 5),
            _fmt(r["clip_score"], 2), _fmt(r["delta_bpp"], 5, True), _fmt(r["delta_bpp_pct"], 2, True),
            _fmt(r["delta_psnr"], 4, True), _fmt(r["delta_lpips"], 6, True), _fmt(r["delta_clip_score"], 3, True),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_sensitivity(table: Sequence[Mapping[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Writes ``sensitivity.md`` and ``sensitivity.csv`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv_path = out_dir / "sensitivity.md", out_dir / "sensitivity.csv"
    md.write_text(format_markdown(table), encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        for r in table:
            writer.writerow({k: "" if r.get(k) is None else r[k] for k in TABLE_COLUMNS})
    return md, csv_path


def _inputs(args: Sequence[str]) -> dict[str, Path]:
    if len(args) == 1 and "=" not in args[0]:
        root = Path(args[0])
        return {m: root / m / "per_image.csv" for m in CAPTION_MODES}
    pairs = {}
    for arg in args:
        mode, sep, path = arg.partition("=")
        if not sep:
            raise ValueError(f"expected MODE=CSV, got {arg!r}")
        pairs[mode] = Path(path)
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.results.sensitivity", description="Caption-sensitivity table.")
    parser.add_argument("inputs", nargs="+", help="an evaluation's sensitivity folder, or MODE=per_image.csv pairs")
    parser.add_argument("-o", "--output", default=None, help="folder for sensitivity.{md,csv} (default: the input folder)")
    args = parser.parse_args(argv)
    try:
        inputs = _inputs(args.inputs)
        table = sensitivity_table({mode: read_per_image_csv(p) for mode, p in inputs.items()})
        out = args.output or (args.inputs[0] if len(args.inputs) == 1 and "=" not in args.inputs[0] else ".")
        md, csv_path = write_sensitivity(table, out)
    except (OSError, ValueError) as err:
        print(f"sensitivity: error: {err}", file=sys.stderr)
        return 2
    print(format_markdown(table), end="")
    print(f"wrote {md} and {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
