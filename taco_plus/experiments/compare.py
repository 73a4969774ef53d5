"""Comparison of runs: the table a paper shows, and the RD plots.

``python -m taco_plus.experiments compare taco_baseline linformer ... [--anchor NAME]
[--plot rd.png] [--format text|markdown|latex|csv]``

A name is a recorded run of the registry, an entry of ``ablations.yaml`` that has
not been run (shown as such, never as numbers), a shipped reference curve
(``elic_paper``, ...) or a results JSON file. Two tables:

* **summary**: one row per run: rate points, bpp range, BD-rate against the anchor
  (the first name, or ``--anchor``) in PSNR, MS-SSIM, LPIPS and CLIP score, mean
  encode/decode time. A BD-rate that cannot be computed says why in a note
  (too few points, no shared quality interval, a non-monotonic curve, different
  datasets or LPIPS conventions);
* **points**: every rate point: bpp, PSNR, MS-SSIM, LPIPS, CLIP score, encode and
  decode time (s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from taco_plus.experiments.registry import Registry
from taco_plus.experiments.store import MissingResultError, ResultsRegistry
from taco_plus.experiments.tables import MISSING, Table, fmt
from taco_plus.results.bdrate import bd_rate
from taco_plus.results.format import curve, load_results
from taco_plus.results.reference_curves import list_references, load_reference

# (results key, column label, decimals of the value)
QUALITY = (("psnr-rgb", "PSNR", 2), ("ms-ssim-rgb", "MS-SSIM", 4), ("lpips", "LPIPS", 4), ("clip_score", "CLIP", 2))


@dataclass
class Curve:
    """A run to compare: its results, or why it has none.

    Args:
        name: the name it was asked by.
        label: the name shown (registry title or results name).
        results: CompressAI results dict (None when not run).
        dataset: evaluation dataset (``kodak``, ``skimage_quickstart``, ``unknown``).
        kind: ``run``, ``reference``, ``file`` or ``not_run``.
        reason: why it has no results (``not_run``).
        labels: rate-point labels (the training run folders) in bpp order.
    """

    name: str
    label: str
    results: Optional[dict[str, Any]]
    dataset: str
    kind: str
    reason: str = ""
    labels: list[str] = field(default_factory=list)

    def lpips_conventions(self) -> set[str]:
        meta = (self.results or {}).get("meta") or {}
        points = meta.get("points") or [meta]
        return {str(p.get("lpips_convention") or "unknown") for p in points}


def resolve(name: str, results: ResultsRegistry, registry: Optional[Registry] = None) -> Curve:
    """Finds ``name`` among recorded runs, registry entries, reference curves and files."""
    title = registry[name].title if registry is not None and name in registry else name
    if results.has_run(name):
        run = results.run(name)
        order = np.argsort([p["bpp"][0] for p in run.provenance["points"]], kind="stable")
        labels = [run.provenance["points"][i]["label"] for i in order]
        return Curve(name, title, run.results, run.dataset, "run", labels=labels)
    if registry is not None and name in registry:
        return Curve(name, title, None, "", "not_run", registry.not_run_reason(registry[name]))
    if name in list_references() and not Path(name).exists():
        data = load_reference(name)
        return Curve(name, data["name"], data, str((data.get("meta") or {}).get("dataset", "unknown")), "reference")
    if Path(name).is_file():
        data = load_results(name)
        return Curve(name, data["name"], data, str((data.get("meta") or {}).get("dataset", "unknown")), "file")
    known = results.runs() + ([r.name for r in registry] if registry else []) + list(list_references())
    raise MissingResultError(f"{name!r} is neither a recorded run, a registry entry, a reference curve nor a "
                             f"results file (known: {', '.join(sorted(set(known)))})")


def bd_rate_cell(anchor: Curve, test: Curve, metric: str, method: str = "pchip") -> tuple[str, Optional[str]]:
    """(cell, note): the BD-rate in percent, or the missing mark and the reason."""
    if test is anchor:
        return ("anchor" if metric in anchor.results["results"] else MISSING), None
    if anchor.dataset != test.dataset:
        return MISSING, f"different datasets ({anchor.dataset} vs {test.dataset})"
    if metric == "lpips" and anchor.lpips_conventions() != test.lpips_conventions():
        return MISSING, "different LPIPS conventions"
    try:
        rate_a, values_a = curve(anchor.results, metric)
        rate_t, values_t = curve(test.results, metric)
        return fmt(bd_rate(rate_a, values_a, rate_t, values_t, method), 2, signed=True, unit="%"), None
    except KeyError:
        return MISSING, None  # the metric was not computed: nothing to explain
    except ValueError as err:
        return MISSING, str(err)


def _mean(results: dict[str, Any], key: str) -> Optional[float]:
    values = [v for v in results["results"].get(key, []) if v is not None]
    return float(np.mean(values)) if values else None


def summary_table(curves: Sequence[Curve], anchor: Curve, method: str = "pchip", title: str = "") -> Table:
    """One row per run (see the module docstring)."""
    columns = ["run", "points", "bpp range"] + [f"BD-rate {label}" for _, label, _ in QUALITY] + ["enc (s)", "dec (s)"]
    table = Table(columns, title=title or f"BD-rate against {anchor.label} ({method}); negative saves bits")
    notes: dict[str, int] = {}
    for c in curves:
        if c.results is None:
            table.add_span(f"{c.label}: {c.reason}")
            continue
        bpp = [b for b in c.results["results"]["bpp"] if b is not None]
        cells = [c.label, str(len(bpp)), f"{min(bpp):.3f}–{max(bpp):.3f}" if bpp else MISSING]
        for metric, _, _ in QUALITY:
            cell, note = bd_rate_cell(anchor, c, metric, method)
            if note:
                mark = notes.setdefault(note, len(notes) + 1)
                cell = f"{cell} [{mark}]"
            cells.append(cell)
        cells += [fmt(_mean(c.results, "encoding_time"), 3), fmt(_mean(c.results, "decoding_time"), 3)]
        table.add(cells)
    table.notes = [f"[{i}] {text}" for text, i in notes.items()]
    return table


def points_table(curves: Sequence[Curve], title: str = "Rate points") -> Table:
    """Every rate point of every run with results."""
    columns = ["run", "point", "bpp"] + [label for _, label, _ in QUALITY] + ["enc (s)", "dec (s)"]
    table = Table(columns, title=title, align="llrrrrrrr")
    for c in curves:
        if c.results is None:
            continue
        r = c.results["results"]
        order = np.argsort([b if b is not None else np.inf for b in r["bpp"]], kind="stable")
        for k, i in enumerate(order):
            label = c.labels[k] if k < len(c.labels) else str(k)
            cells = [c.label, label, fmt(r["bpp"][i], 4)]
            cells += [fmt(r[m][i], d) if m in r else MISSING for m, _, d in QUALITY]
            cells += [fmt(r["encoding_time"][i], 3) if "encoding_time" in r else MISSING,
                      fmt(r["decoding_time"][i], 3) if "decoding_time" in r else MISSING]
            table.add(cells)
    return table


def rd_figure(curves: Sequence[Curve], out: str | Path, metrics: Optional[Sequence[str]] = None,
              references: Sequence[str] = (), title: str = "") -> Path:
    """RD plots, one panel per quality metric any curve has; references dashed.

    Args:
        curves: runs (those without results are skipped).
        out: PNG to write.
        metrics: results keys to plot (default: every :data:`QUALITY` metric present).
        references: shipped reference curve names to add.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from taco_plus.results.format import LOWER_IS_BETTER, METRIC_LABELS

    drawn = [(c.label, c.results, "-") for c in curves if c.results is not None]
    drawn += [(load_reference(n)["name"], load_reference(n), "--") for n in references]
    if not drawn:
        raise ValueError("nothing to plot: none of the runs has results")
    metrics = list(metrics or [m for m, _, _ in QUALITY if any(m in d[1]["results"] for d in drawn)])
    if not metrics:
        raise ValueError("the runs have no quality metric to plot")
    # Up to two panels per row, so that each stays legible at the page's width; one
    # legend for the whole figure, below the panels.
    cols = 1 if len(metrics) == 1 else 2
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows + 0.5 + 0.22 * len(drawn)), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, metric in zip(axes.flat, metrics):
        for i, (label, data, style) in enumerate(drawn):
            if metric not in data["results"]:
                continue
            bpp, values = curve(data, metric)
            if len(bpp):
                (line,) = ax.plot(bpp, values, style, marker="o", markersize=4, linewidth=1.4, label=label,
                                  color=f"C{i % 10}")
                handles.setdefault(label, line)
        name = METRIC_LABELS.get(metric, metric)
        ax.set_xlabel(METRIC_LABELS["bpp"])
        ax.set_ylabel(name + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
        ax.grid(True, alpha=0.35)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(2, len(handles)), fontsize=9,
               frameon=False)
    if title:
        fig.suptitle(title)
    legend_rows = -(-len(handles) // 2)
    fig.tight_layout(rect=(0, min(0.45, 0.05 + 0.035 * legend_rows * 2 / rows), 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def compare(
    names: Sequence[str], results: ResultsRegistry, registry: Optional[Registry] = None, anchor: Optional[str] = None,
    method: str = "pchip",
) -> tuple[list[Curve], Curve, Table, Table]:
    """Resolves ``names`` and builds both tables; returns (curves, anchor, summary, points)."""
    if not names:
        raise ValueError("name at least one run")
    curves = [resolve(n, results, registry) for n in names]
    anchor_name = anchor or names[0]
    matches = [c for c in curves if c.name == anchor_name]
    anchor_curve = matches[0] if matches else resolve(anchor_name, results, registry)
    if anchor_curve.results is None:
        raise MissingResultError(f"the anchor {anchor_name!r} has no results ({anchor_curve.reason})")
    return curves, anchor_curve, summary_table(curves, anchor_curve, method), points_table(curves)


def main_compare(args: Any) -> int:
    """``compare`` subcommand."""
    from taco_plus.experiments.registry import load_registry

    registry = load_registry(args.ablations)
    curves, anchor, summary, points = compare(args.names, ResultsRegistry(args.registry), registry,
                                              args.anchor, args.method)
    print(summary.render(args.format))
    print(points.render(args.format))
    if args.plot:
        out = rd_figure(curves, args.plot, references=args.reference)
        print(f"wrote {out}")
    return 0
