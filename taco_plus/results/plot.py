"""Rate-distortion plots in CompressAI's conventions, one panel per quality metric (LPIPS one per
convention), seed spreads as error bars (docs/evaluation.md, "RD plots")::

    python -m taco_plus.results.plot a.json b.json --metric psnr-rgb --reference elic_paper -o rd_psnr.png"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from taco_plus.results.format import curve, list_references, load_curve, load_results

# results key -> (short label in tables and panel keys, decimals shown)
QUALITY = {"psnr-rgb": ("PSNR", 2), "ms-ssim-rgb": ("MS-SSIM", 4), "lpips": ("LPIPS", 4), "clip_score": ("CLIP", 2)}
# Axis labels of the known metrics (any results key can be plotted).
METRIC_LABELS = {"bpp": "Bit-rate [bpp]", "psnr-rgb": "PSNR [dB]", "ms-ssim-rgb": "MS-SSIM [dB]", "lpips": "LPIPS",
                 "clip_score": "CLIP score", "fid": "FID", "encoding_time": "Encoding time [s]",
                 "decoding_time": "Decoding time [s]"}
LOWER_IS_BETTER = {"lpips", "fid", "encoding_time", "decoding_time"}


def convention(data: Mapping[str, Any], metric: str) -> Optional[str]:
    """The LPIPS convention of ``data``'s ``lpips`` values, from its metadata (per point for a merged
    curve; ``mixed`` when they differ, ``unknown`` when unstated); None for any other metric."""
    if metric != "lpips":
        return None
    meta = data.get("meta") or {}
    found = {p.get("lpips_convention") or "unknown" for p in meta.get("points") or [meta]}
    return found.pop() if len(found) == 1 else "mixed"


def quality_panels(datas: Sequence[Mapping[str, Any]], metrics: Optional[Sequence[str]] = None) -> list[tuple]:
    """(metric, LPIPS convention or None, label) of each panel or table column: the ``metrics`` (default
    the quality metrics and any other ``lpips*`` key) that the curves have, LPIPS once per convention."""
    keys = metrics or [*QUALITY, *sorted({k for d in datas for k in d["results"] if k.startswith("lpips")} - {"lpips"})]
    panels = dict.fromkeys((m, convention(d, m)) for m in keys for d in datas if m in d["results"])
    return [(m, c, QUALITY.get(m, (m,))[0] + (f" ({c})" if c else "")) for m, c in panels]


def _series(data: Mapping[str, Any], metric: str) -> list[tuple]:
    """(bpp, value, bpp std, value std) of the points with both values, in bpp order (std None: one seed)."""
    r, spread = data["results"], (data.get("meta") or {}).get("spread") or {}
    sd = {k: spread.get(k) or [None] * len(r["bpp"]) for k in ("bpp", metric)}
    return sorted((b, v, sd["bpp"][i], sd[metric][i]) for i, (b, v) in enumerate(zip(r["bpp"], r[metric]))
                  if b is not None and v is not None and math.isfinite(b) and math.isfinite(v))


def plot_rd(sources: Sequence[str | Path | Mapping[str, Any]], out: str | Path,
            metrics: Optional[str | Sequence[str]] = None, references: Sequence[str] = (),
            title: Optional[str] = None, ylabels: Mapping[str, str] = {}) -> Path:
    """Draws each metric (default: every quality metric a curve has) against bpp into the PNG ``out``: ``sources``
    (results files or dicts) solid, the reference curves named in ``references`` (or ``"all"``) dashed."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt

    curves = [load_results(s) if isinstance(s, (str, Path)) else dict(s) for s in sources]
    everything = list(references) == ["all"]
    refs = [load_curve(n) for n in (list_references() if everything else references)]
    metrics = [metrics] if isinstance(metrics, str) else metrics
    panels = [(m, conv, label) for m, conv, label in quality_panels(curves + refs, metrics)  # no panel for a lone
              if metrics or any(m in c["results"] and convention(c, m) == conv for c in curves)  # reference point
              or any(m in r["results"] and convention(r, m) == conv and len(_series(r, m)) > 1 for r in refs)]
    if everything:
        refs = [r for r in refs if any(m in r["results"] for m, _, _ in panels)]
    if not (curves + refs) or not panels:
        raise ValueError("nothing to plot: give results files or reference curves with a quality metric")
    for c in curves if metrics and len(metrics) == 1 else ():
        curve(c, metrics[0])  # a results file without the asked metric: KeyError naming those it has

    cols = len(panels) if len(panels) <= 3 else 2 if len(panels) == 4 else 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.9 * rows + 0.8), squeeze=False, layout="constrained")
    for i, (data, style) in enumerate([(c, "-") for c in curves] + [(r, "--") for r in refs]):
        n = max((data.get("meta") or {}).get("seeds") or [1])
        name = data["name"] + (f" (mean of {n} seeds)" if n > 1 else "")
        for ax, (metric, conv, _) in zip(axes.flat, panels):
            points = _series(data, metric) if metric in data["results"] and convention(data, metric) == conv else []
            if not points:
                continue
            x, y, xerr, yerr = ([p[k] for p in points] for k in range(4))
            if metric == "ms-ssim-rgb":  # dB, as CompressAI plots it; the spread to first order
                yerr = [None if e is None else 10 * e / math.log(10) / (1 - v) for v, e in zip(y, yerr)]
                y = [-10 * math.log10(1 - v) for v in y]
            bars = {k: None if any(v is None or math.isnan(v) for v in e) else e
                    for k, e in (("xerr", xerr), ("yerr", yerr))}
            ax.errorbar(x, y, **bars, fmt="o" + (style if len(points) > 1 else ""), color=f"C{i % 10}",
                        markersize=4, linewidth=1.2, capsize=2, label=name)
            if len(points) == 1:  # a single rate point: a marker, labelled where it is
                ax.annotate(data["name"], (x[0], y[0]), xytext=(4, 4), textcoords="offset points", fontsize=7,
                            color=f"C{i % 10}")
    for ax, (m, conv, _) in zip(axes.flat, panels):
        label = ylabels.get(m) or METRIC_LABELS.get(m, m) + " (lower is better)" * (m in LOWER_IS_BETTER)
        ax.set(xlabel=METRIC_LABELS["bpp"], ylabel=label + (f", {conv} convention" if conv else ""))
        ax.grid(True, alpha=0.35)
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_legend_handles_labels()[0]}
    for ax in list(axes.flat)[len(panels):]:
        fig.delaxes(ax)  # no empty panel
    fig.legend(handles.values(), handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title or ", ".join(label for _, _, label in panels) + " vs rate")
    (out := Path(out)).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.results.plot", description="Rate-distortion plot (PNG).")
    parser.add_argument("inputs", nargs="*", help="results JSON files (CompressAI format)")
    parser.add_argument("--metric", action="append", help="y-axis metric, repeatable (default psnr-rgb): psnr-rgb, ...")
    parser.add_argument("--reference", action="append", default=[], help=f"shipped reference curve (repeatable): "
                        f"{', '.join(list_references())}, or 'all'")
    parser.add_argument("-o", "--output", default="rd.png", help="PNG file to write (default rd.png)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        out = plot_rd(args.inputs, args.output, args.metric or ["psnr-rgb"], args.reference, args.title)
    except (OSError, KeyError, ValueError) as err:
        print(f"plot: error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
