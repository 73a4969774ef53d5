"""Conclusions and plot computed from the attention benchmark's rows (docs/attention.md; written by
:mod:`taco_plus.bench.attention`, read by the paper report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import pandas as pd

Rows = Union[pd.DataFrame, Sequence[dict[str, Any]]]
FLAT_BOUND = 1.2  # "Linformer's cost is flat in caption length": within 1.2x of 77 tokens
REFERENCE_TOKENS = 77
BASELINE = "full"  # every other variant is compared with it
PARTS = ("adapter", "encoder")


def crossover(full: pd.Series, other: pd.Series) -> Optional[int]:
    """Smallest caption length from which ``other`` is cheaper than ``full`` at every longer
    length (both indexed by caption length); None if it is not cheaper at the longest."""
    lengths = full.dropna().index.intersection(other.dropna().index).sort_values()
    cheaper = (other[lengths] < full[lengths])[::-1].cummin()[::-1]  # cheaper here and beyond
    return int(cheaper.idxmax()) if cheaper.any() else None


def conclusions(rows: Rows) -> list[str]:
    """For each image size: full attention's growth with caption length; for every other
    variant its cost at the longest caption relative to 77 tokens and its crossover with
    full attention (time and FLOPs); every variant's adapter share of the g_a time."""
    out = ["Conclusions (computed from the measurements above; adapter = Injector + Extractor + Injector):"]
    for (w, h), size in pd.DataFrame(rows).groupby(["width", "height"], sort=False):
        label = f"[{w}x{h}]"
        adapter, encoder = (size[size.part == p].pivot(index="tokens", columns="variant") for p in PARTS)
        ms, flops = adapter["fwd_ms"], adapter["gflops"]  # (tokens, variant)
        lo, hi = ms.index[0], ms.index[-1]
        if BASELINE in ms and hi > lo:
            full_ms, full_flops = ms[BASELINE], flops[BASELINE]
            grows = full_flops.is_monotonic_increasing and full_flops.is_unique
            out.append(f"{label} {BASELINE} adapter from {lo} to {hi} tokens: {full_ms[hi] / full_ms[lo]:.2f}x "
                       f"time, {full_flops[hi] / full_flops[lo]:.2f}x FLOPs "
                       f"({'grows' if grows else 'does not grow'} monotonically in FLOPs)")
        for variant in ms.columns.drop(BASELINE, errors="ignore"):
            if REFERENCE_TOKENS in ms.index and hi > REFERENCE_TOKENS:
                rt = ms.at[hi, variant] / ms.at[REFERENCE_TOKENS, variant]
                rf = flops.at[hi, variant] / flops.at[REFERENCE_TOKENS, variant]
                verdict = "within" if rt <= FLAT_BOUND else "NOT within"
                out.append(f"{label} {variant} adapter at {hi} tokens: {rt:.2f}x its time at {REFERENCE_TOKENS} "
                           f"tokens ({rf:.2f}x FLOPs): {verdict} {FLAT_BOUND}x")
            for table, what in ((ms, "time"), (flops, "FLOPs")):
                if BASELINE not in table:
                    break
                n = crossover(table[BASELINE], table[variant])
                out.append(f"{label} crossover ({what}): {variant} " + ("is not cheaper at the longest measured length"
                           if n is None else f"cheaper at every measured length ({n} tokens and up)" if n == lo
                           else f"cheaper from {n} tokens on"))
        share = 100 * ms / encoder["fwd_ms"]
        out += [f"{label} adapter share of g_a time, {variant}: " + ", ".join(f"{n}: {v:.0f}%" for n, v in values.items())
                for variant, values in ((v, share[v].dropna()) for v in share) if len(values)]
    return out


def plot(rows: Rows, path: Path, conditions: str = "") -> None:
    """Adapter forward time and FLOPs against caption length (log-log): one colour per attention
    option, one line style per image size, the legend beside the panels, ``conditions`` (device,
    threads) in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    adapter = pd.DataFrame(rows).query("part == 'adapter'").sort_values("tokens")
    variants, sizes = list(dict.fromkeys(adapter.variant)), list(dict.fromkeys(zip(adapter.width, adapter.height)))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    for (variant, w, h), line in adapter.groupby(["variant", "width", "height"], sort=False):
        for ax, key in zip(axes, ("fwd_ms", "gflops")):
            ax.plot(line.tokens, line[key], ("-", "--", ":", "-.")[sizes.index((w, h)) % 4], marker="o", markersize=4,
                    color=f"C{variants.index(variant) % 10}", label=f"{variant}, {w}×{h}")
    lengths = sorted(adapter.tokens.unique())
    for ax, ylabel in zip(axes, ("adapter forward time [ms]", "adapter forward GFLOPs")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(lengths, [str(n) for n in lengths], rotation=45, fontsize=8)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set(xlabel="caption length [tokens]", ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle("TACO text adapter, attention options" + (f" ({conditions})" if conditions else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


DOC_BEGIN, DOC_END = "<!-- measurements: generated from {csv} -->", "<!-- end of measurements -->"


def doc_tables(rows: Rows, conditions: str) -> str:
    """The docs' measurement block: per image size, adapter forward ms and GFLOPs by caption length, then the
    :func:`conclusions`; ``conditions`` (date, device, threads) heads it."""
    adapter, out = pd.DataFrame(rows).query("part == 'adapter'"), [f"Measured {conditions}.", ""]
    for (w, h), size in adapter.groupby(["width", "height"], sort=False):
        table, lengths = size.pivot(index="variant", columns="tokens"), sorted(size.tokens.unique())
        out += [f"| {w}×{h} | " + " | ".join(f"{n:,} tokens" for n in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
        out += [f"| `{v}` | " + " | ".join(f"{table.at[v, ('fwd_ms', n)]:,.0f} ms, {table.at[v, ('gflops', n)]:.3g}"
                                          for n in lengths) + " |" for v in table.index] + [""]
    return "\n".join(out + [f"- {line}" for line in conclusions(rows)[1:]])


def update_doc(csv: Path, doc: Path, root: Path = Path(".")) -> bool:
    """Rewrites ``doc``'s measurement block from ``root/csv`` (and the benchmark log beside it); True if it changed."""
    log = (root / csv).with_suffix(".log")
    conditions = log.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").split(", dims=")[0] if log.is_file() else ""
    text, begin = doc.read_text(encoding="utf-8"), DOC_BEGIN.format(csv=csv.as_posix())
    head, rest = text.split(begin, 1)
    new = f"{head}{begin}\n{doc_tables(pd.read_csv(root / csv), conditions)}\n{DOC_END}{rest.split(DOC_END, 1)[1]}"
    doc.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # python -m taco_plus.results.attention_bench CSV DOC (make -C paper measurements)
    import sys

    print("updated" if update_doc(Path(sys.argv[1]), Path(sys.argv[2])) else "unchanged", sys.argv[2])
