"""Rate-distortion plots of results files, with the shipped reference curves.

Usage::

    python -m taco_plus.results.plot a.json b.json --metric psnr-rgb \
        --reference elic_paper --reference lic_tcm_large -o rd_psnr.png
    python -m taco_plus.results.plot a.json --metric lpips --reference taco_released_lpips_ref -o rd_lpips.png

Any results file in CompressAI's format works; ``--reference all`` draws every
shipped curve that has the metric. Single-point files are drawn as markers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from taco_plus.results.format import LOWER_IS_BETTER, METRIC_LABELS, curve, load_results  # noqa: E402
from taco_plus.results.reference_curves import list_references, load_reference  # noqa: E402

logger = logging.getLogger(__name__)


def _lpips_convention(data: Mapping[str, Any]) -> Optional[str]:
    meta = data.get("meta") or {}
    return meta.get("lpips_convention") or (meta.get("lpips") or {}).get("convention")


def plot_rd(
    sources: Sequence[str | Path | Mapping[str, Any]],
    out: str | Path,
    metric: str = "psnr-rgb",
    references: Sequence[str] = (),
    title: Optional[str] = None,
) -> Path:
    """Draws ``metric`` against bpp for results files/dicts and reference curves.

    Args:
        sources: results file paths or loaded results dicts.
        out: PNG file to write.
        metric: results key on the y axis (``psnr-rgb``, ``ms-ssim-rgb``, ``lpips``, ...).
        references: names of shipped reference curves (``"all"``: every one with ``metric``).
        title: plot title (default: the metric).
    """
    curves = [load_results(s) if isinstance(s, (str, Path)) else dict(s) for s in sources]
    names = list(list_references()) if list(references) == ["all"] else list(references)
    refs = [load_reference(n) for n in names]
    if list(references) == ["all"]:
        refs = [r for r in refs if metric in r["results"]]
    if not curves and not refs:
        raise ValueError("nothing to plot: give results files or reference curves")
    if metric == "lpips":
        conventions = {_lpips_convention(c) or "unknown" for c in curves + refs}
        if len(conventions) > 1:
            logger.warning("plotting LPIPS values computed with different conventions: %s", sorted(conventions))

    fig, ax = plt.subplots(figsize=(7, 5))
    for data, style in [(c, "-") for c in curves] + [(r, "--") for r in refs]:
        bpp, values = curve(data, metric)  # raises if a results file lacks the metric
        if len(bpp) == 0:
            logger.warning("%s: no finite %s values, not drawn", data["name"], metric)
            continue
        ax.plot(bpp, values, style, marker="o", markersize=4, linewidth=1.2, label=data["name"])

    ax.set_xlabel(METRIC_LABELS["bpp"])
    label = METRIC_LABELS.get(metric, metric)
    ax.set_ylabel(label + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
    ax.set_title(title or f"{label} vs rate")
    ax.grid(True, alpha=0.4)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taco_plus.results.plot", description="Rate-distortion plot (PNG).")
    parser.add_argument("inputs", nargs="*", help="results JSON files (CompressAI format)")
    parser.add_argument("--metric", default="psnr-rgb", help="y-axis metric: psnr-rgb, ms-ssim-rgb, lpips, clip_score, fid ...")
    parser.add_argument(
        "--reference", action="append", default=[],
        help=f"shipped reference curve to draw (repeatable): {', '.join(list_references())}, or 'all'",
    )
    parser.add_argument("-o", "--output", default="rd.png", help="PNG file to write (default rd.png)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        out = plot_rd(args.inputs, args.output, args.metric, args.reference, args.title)
    except (OSError, KeyError, ValueError) as err:
        print(f"plot: error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
