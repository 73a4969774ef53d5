"""Multi-process training with ``torchrun``: process group, devices, rank-0 duties.

``torchrun --nproc_per_node=K -m taco_plus.train ...`` sets ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK`` (a SLURM job with several tasks gets them from submitit); with ``WORLD_SIZE > 1`` :func:`init_distributed` joins the group
(NCCL on GPUs, Gloo on CPUs), the model is wrapped in DistributedDataParallel, each
rank reads its shard of every epoch (:class:`~taco_plus.data.ResumableSampler`), all
ranks use rank 0's run folder, and only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (1 process, rank 0 when not distributed)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _export_slurm_environment() -> None:
    """Under SLURM with several tasks (hydra-submitit-launcher ``tasks_per_node > 1``),
    sets the ``torchrun``-style variables from the job environment."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    if "SLURM_PROCID" not in os.environ:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init_distributed() -> DistContext:
    """Joins the process group when launched with ``WORLD_SIZE > 1`` (torchrun, or a
    multi-task SLURM job)."""
    _export_slurm_environment()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return DistContext(rank, local_rank, world_size)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, ctx: DistContext) -> torch.device:
    """``"auto"`` -> this rank's GPU if there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"trainer.device={name!r} but CUDA is not available (use device=cpu)")
        if ctx.distributed:  # one GPU per process
            device = torch.device("cuda", ctx.local_rank)
    return device


def all_ranks_finite(value: torch.Tensor, ctx: DistContext) -> bool:
    """True when ``value`` is finite on every rank (all ranks stop together)."""
    ok = torch.isfinite(value.detach()).all().to(torch.int32).reshape(1)
    if ctx.distributed:
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` when not distributed)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself when not distributed)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
