"""Comparison of runs, reference curves and results files: the BD-rate summary against an anchor
(a numbered note where one cannot be computed) and the rate points, as pandas tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from taco_plus.experiments.record import RESULTS_DIR, MissingResultError, load_recorded, recorded
from taco_plus.results.bdrate import bd_rate
from taco_plus.results.format import curve, list_references, load_curve

FORMATS = ("text", "markdown", "latex", "csv")
MISSING = "—"
# results key -> (column label, decimals)
QUALITY = {"psnr-rgb": ("PSNR", 2), "ms-ssim-rgb": ("MS-SSIM", 4), "lpips": ("LPIPS", 4), "clip_score": ("CLIP", 2)}
TIMES = {"encoding_time": "enc (s)", "decoding_time": "dec (s)"}


@dataclass
class Curve:
    """A curve to compare: the name asked, the label shown, its CompressAI results, its
    evaluation dataset (``unknown`` for a file that does not say) and rate-point labels."""

    name: str
    label: str
    results: dict[str, Any]
    dataset: str
    labels: list[str] = field(default_factory=list)

    def lpips_conventions(self) -> set[str]:
        meta = self.results.get("meta") or {}
        return {str(p.get("lpips_convention") or "unknown") for p in meta.get("points") or [meta]}


def resolve(name: str, root: Path = RESULTS_DIR, label: Optional[str] = None) -> Curve:
    """Finds ``name`` among recorded runs, reference curves and results files."""
    if (Path(root) / name).is_dir():
        run = load_recorded(name, root)
        return Curve(name, label or run.results["name"], run.results, run.dataset, run.labels)
    if name in list_references() or Path(name).is_file():
        data = load_curve(name)
        return Curve(name, label or data["name"], data, str((data.get("meta") or {}).get("dataset", "unknown")))
    raise MissingResultError(f"{name!r} is neither a recorded run, a reference curve nor a results file "
                             f"(recorded: {', '.join(recorded(root)) or 'none'}; references: "
                             f"{', '.join(list_references())})")


def bd_rate_cell(anchor: Curve, test: Curve, metric: str, method: str = "pchip") -> tuple[Optional[float], str]:
    """(BD-rate in percent or None, the reason when None; "" when the metric is simply absent)."""
    if metric not in anchor.results["results"] or metric not in test.results["results"]:
        return None, ""
    if anchor.dataset != test.dataset and "unknown" not in (anchor.dataset, test.dataset):
        return None, f"different datasets ({anchor.dataset} vs {test.dataset})"
    if metric == "lpips" and anchor.lpips_conventions() != test.lpips_conventions():
        return None, "different LPIPS conventions"
    try:
        return bd_rate(*curve(anchor.results, metric), *curve(test.results, metric), method), ""
    except ValueError as err:
        return None, str(err)


def _mean(results: dict[str, Any], key: str) -> Optional[float]:
    values = [v for v in results["results"].get(key, []) if v is not None]
    return float(np.mean(values)) if values else None


def summary_table(curves: Sequence[Curve], anchor: Curve, method: str = "pchip") -> tuple[pd.DataFrame, list[str]]:
    """One row per run (see the module docstring), and the numbered notes of its cells."""
    rows, notes = [], {}
    for c in curves:
        bpp = [b for b in c.results["results"]["bpp"] if b is not None]
        row = {"run": c.label, "points": len(bpp), "bpp range": f"{min(bpp):.3f}–{max(bpp):.3f}"}
        for metric, (label, _) in QUALITY.items():
            if c is anchor:
                row[f"BD-rate {label}"] = "anchor" if metric in c.results["results"] else MISSING
                continue
            value, note = bd_rate_cell(anchor, c, metric, method)
            row[f"BD-rate {label}"] = f"{value:+.2f}%" if value is not None else \
                MISSING + (f" [{notes.setdefault(note, len(notes) + 1)}]" if note else "")
        row.update({name: _mean(c.results, key) for key, name in TIMES.items()})
        rows.append(row)
    return pd.DataFrame(rows), [f"[{i}] {text}" for text, i in notes.items()]


def points_table(curves: Sequence[Curve]) -> pd.DataFrame:
    """Every rate point of every run, in bpp order."""
    rows = []
    for c in curves:
        r = c.results["results"]
        for k, i in enumerate(np.argsort([b if b is not None else np.inf for b in r["bpp"]], kind="stable")):
            row = {"run": c.label, "point": c.labels[k] if k < len(c.labels) else str(k), "bpp": r["bpp"][i]}
            row.update({label: r[m][i] if m in r else None for m, (label, _) in QUALITY.items()})
            row.update({name: r[key][i] if key in r else None for key, name in TIMES.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def latex_escape(text: str) -> str:
    """LaTeX specials escaped, for text pandas does not escape (captions, notes)."""
    return str(text).translate(str.maketrans({c: "\\" + c for c in "&%$#_{}"}))


def latex_table(frame: pd.DataFrame, caption: str = "", label: str = "", column_format: Optional[str] = None,
                notes: Sequence[str] = ()) -> str:
    """A booktabs table (pandas, escaped); long names may break after ``_`` and ``/``, and a
    table wider than the page is scaled down to it. Notes go under the table."""
    ragged = (column_format or "").replace("p{", ">{\\raggedright\\arraybackslash}p{") or None
    text = frame.to_latex(index=False, escape=True, caption=latex_escape(caption) or None, label=label or None,
                          position="H", column_format=ragged)
    text = text.replace("\\_", "\\_\\allowbreak{}").replace("/", "/\\allowbreak{}")
    text = text.replace("\\begin{tabular}", "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
                        "\\begin{tabular}").replace("\\end{tabular}", "\\end{tabular}}")
    return text.replace("\\end{table}", "".join(f"\\par\\footnotesize {latex_escape(n)}\n" for n in notes)
                        + "\\end{table}")


def render(frame: pd.DataFrame, form: str = "text", notes: Sequence[str] = (), caption: str = "",
           label: str = "") -> str:
    """The table as aligned text, GitHub markdown, LaTeX (:func:`latex_table`) or CSV."""
    decimals = {"bpp": 4, "enc (s)": 3, "dec (s)": 3, **{name: d for name, d in QUALITY.values()}}
    shown = frame.copy()
    for column in shown.columns:  # numbers formatted once here, so every form shows the same digits
        if column in decimals:
            shown[column] = [MISSING if v is None or pd.isna(v) else f"{v:.{decimals[column]}f}" for v in shown[column]]
    if form == "csv":
        return frame.to_csv(index=False)
    if form == "latex":
        return latex_table(shown, caption, label, "ll" + "r" * (len(shown.columns) - 2), notes)
    body = shown.to_markdown(index=False) if form == "markdown" else shown.to_string(index=False)
    title = (f"**{caption}**" if form == "markdown" else caption) + "\n\n" if caption else ""
    return title + body + "\n" + "".join(f"  {n}\n" for n in notes)


def compare(names: Sequence[str], root: Path = RESULTS_DIR, anchor: Optional[str] = None, method: str = "pchip",
            labels: Optional[dict[str, str]] = None) -> tuple[list[Curve], Curve, pd.DataFrame, list[str], pd.DataFrame]:
    """Resolves ``names``; returns (curves, anchor, summary, its notes, points)."""
    curves = [resolve(n, root, (labels or {}).get(n)) for n in names]
    anchor_curve = next((c for c in curves if c.name == (anchor or names[0])), None) or resolve(anchor, root)
    summary, notes = summary_table(curves, anchor_curve, method)
    return curves, anchor_curve, summary, notes, points_table(curves)
