"""Report sections on rate-distortion results: RD figures, comparison tables, caption sensitivity.

For every evaluation dataset of the study (the ``data=`` choice of each registry run;
recorded runs outside the registry join their provenance's dataset), ``results.tex``
holds a subsection with

* an RD figure ``rd_<dataset>.png`` of every recorded run (solid) and, on Kodak, the
  shipped reference curves (dashed);
* the summary table (BD-rate against the first run of the dataset that has results)
  and the rate-point table of :mod:`taco_plus.experiments.compare`, with every run that
  has not been run listed as such.

``sensitivity.tex`` tabulates the caption-sensitivity evaluations of the recorded runs
(real vs empty vs another image's caption) and, from the shipped reference curves, the
released TACO models' LPIPS with real and empty captions.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from taco_plus.experiments.compare import Curve, points_table, rd_figure, resolve, summary_table
from taco_plus.experiments.report.context import ReportContext
from taco_plus.experiments.tables import MISSING, Table, fmt, latex_escape
from taco_plus.results.format import curve
from taco_plus.results.reference_curves import list_references, load_reference

KODAK_REFERENCES = ("elic_paper", "lic_tcm_large", "taco_reproduced_lambda0004", "taco_released_lpips_ref",
                    "taco_released_empty_caption_lpips_ref")
DATASET_LABELS = {"kodak": "Kodak (24 images)", "skimage_quickstart": "Quickstart photos (8 scikit-image photos)"}


def datasets(ctx: ReportContext) -> dict[str, list[str]]:
    """Dataset -> run names: registry runs in file order, then other recorded runs."""
    groups: dict[str, list[str]] = {}
    for run in ctx.registry:
        groups.setdefault(run.dataset, []).append(run.name)
    for name in ctx.results.runs():
        if name not in ctx.registry:
            groups.setdefault(ctx.results.run(name).dataset, []).append(name)
    return groups


def _curves(ctx: ReportContext, names: list[str]) -> list[Curve]:
    curves = []
    for name in names:
        if ctx.results.has_run(name):
            ctx.source_run(name)
        curves.append(resolve(name, ctx.results, ctx.registry))
    return curves


def _not_run_table(curves: list[Curve], title: str) -> Table:
    table = Table(["run", "status"], title=title, align="lp{11cm}")
    for c in curves:
        table.add([c.label, c.reason])
    return table


def dataset_section(ctx: ReportContext, dataset: str, names: list[str]) -> tuple[str, list[Path]]:
    """The dataset's LaTeX subsection and the figures it wrote."""
    curves = _curves(ctx, names)
    label = DATASET_LABELS.get(dataset, dataset)
    slug = dataset.replace("_", "-")
    body = [f"\\subsection{{{latex_escape(label)}}}\\label{{sec:results-{slug}}}"]
    with_results = [c for c in curves if c.results is not None]
    references = KODAK_REFERENCES if dataset == "kodak" else ()
    figures = []
    if with_results or references:
        figure = ctx.figure_path(f"rd_{dataset}.png")
        rd_figure(with_results, figure, references=references)
        figures.append(ctx.figure_done(figure))
        drawn = ", ".join(c.label for c in with_results) or "none recorded yet"
        caption = (f"Rate-distortion on {label}. Recorded runs (solid): {drawn}."
                   + (" Shipped reference curves dashed; the released-TACO LPIPS curves use the reference code's "
                      "LPIPS convention." if references else ""))
        body += [r"\begin{figure}[H]", r"\centering",
                 f"\\includegraphics[width=\\linewidth]{{generated/rd_{dataset}.png}}",
                 f"\\caption{{{latex_escape(caption)}}}", f"\\label{{fig:rd-{slug}}}", r"\end{figure}"]
    if with_results:
        anchor = with_results[0]
        body.append(summary_table(curves, anchor, title=(
            f"{label}: BD-rate against {anchor.label} (pchip); negative saves bits")).render(
            "latex", label=f"tab:summary-{slug}"))
        body.append(points_table(curves, title=f"{label}: every rate point (times in seconds)").render(
            "latex", label=f"tab:points-{slug}"))
    else:
        body.append(_not_run_table(curves, f"{label}: runs of the study").render("latex", label=f"tab:summary-{slug}"))
    return "\n".join(body) + "\n", figures


def write_results(ctx: ReportContext) -> list[Path]:
    sections, figures = [], []
    for dataset, names in datasets(ctx).items():
        text, written = dataset_section(ctx, dataset, names)
        sections.append(text)
        figures += written
    ctx.source(ctx.registry.path)
    for name in ctx.results.runs():  # the figures' sources were closed with them; the text uses them again
        ctx.source_run(name)
    return [ctx.write_tex("results.tex", "\n".join(sections)), *figures]


# ------------------------------------------------------------ sensitivity


def _read_sensitivity(path: Path) -> list[dict[str, Optional[float]]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{k: (v if k == "caption" else (float(v) if v not in ("", None) else None)) for k, v in r.items()}
            for r in rows]


def _released_rows(table: Table, ctx: ReportContext) -> None:
    """Released TACO, real vs empty caption, from the two shipped reference curves."""
    references = list_references()
    real_name, empty_name = "taco_released_lpips_ref", "taco_released_empty_caption_lpips_ref"
    ctx.source(references[real_name])
    ctx.source(references[empty_name])
    real, empty = load_reference(real_name), load_reference(empty_name)
    bpp_r, lpips_r = curve(real, "lpips")
    bpp_e, lpips_e = curve(empty, "lpips")
    if list(bpp_r) != list(bpp_e):
        raise ValueError("the released-TACO reference curves do not share their rate points")
    lambdas = (real.get("meta") or {}).get("lambdas") or [None] * len(bpp_r)
    for lam, b, lr, le in zip(lambdas, bpp_r, lpips_r, lpips_e):
        table.add(["TACO released (Kodak, third party)", f"λ {lam:g}" if lam else MISSING, "empty", fmt(b, 4),
                   MISSING, MISSING, MISSING, fmt(le - lr, 4, signed=True) + " (ref. conv.)", MISSING])


def write_sensitivity(ctx: ReportContext) -> list[Path]:
    table = Table(["run", "point", "caption", "bpp", "PSNR", "Δbpp", "ΔPSNR (dB)", "ΔLPIPS", "ΔCLIP"],
                  align="lllrrrrrr",
                  title="Caption sensitivity: the same model coding each image with an empty caption or with "
                        "another image's caption, minus coding it with its own (means of per-image differences)")
    for name in ctx.results.runs():
        run = ctx.source_run(name)
        for label in run.labels:
            path = run.sensitivity_csv(label)
            if path is None:
                continue
            ctx.source(path)
            for row in _read_sensitivity(path):
                if row["caption"] == "real":
                    continue
                table.add([name, label, row["caption"], fmt(row["bpp"], 4), fmt(row["psnr"], 2),
                           fmt(row["delta_bpp_pct"], 2, signed=True, unit="%"), fmt(row["delta_psnr"], 3, signed=True),
                           fmt(row["delta_lpips"], 4, signed=True), fmt(row["delta_clip_score"], 2, signed=True)])
    _released_rows(table, ctx)
    ctx.source(ctx.registry.path)
    pending = [r.name for r in ctx.registry if "caption_sensitivity=true" in r.eval and not ctx.results.has_run(r.name)]
    if pending:
        table.add_span("Not run yet (why: the table of runs, experiments/README.md): " + ", ".join(pending))
    table.notes = ["Recorded runs: differences from the run's own evaluation with real captions, paired by image. "
                   "Released TACO: LPIPS with the empty caption minus with the OFA caption at the same rate, from "
                   "the shipped reference curves (the reference code's LPIPS convention)."]
    return [ctx.write_tex("sensitivity.tex", table.render("latex", label="tab:sensitivity"))]
