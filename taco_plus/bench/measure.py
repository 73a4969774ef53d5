"""Measurement primitives for the benchmarks: wall time, peak memory, FLOPs.

* Time: ``time.perf_counter`` around the call, with ``torch.cuda.synchronize`` on a GPU.
* Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` growth over the call (the
  caching allocator's own count). On a CPU, ``tracemalloc`` does not see torch's
  allocations, so the Linux kernel's count is used: the peak resident set
  (``VmHWM``) is reset through ``/proc/self/clear_refs`` before the call and the
  growth over the resident set at that moment is reported. It includes everything
  the process touched during the call (allocator slack too). Elsewhere: NaN.
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts 2) on a
  copy of the module on the ``meta`` device, so counting costs no compute.
"""

from __future__ import annotations

import copy
import math
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def default_device() -> torch.device:
    """The GPU when one is present, the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call in milliseconds."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _proc_kib(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", PROC_STATUS.read_text(), re.M)
    if match is None:
        raise OSError(f"{key} not in {PROC_STATUS}")
    return int(match.group(1))


def memory_method(device: torch.device) -> str:
    """A short statement of how :func:`peak_memory_mb` measures on ``device``."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated growth"
    if PROC_CLEAR_REFS.exists():
        return "peak RSS growth (VmHWM reset via /proc/self/clear_refs)"
    return "not measured on this platform"


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory growth (MiB) during one call of ``fn`` (module docstring)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    try:
        PROC_CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
        base = _proc_kib("VmRSS")
        fn()
        return max(_proc_kib("VmHWM") - base, 0) / 1024
    except OSError:
        fn()
        return math.nan


def forward_gflops(module: nn.Module, *inputs: torch.Tensor) -> float:
    """Forward GFLOPs of ``module(*inputs)``, counted on meta copies (no compute)."""
    meta_module = copy.deepcopy(module).to("meta")
    meta_inputs = [x.to("meta") for x in inputs]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_module(*meta_inputs)
    return counter.get_total_flops() / 1e9
