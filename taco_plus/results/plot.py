"""Rate-distortion plots of results files with the shipped reference curves, one panel per metric::

    python -m taco_plus.results.plot a.json b.json --metric psnr-rgb --reference elic_paper -o rd_psnr.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from taco_plus.results.format import curve, list_references, load_curve, load_results

logger = logging.getLogger(__name__)
QUALITY = ("psnr-rgb", "ms-ssim-rgb", "lpips", "clip_score")
# Axis labels of the known metrics (any results key can be plotted).
METRIC_LABELS = {"bpp": "Bit-rate [bpp]", "psnr-rgb": "PSNR (RGB) [dB]", "ms-ssim-rgb": "MS-SSIM (RGB)", "lpips": "LPIPS",
                 "clip_score": "CLIP score", "fid": "FID", "encoding_time": "Encoding time [s]",
                 "decoding_time": "Decoding time [s]"}
LOWER_IS_BETTER = {"lpips", "fid", "encoding_time", "decoding_time"}


def plot_rd(sources: Sequence[str | Path | Mapping[str, Any]], out: str | Path,
            metrics: Optional[str | Sequence[str]] = None, references: Sequence[str] = (),
            title: Optional[str] = None) -> Path:
    """Draws each metric against bpp into the PNG ``out``, one panel per metric (default: every quality
    metric a curve has): ``sources`` (results files or dicts, legend = their ``name``) solid, the shipped
    reference curves named in ``references`` (``"all"``: every one with the metrics) dashed."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt

    curves = [load_results(s) if isinstance(s, (str, Path)) else dict(s) for s in sources]
    everything = list(references) == ["all"]
    refs = [load_curve(n) for n in (list_references() if everything else references)]
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics or [m for m in QUALITY if any(m in c["results"] for c in curves + refs)])
    if everything:
        refs = [r for r in refs if any(m in r["results"] for m in metrics)]
    if not (curves + refs) or not metrics:
        raise ValueError("nothing to plot: give results files or reference curves with a quality metric")
    for c in curves if len(metrics) == 1 else ():
        curve(c, metrics[0])  # a results file without the asked metric: KeyError naming those it has
    conventions = {str((d.get("meta") or {}).get("lpips_convention")) for d in curves + refs if "lpips" in d["results"]}
    if "lpips" in metrics and len(conventions) > 1:
        logger.warning("plotting LPIPS values computed with different conventions: %s", sorted(conventions))

    cols = 1 if len(metrics) == 1 else 2  # two panels per row stay legible at a page's width
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for i, (data, style) in enumerate([(c, "-") for c in curves] + [(r, "--") for r in refs]):
            if metric in data["results"]:
                bpp, values = curve(data, metric)
                ax.plot(bpp, values, style, marker="o", markersize=4, linewidth=1.3, color=f"C{i % 10}",
                        label=data["name"])
        label = METRIC_LABELS.get(metric, metric)
        ax.set_xlabel(METRIC_LABELS["bpp"])
        ax.set_ylabel(label + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
        ax.grid(True, alpha=0.35)
        ax.legend(loc="best", fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle(title or ", ".join(METRIC_LABELS.get(m, m) for m in metrics) + " vs rate")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.results.plot", description="Rate-distortion plot (PNG).")
    parser.add_argument("inputs", nargs="*", help="results JSON files (CompressAI format)")
    parser.add_argument("--metric", action="append", default=None,
                        help="y-axis metric, repeatable (default psnr-rgb): psnr-rgb, ms-ssim-rgb, lpips, clip_score, fid ...")
    parser.add_argument("--reference", action="append", default=[],
                        help=f"shipped reference curve to draw (repeatable): {', '.join(list_references())}, or 'all'")
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
