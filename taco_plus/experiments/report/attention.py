"""Report section: adapter attention efficiency, from the benchmark CSV of the registry.

Reads ``bench/attention.csv`` (``python -m taco_plus.experiments bench-attention``,
columns of :data:`taco_plus.bench.attention.COLUMNS`) and its provenance, and writes

* ``attention.tex``: adapter forward time and GFLOPs of full vs Linformer attention per
  caption length and image size, the forward+backward time at the training crop, the
  adapter's share of g_a, and the conclusions :func:`taco_plus.bench.report.conclusions`
  computes from the same rows;
* ``attention.png``: :func:`taco_plus.bench.report.plot` of the rows.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from taco_plus.experiments.report.context import ReportContext
from taco_plus.experiments.tables import MISSING, Table, fmt, latex_escape

INT_COLUMNS = ("tokens", "height", "width", "image_tokens")
TEXT_COLUMNS = ("variant", "part", "device", "clock")
# The columns the report reads; others the benchmark may add are kept as text.
REQUIRED = ("variant", "tokens", "height", "width", "part", "fwd_ms", "fwd_bwd_ms", "gflops")


def read_bench_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of the attention benchmark CSV with numbers parsed (``nan`` kept)."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not an attention benchmark CSV (missing columns {missing})")
        rows = []
        for raw in reader:
            row: dict[str, Any] = {}
            for key, text in raw.items():
                if key in TEXT_COLUMNS or key not in REQUIRED + INT_COLUMNS and not _is_number(text):
                    row[key] = text
                else:
                    row[key] = int(text) if key in INT_COLUMNS else float(text)
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no measurements")
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _value(row: dict[str, Any] | None, key: str, digits: int) -> str:
    if row is None or (isinstance(row[key], float) and math.isnan(row[key])):
        return MISSING
    return fmt(row[key], digits)


def attention_table(rows: list[dict[str, Any]], provenance: dict[str, Any]) -> Table:
    """Per (size, tokens): adapter ms and GFLOPs of each variant, fwd+bwd ms, share of g_a."""
    by = defaultdict(dict)  # (w, h, tokens) -> {(variant, part): row}
    for r in rows:
        by[(r["width"], r["height"], r["tokens"])][(r["variant"], r["part"])] = r
    variants = sorted({r["variant"] for r in rows}, key=lambda v: (v != "full", v))
    columns = ["image", "tokens"]
    for v in variants:
        columns += [f"{v} ms", f"{v} GFLOPs", f"{v} fwd+bwd ms"]
    env = provenance.get("environment", {})
    clocks = {r.get("clock", "wall") for r in rows}
    clock = "process CPU time, all threads" if clocks == {"cpu"} else "wall time"
    table = Table(columns, title=(
        f"Text adapter (Injector + Extractor + Injector) forward cost, official sizes, random weights; "
        f"{provenance.get('device_description', env.get('device', ''))}; ms = {clock}, medians of "
        f"{provenance.get('repeat', '?')} runs"))
    for (w, h, tokens), cells in sorted(by.items(), key=lambda kv: (kv[0][0] * kv[0][1], kv[0][2])):
        line = [f"{w}×{h}", str(tokens)]
        for v in variants:
            adapter = cells.get((v, "adapter"))
            line += [_value(adapter, "fwd_ms", 1), _value(adapter, "gflops", 2), _value(adapter, "fwd_bwd_ms", 1)]
        table.add(line)
    table.notes = ["ms: forward; fwd+bwd: forward and backward, timed at the training crop size only. The adapter's "
                   "share of the whole analysis transform g_a is in the conclusions below."]
    return table


def write_attention(ctx: ReportContext) -> list[Path]:
    from taco_plus.bench import report as bench_report

    csv_path = ctx.source(ctx.results.root / "bench" / "attention.csv")
    provenance = ctx.source_json("bench/attention.provenance.json")
    rows = read_bench_csv(csv_path)
    conclusions = bench_report.conclusions(rows)
    body = attention_table(rows, provenance).render("latex", label="tab:attention")
    body += "\n\\noindent Computed from the same rows (\\texttt{taco\\_plus.bench.report.conclusions}):\n"
    body += "\\begin{itemize}\\small\n" + "".join(
        f"\\item{{}} {latex_escape(line)}\n" for line in conclusions[1:]) + "\\end{itemize}\n"
    tex = ctx.write_tex("attention.tex", body)
    ctx.source(csv_path)
    figure = ctx.figure_path("attention.png")
    bench_report.plot(rows, figure)
    return [tex, ctx.figure_done(figure)]
