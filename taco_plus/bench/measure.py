"""Measurement primitives for the benchmarks: wall time, peak memory, FLOPs.

* Time: ``time.perf_counter`` around the call, with ``torch.cuda.synchronize`` on a GPU
  (``clock="wall"``); or, on a CPU shared with other jobs, the process's CPU time
  (``clock="cpu"``, ``time.process_time``: unaffected by time-slicing; the command
  lines use one torch thread with it, since with several the spin-waiting of idle
  OpenMP threads is counted too; one thread's CPU time is its wall time on an idle core).
  :func:`times_ms` times repeated calls with CUDA events on a GPU (one pair per call,
  one synchronisation at the end).
* Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` growth over the call (the
  caching allocator's own count). On a CPU, ``tracemalloc`` does not see torch's
  allocations and the resident set hides reused memory, so ``torch.profiler`` records
  every allocation and free of torch's CPU allocator during the call (kernel
  workspaces included); the peak of their running sum is reported: the most tensor
  memory the call held at once beyond what existed before it.
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts 2) on a
  copy of the module on the ``meta`` device, so counting costs no compute.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

# Kineto logs a spurious "gpuGetDeviceCount failed" error on CPU-only machines.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")


def default_device() -> torch.device:
    """The GPU when one is present, the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = ("wall", "cpu")


def time_ms(fn: Callable[[], object], device: torch.device, clock: str = "wall") -> float:
    """Wall time (or process CPU time, ``clock="cpu"``) of one call in milliseconds."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if clock == "cpu" and device.type != "cpu":
        raise ValueError("clock='cpu' measures CPU work; use clock='wall' on a GPU")
    timer = time.perf_counter if clock == "wall" else time.process_time
    synchronize(device)
    start = timer()
    fn()
    synchronize(device)
    return (timer() - start) * 1e3


def times_ms(fn: Callable[[], object], repeat: int, device: torch.device, clock: str = "wall") -> list[float]:
    """Milliseconds of ``repeat`` calls: CUDA events on a GPU, else :func:`time_ms` with ``clock``."""
    if device.type != "cuda":
        return [time_ms(fn, device, clock) for _ in range(repeat)]
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeat)]
    synchronize(device)
    for start, end in events:
        start.record()
        fn()
        end.record()
    synchronize(device)
    return [start.elapsed_time(end) for start, end in events]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def memory_method(device: torch.device) -> str:
    """A short statement of how :func:`peak_memory_mb` measures on ``device``."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated growth"
    return "peak of torch.profiler CPU allocation events (running sum of allocs - frees)"


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory growth (MiB) during one call of ``fn`` (module docstring)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
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
    """Forward GFLOPs of ``module(*inputs)``, counted on meta copies (no compute)."""
    meta_module = copy.deepcopy(module).to("meta")
    meta_inputs = [x.to("meta") for x in inputs]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_module(*meta_inputs)
    return counter.get_total_flops() / 1e9
