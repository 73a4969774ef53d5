"""Comparison of runs, reference curves and results files as pandas tables: BD-rates against the declared bases
(or why not comparable) and the rate points, seed means ± spread (docs/experiments.md, "Comparisons")."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from taco_plus.experiments.record import RESULTS_DIR, MissingResultError, load_recorded, recorded
from taco_plus.experiments.registry import EXPERIMENT_DIR, declared
from taco_plus.results.bdrate import bd_rate
from taco_plus.results.format import curve, list_references, load_curve
from taco_plus.results.plot import QUALITY, convention, quality_panels

FORMATS = ("text", "markdown", "latex", "csv")
MISSING = "—"
TIMES = {"encoding_time": "enc (s)", "decoding_time": "dec (s)"}
SPREAD_NOTE = ("± standard deviation of the BD-rate over seed pairs (each seed of one curve against each of the "
               "other); * the difference exceeds the seed spread (|BD-rate| > 2σ); no ±: one seed each, spread unknown")


def decimals(column: str) -> int:
    """Digits shown in a column: bpp 4, times 3, a quality metric its own."""
    return {"bpp": 4, **dict.fromkeys(TIMES.values(), 3)}.get(column) or next((d for label, d in QUALITY.values()
                                                                            if column.startswith(label)), 4)


@dataclass
class Curve:
    """A curve to compare: name, label shown, CompressAI results (seed means), evaluation dataset, one curve
    per seed, evaluated images and caption-set fingerprints (empty: unknown), declared base and changes."""

    name: str
    label: str
    results: dict[str, Any]
    dataset: str
    seeds: dict[Any, dict[str, Any]] = field(default_factory=dict)
    images: frozenset[str] = frozenset()
    fingerprints: frozenset[str] = frozenset()
    base: Optional[str] = None
    changes: tuple[str, ...] = ()


def resolve(name: str, root: Path = RESULTS_DIR, label: Optional[str] = None) -> Curve:
    """Finds ``name`` among recorded runs, reference curves and results files."""
    if (Path(root) / name).is_dir():
        run = load_recorded(name, root)
        return Curve(name, label or run.results["name"], run.results, run.dataset, run.seed_curves(), run.image_ids(),
                     frozenset(run.provenance["caption_set_fingerprints"]), *declared(name))
    if name in list_references() or Path(name).is_file():
        data = load_curve(name)
        return Curve(name, label or data["name"], data, str((data.get("meta") or {}).get("dataset", "unknown")),
                     {None: data})
    raise MissingResultError(f"{name!r} is neither a recorded run, a reference curve nor a results file "
                             f"(recorded: {', '.join(recorded(root)) or 'none'}; references: "
                             f"{', '.join(list_references())})")


def comparable(anchor: Curve, test: Curve) -> list[str]:
    """Why ``test`` cannot be compared with ``anchor`` at all (none: it can): different datasets,
    image lists, or caption sets where the captions are not what ``test`` changes from its base."""
    reasons = [f"different datasets ({anchor.dataset} vs {test.dataset})"] \
        if anchor.dataset != test.dataset and "unknown" not in (anchor.dataset, test.dataset) else []
    if anchor.images and test.images and anchor.images != test.images:
        reasons.append(f"different image lists ({len(anchor.images)} vs {len(test.images)} images, e.g. "
                       f"{sorted(anchor.images ^ test.images)[0]})")
    ablated = test.base == anchor.name and any(c.split(".")[0] == "captions" for c in test.changes)
    if anchor.fingerprints and test.fingerprints and anchor.fingerprints != test.fingerprints and not ablated:
        reasons.append("different caption sets (" + " vs ".join(", ".join(sorted(f[:8] for f in c.fingerprints))
                                                                  for c in (anchor, test)) + ")")
    return reasons


def bd_rate_cell(anchor: Curve, test: Curve, metric: str, method: str = "pchip") -> tuple[str, str]:
    """The cell (BD-rate in percent of the seed means, ± its spread over seed pairs, * when the
    difference exceeds it; else MISSING or "not comparable") and its note ("": nothing to explain)."""
    if metric not in anchor.results["results"] or metric not in test.results["results"]:
        return MISSING, ""
    conventions = convention(anchor.results, metric), convention(test.results, metric)
    if conventions[0] != conventions[1]:
        return "not comparable", f"different {QUALITY[metric][0]} conventions ({' vs '.join(conventions)})"
    try:
        value = bd_rate(*curve(anchor.results, metric), *curve(test.results, metric), method)
    except ValueError as err:
        return MISSING, str(err)
    pairs = []
    for a, t in ((a, t) for a in anchor.seeds.values() for t in test.seeds.values()):
        with contextlib.suppress(ValueError, KeyError):  # a seed with too few points has no BD-rate of its own
            pairs.append(bd_rate(*curve(a, metric), *curve(t, metric), method))
    if len(pairs) < 2:
        return f"{value:+.2f}%", ""
    sigma = float(np.std(pairs, ddof=1))
    return f"{value:+.2f} ± {sigma:.2f}%" + (" *" if abs(value) > 2 * sigma else ""), ""


def summary_table(curves: Sequence[Curve], anchors: dict, method: str = "pchip") -> tuple[pd.DataFrame, list[str]]:
    """One row per curve against ``anchors[name]`` (a Curve, None for an anchor, or a base not recorded): seeds,
    points, bpp range, BD-rate per quality metric (LPIPS per convention), coding times; and the cells' notes."""
    rows, notes, panels = [], {}, quality_panels([x.results for x in curves])
    for c in curves:
        anchor, r = anchors[c.name], c.results["results"]
        row = {"run": c.label, "against": anchor.name if isinstance(anchor, Curve) else anchor or MISSING,
               "seeds": len(c.seeds), "points": len(r["bpp"]), "bpp range": f"{min(r['bpp']):.3f}–{max(r['bpp']):.3f}"}
        reasons = "; ".join(comparable(anchor, c)) if isinstance(anchor, Curve) else ""
        for metric, conv, label in panels:  # a curve's values only in its own convention's column
            text, why = (MISSING, "") if metric not in r or convention(c.results, metric) != conv else ("anchor", "") \
                if anchor is None else (MISSING, f"{anchor} is not recorded") if isinstance(anchor, str) else \
                ("not comparable", reasons) if reasons else bd_rate_cell(anchor, c, metric, method)
            row[f"BD-rate {label}"] = f"{text} [{notes.setdefault(why, len(notes) + 1)}]" if why else text
        row.update({name: np.mean([v for v in r[k] if v is not None]) if k in r else None for k, name in TIMES.items()})
        rows.append(row)
    return pd.DataFrame(rows), [f"[{i}] {text}" for text, i in notes.items()]


def points_table(curves: Sequence[Curve]) -> pd.DataFrame:
    """Every rate point of every curve in bpp order: seeds, bpp and each quality metric (LPIPS: one
    column per convention) as the mean, ± the standard deviation over seeds, and mean coding times."""
    rows, panels = [], quality_panels([x.results for x in curves])
    for c in curves:
        r, meta = c.results["results"], c.results.get("meta") or {}
        spread, n = meta.get("spread") or {}, len(r["bpp"])

        def cell(key: str, i: int, digits: int) -> Any:
            sd = (spread.get(key) or [None] * n)[i]
            return r[key][i] if sd is None or r[key][i] is None else f"{r[key][i]:.{digits}f} ± {sd:.{digits}f}"

        for k, i in enumerate(np.argsort([b if b is not None else np.inf for b in r["bpp"]], kind="stable")):
            row = {"run": c.label, "point": (meta.get("labels") or [str(j) for j in range(n)])[k],
                   "seeds": (meta.get("seeds") or [1] * n)[i], "bpp": cell("bpp", i, 4)}
            row.update({label: cell(metric, i, decimals(label)) if metric in r and convention(c.results, metric) == conv
                        else None for metric, conv, label in panels})
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
                          position="H", column_format=ragged, multicolumn_format="c")
    text = text.replace("\\_", "\\_\\allowbreak{}").replace("/", "/\\allowbreak{}")
    text = text.replace("\\begin{tabular}", "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"
                        "\\begin{tabular}").replace("\\end{tabular}", "\\end{tabular}}")
    return text.replace("\\end{table}", "".join(f"\\par\\footnotesize {latex_escape(n)}\n" for n in notes)
                        + "\\end{table}")


def render(frame: pd.DataFrame, form: str = "text", notes: Sequence[str] = (), caption: str = "",
           label: str = "") -> str:
    """The table as aligned text, GitHub markdown, LaTeX (:func:`latex_table`) or CSV."""
    shown = frame.copy()
    for column in shown.columns:  # numbers formatted once here, so every form shows the same digits
        if column in ("bpp", *TIMES.values()) or any(column.startswith(label) for label, _ in QUALITY.values()):
            shown[column] = [v if isinstance(v, str) else MISSING if v is None or pd.isna(v) else
                             f"{v:.{decimals(column)}f}" for v in shown[column]]
    if form == "csv":
        return frame.to_csv(index=False)
    if form == "latex":
        return latex_table(shown, caption, label, "ll" + "r" * (len(shown.columns) - 2), notes)
    body = shown.to_markdown(index=False) if form == "markdown" else shown.to_string(index=False)
    title = (f"**{caption}**" if form == "markdown" else caption) + "\n\n" if caption else ""
    return title + body + "\n" + "".join(f"  {n}\n" for n in notes)


def compare(names: Sequence[str], root: Path = RESULTS_DIR, anchor: Optional[str] = None, method: str = "pchip",
            labels: Optional[dict[str, str]] = None) -> tuple[list[Curve], pd.DataFrame, list[str], pd.DataFrame]:
    """Compares each of ``names`` with ``anchor``, else (a registered run) its declared base or (other curves) the
    first name; returns (curves, summary, its notes, points)."""
    labels = labels or {}
    curves = [resolve(n, root, labels.get(n)) for n in names]
    known: dict[str, Any] = {c.name: c for c in curves}
    anchors: dict[str, Any] = {}
    for c in curves:
        target = anchor or (c.base if (EXPERIMENT_DIR / f"{c.name}.yaml").is_file() else names[0])
        if target is not None and target != c.name and target not in known:
            try:
                known[target] = resolve(target, root, labels.get(target))
            except MissingResultError:
                known[target] = target  # the table names it and says it is not recorded
        anchors[c.name] = known[target] if target not in (None, c.name) else None
    summary, notes = summary_table(curves, anchors, method)
    spread = [SPREAD_NOTE] if any(len(c.seeds) > 1 for c in [*curves, *known.values()] if isinstance(c, Curve)) else []
    return curves, summary, notes + spread, points_table(curves)
