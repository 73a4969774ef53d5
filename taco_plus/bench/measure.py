"""Measurement primitives of the benchmarks: time, peak memory, FLOPs; how and why (process CPU time on shared
machines, the profiler's allocation events for CPU memory): docs/attention.md, "Benchmark"."""

from __future__ import annotations

import copy
import os
import time
from statistics import median  # noqa: F401 - the benchmarks' summary statistic
from typing import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

# Kineto logs a spurious "gpuGetDeviceCount failed" error on CPU-only machines.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

CLOCKS = ("wall", "cpu")


def time_ms(fn: Callable[[], object], device: torch.device, clock: str = "wall") -> float:
    """Wall time (with CUDA synchronisation) or process CPU time (``clock="cpu"``) of one call, in ms."""
    if clock == "cpu" and device.type != "cpu":
        raise ValueError("clock='cpu' measures CPU work; use clock='wall' on a GPU")
    timer = time.perf_counter if clock == "wall" else time.process_time
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = timer()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (timer() - start) * 1e3


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory growth (MiB) during one call of ``fn``: the CUDA allocator's own count on a GPU,
    on a CPU the peak running sum of torch's allocation and free events recorded by the profiler."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()  # negative for frees
        peak = max(peak, live)
    return peak / 2**20


def forward_gflops(module: nn.Module, *inputs: torch.Tensor) -> float:
    """Forward GFLOPs of ``module(*inputs)`` (multiply-add = 2), counted on meta copies: no compute."""
    meta_module = copy.deepcopy(module).to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_module(*(x.to("meta") for x in inputs))
    return counter.get_total_flops() / 1e9
