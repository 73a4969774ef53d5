"""Table, plot and computed conclusions for the attention benchmark's rows.

Every conclusion is derived from the measured rows (nothing is typed in), for every
variant against full attention: its adapter cost at the longest caption relative to
77 tokens, full attention's growth with caption length, the crossover length from
which the variant is cheaper, and the adapter's share of the whole encoder.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

Row = dict[str, Any]
FLAT_BOUND = 1.2  # "Linformer's cost is flat in caption length": within 1.2x of 77 tokens
REFERENCE_TOKENS = 77
BASELINE = "full"  # every other variant is compared with it

_FIELDS = [
    ("variant", "{:<16}"), ("tokens", "{:>6}"), ("size", "{:>10}"), ("part", "{:<8}"),
    ("fwd_ms", "{:>10.1f}"), ("fwd_bwd_ms", "{:>11.1f}"), ("peak_mb", "{:>9.1f}"),
    ("fwd_bwd_peak_mb", "{:>15.1f}"), ("gflops", "{:>9.2f}"),
]  # fmt: skip


def _plain(fmt: str) -> str:
    return fmt.replace(".1f", "").replace(".2f", "")


def header() -> str:
    return " ".join(_plain(f).format(n) for n, f in _FIELDS)


def format_row(row: Row) -> str:
    values = {**row, "size": f"{row['width']}x{row['height']}"}
    return " ".join(_plain(f).format("-") if _missing(values[n]) else f.format(values[n]) for n, f in _FIELDS)


def _missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _adapter_table(rows: Sequence[Row]) -> dict[tuple[int, int], dict[str, dict[str, dict[int, Row]]]]:
    """size -> part -> variant -> tokens -> row."""
    table: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for r in rows:
        table[(r["width"], r["height"])][r["part"]][r["variant"]][r["tokens"]] = r
    return table


def crossover(full: dict[int, Row], lin: dict[int, Row], key: str) -> int | None:
    """Smallest caption length from which Linformer is cheaper at every longer length."""
    lengths = sorted(set(full) & set(lin))
    for i, n in enumerate(lengths):
        if all(lin[m][key] < full[m][key] for m in lengths[i:]):
            return n
    return None


def conclusions(rows: Sequence[Row]) -> list[str]:
    out = ["Conclusions (computed from the measurements above; adapter = Injector + Extractor + Injector):"]
    for (w, h), parts in _adapter_table(rows).items():
        label = f"[{w}x{h}]"
        adapter = parts.get("adapter", {})
        full = adapter.get(BASELINE, {})
        if len(full) > 1:
            lo, hi = min(full), max(full)
            flops = [full[n]["gflops"] for n in sorted(full)]
            grows = all(b > a for a, b in zip(flops, flops[1:]))
            out.append(
                f"{label} {BASELINE} adapter from {lo} to {hi} tokens: {full[hi]['fwd_ms'] / full[lo]['fwd_ms']:.2f}x "
                f"time, {full[hi]['gflops'] / full[lo]['gflops']:.2f}x FLOPs "
                f"({'grows' if grows else 'does not grow'} monotonically in FLOPs)"
            )
        for variant, lin in adapter.items():
            if variant == BASELINE:
                continue
            if REFERENCE_TOKENS in lin and max(lin) > REFERENCE_TOKENS:
                top = max(lin)
                rt = lin[top]["fwd_ms"] / lin[REFERENCE_TOKENS]["fwd_ms"]
                rf = lin[top]["gflops"] / lin[REFERENCE_TOKENS]["gflops"]
                verdict = "within" if rt <= FLAT_BOUND else "NOT within"
                out.append(
                    f"{label} {variant} adapter at {top} tokens: {rt:.2f}x its time at {REFERENCE_TOKENS} "
                    f"tokens ({rf:.2f}x FLOPs): {verdict} {FLAT_BOUND}x"
                )
            for key, what in (("fwd_ms", "time"), ("gflops", "FLOPs")):
                if not full:
                    break
                n = crossover(full, lin, key)
                if n is None:
                    verdict = f"{variant} is not cheaper at the longest measured length"
                elif n == min(set(full) & set(lin)):
                    verdict = f"{variant} cheaper at every measured length ({n} tokens and up)"
                else:
                    verdict = f"{variant} cheaper from {n} tokens on"
                out.append(f"{label} crossover ({what}): {verdict}")
        encoder = parts.get("encoder", {})
        for variant, by_tokens in adapter.items():
            shares = [
                f"{n}: {100 * r['fwd_ms'] / encoder[variant][n]['fwd_ms']:.0f}%"
                for n, r in sorted(by_tokens.items())
                if n in encoder.get(variant, {})
            ]
            if shares:
                out.append(f"{label} adapter share of g_a time, {variant}: " + ", ".join(shares))
    return out


def plot(rows: Sequence[Row], path: Path) -> bool:
    """Adapter forward time and FLOPs against caption length, one line per variant and size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    table = _adapter_table(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (w, h), parts in table.items():
        for variant, by_tokens in parts.get("adapter", {}).items():
            lengths = sorted(by_tokens)
            style = "-" if variant == BASELINE else "--"
            for ax, key in zip(axes, ("fwd_ms", "gflops")):
                ax.plot(lengths, [by_tokens[n][key] for n in lengths], style, marker="o", label=f"{variant} {w}x{h}")
    lengths = sorted({r["tokens"] for r in rows})
    for ax, ylabel in zip(axes, ("adapter forward time (ms)", "adapter forward GFLOPs")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(lengths, [str(n) for n in lengths], minor=False)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("caption length (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("TACO text adapter: attention options")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
