"""Report sections from the ablation registry: the runs, their status and their cost.

* ``ablations.tex``: every run of ``experiments/ablations.yaml`` -- study, what it
  changes, rate points, and whether it has been recorded (else why not);
* ``cost_profiles.tex``: the measured training step of each configuration profile
  (FLOPs, CPU time, text tokens) from ``cost/step_time.json``;
* ``cost_runs.tex``: steps, FLOPs and estimated GPU hours of every run, with the
  throughput assumption stated in the caption.
"""

from __future__ import annotations

from taco_plus.experiments.cost import RunCost, all_costs, load_step_time
from taco_plus.experiments.report.context import ReportContext
from taco_plus.experiments.tables import MISSING, Table, fmt


def status(ctx: ReportContext, name: str) -> str:
    """``recorded (n points)`` or the registry's not-run reason."""
    if ctx.results.has_run(name):
        run = ctx.source_run(name)
        return f"recorded ({len(run.labels)} points)"
    return ctx.registry.not_run_reason(ctx.registry[name])


def ablation_table(ctx: ReportContext) -> str:
    ctx.source(ctx.registry.path)
    table = Table(["run", "study", "what changes", "λ", "status"], align="llp{5.6cm}rp{5.2cm}",
                  title="The runs of the ablation study (experiments/ablations.yaml); commands: "
                        "python -m taco_plus.experiments show NAME")
    for run in ctx.registry:
        table.add([run.name, run.ablation, run.changes, str(len(run.lambdas)), status(ctx, run.name)])
    return table.render("latex", label="tab:ablations")


def profile_table(ctx: ReportContext) -> str:
    step_time = load_step_time(ctx.registry, ctx.results)
    ctx.source(ctx.results.root / "cost" / "step_time.json")
    setup, cpu = step_time["setup"], step_time["cpu"]
    table = Table(
        ["profile", "configuration", "text tokens", "TFLOP/step", "× baseline", "CPU s/step", "wall s/step"],
        align="lp{6.0cm}rrrrr",
        title=(f"One training step (batch {setup['batch_size']}, {setup['crop']}² crops, {setup['precision']} "
               f"autocast), measured on {cpu['model']} ({cpu['torch_threads']} threads, load average "
               f"{cpu['loadavg_before'][0]:.1f}–{cpu['loadavg_after'][0]:.1f} from other jobs)"),
    )
    base = step_time["profiles"].get("full_38")
    for name, p in step_time["profiles"].items():
        relative = p["flops_per_step"] / base["flops_per_step"] if base else None
        table.add([name, p["description"], str(p["layout_tokens"]), fmt(p["flops_per_step"] / 1e12, 3),
                   fmt(relative, 3), fmt(p.get("median_cpu_s"), 1), fmt(p["median_step_s"], 1)])
    def spread(key: str):
        ratios = [max(p[key]) / min(p[key]) for p in step_time["profiles"].values()
                  if len(p.get(key, [])) > 1 and min(p[key]) > 0]
        return max(ratios, default=None)

    cpu_spread, wall_spread = spread("cpu_s"), spread("step_s")
    table.notes = [
        "FLOPs: torch.utils.flop_counter over the whole step (text encoder, codec forward and backward, LPIPS and "
        f"CLIP losses); a multiply-add counts 2. Times: medians of {setup['repeat']} steps, CPU = process CPU time of "
        "all threads, wall = elapsed time." + (
            f" On this machine, shared with other jobs, identical steps differed by up to {cpu_spread:.2f}x in CPU "
            f"time and {wall_spread:.2f}x in wall time. The GPU estimates use the FLOPs only."
            if cpu_spread and wall_spread else " The GPU estimates use the FLOPs only."),
    ]
    return table.render("latex", label="tab:cost-profiles")


def _cost_cells(cost: RunCost) -> list[str]:
    if cost.device == "cpu":
        minutes = f"{cost.cpu_minutes:.0f} CPU min (measured)" if cost.cpu_minutes is not None else "CPU run"
        return [str(cost.models), f"{cost.steps_per_model:,}", MISSING, MISSING, minutes]
    return [str(cost.models), f"{cost.steps_per_model:,}", fmt(cost.flops_per_step / 1e12, 3),
            fmt(cost.relative_step_flops, 2), f"{cost.gpu_hours:,.0f}"]


def cost_table(ctx: ReportContext) -> tuple[str, dict[str, RunCost]]:
    ctx.source(ctx.registry.path)
    ctx.source(ctx.results.root / "cost" / "step_time.json")
    costs = all_costs(ctx.registry, ctx.results)
    for run in ctx.registry:  # the CPU runs' minutes come from their recorded training logs
        if run.device == "cpu" and ctx.results.has_run(run.name):
            ctx.source_run(run.name)
    model = ctx.registry.cost_model
    table = Table(
        ["run", "models", "steps/model", "TFLOP/step", "× baseline", "GPU hours"],
        title=(f"Expected training cost: rate points × steps × measured FLOPs per step at an ASSUMED sustained "
               f"{model['assumed_sustained_tflops']:g} TFLOP/s on {model['assumed_gpu']}"),
    )
    for run in ctx.registry:
        table.add([run.name, *_cost_cells(costs[run.name])])
    total = sum(c.gpu_hours for c in costs.values() if c.gpu_hours is not None)
    table.notes = [
        f"Total for the GPU runs: {total:,.0f} GPU hours. Steps: epochs × (COCO train2014 images with both sides "
        "≥ 256, estimated from the COCO sample) / batch 8; fine-tuning runs: 5 epochs.",
    ]
    return table.render("latex", label="tab:cost-runs"), costs
