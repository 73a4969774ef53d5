"""Builds every generated table and figure of ``paper/`` from the registry.

``python -m taco_plus.experiments.report [--registry experiments/results]
[--ablations experiments/ablations.yaml] [--out paper/generated]`` empties the output
folder and writes:

| file | from |
|---|---|
| ``ablations.tex`` | ``ablations.yaml`` + which runs are recorded |
| ``cost_profiles.tex``, ``cost_runs.tex`` | ``cost/step_time.json`` + ``ablations.yaml`` (+ CPU runs' training logs) |
| ``attention.tex``, ``attention.png`` | ``bench/attention.csv`` + ``bench/attention.provenance.json`` |
| ``caption_stats.tex`` | ``captions/caption_stats.json`` |
| ``token_weights.tex`` | ``weighting/token_weights.json`` |
| ``results.tex``, ``rd_<dataset>.png`` | recorded runs + shipped reference curves |
| ``sensitivity.tex`` | recorded runs' sensitivity tables + reference curves |
| ``macros.tex`` | numbers quoted in the text (counts, totals) |
| ``manifest.json`` | every generated file -> its source files (sha256) |

A missing source file stops the build with :class:`~taco_plus.experiments.store.MissingResultError`
naming it and the command that writes it. Runs that have not been run appear in the
tables as "not run: <reason>", never as numbers.
"""

from __future__ import annotations

from pathlib import Path

from taco_plus.experiments.registry import Registry
from taco_plus.experiments.report.ablations import ablation_table, cost_table, profile_table
from taco_plus.experiments.report.attention import write_attention
from taco_plus.experiments.report.captions import write_captions
from taco_plus.experiments.report.context import ReportContext
from taco_plus.experiments.report.results import write_results, write_sensitivity
from taco_plus.experiments.store import ResultsRegistry

GENERATED_SUFFIXES = (".tex", ".png", ".json")
# Registry files every build reads (the recorded runs come on top).
MEASUREMENTS = ("cost/step_time.json", "bench/attention.csv", "bench/attention.provenance.json",
                "captions/caption_stats.json", "weighting/token_weights.json")


def _macro(name: str, value: str) -> str:
    return f"\\newcommand{{\\{name}}}{{{value}}}\n"


def _clean(out_dir: Path) -> None:
    """Removes earlier generated files (the folder holds nothing else)."""
    if out_dir.is_dir():
        for path in out_dir.iterdir():
            if path.is_file() and path.suffix in GENERATED_SUFFIXES:
                path.unlink()


def check_sources(results: ResultsRegistry) -> None:
    """Fails before anything is written when a measurement file or a recorded run's file
    is missing (:class:`~taco_plus.experiments.store.MissingResultError` names it)."""
    for relative in MEASUREMENTS:
        results.file(relative)
    for name in results.runs():
        results.run(name)


def build_report(registry: Registry, results: ResultsRegistry, out_dir: str | Path) -> list[Path]:
    """Writes every generated file into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    check_sources(results)
    _clean(out_dir)
    ctx = ReportContext(registry, results, out_dir)
    written = [ctx.write_tex("ablations.tex", ablation_table(ctx)),
               ctx.write_tex("cost_profiles.tex", profile_table(ctx))]
    costs_tex, costs = cost_table(ctx)
    written.append(ctx.write_tex("cost_runs.tex", costs_tex))
    written += write_attention(ctx)
    written += write_captions(ctx)
    written += write_results(ctx)
    written += write_sensitivity(ctx)

    ctx.source(registry.path)
    ctx.source(results.root / "cost" / "step_time.json")
    gpu_runs = [c for c in costs.values() if c.gpu_hours is not None]
    recorded = [r.name for r in registry if results.has_run(r.name)]
    macros = "".join([
        _macro("NumRuns", str(len(registry.runs))),
        _macro("NumGpuRuns", str(len(gpu_runs))),
        _macro("NumRecorded", str(len(recorded))),
        _macro("RecordedRuns", ", ".join(r.replace("_", r"\_") for r in recorded) or "none"),
        _macro("TotalGpuHours", f"{sum(c.gpu_hours for c in gpu_runs):,.0f}"),
        _macro("AssumedTflops", f"{registry.cost_model['assumed_sustained_tflops']:g}"),
        _macro("AssumedGpu", str(registry.cost_model["assumed_gpu"])),
    ])
    written.append(ctx.write_tex("macros.tex", macros))
    written.append(ctx.write_manifest())
    return written
