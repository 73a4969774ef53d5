"""This process's place in a ``torchrun`` (or multi-task SLURM) job and its device: what training and
evaluation share. With ``WORLD_SIZE > 1`` :func:`init_distributed` joins the process group (NCCL on
GPUs, Gloo on CPUs)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Rank, local rank and world size (rank 0 of 1 when not distributed)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistContext:
    """Joins the process group when launched with ``WORLD_SIZE > 1``."""
    if "WORLD_SIZE" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1 \
            and "SLURM_PROCID" in os.environ:  # hydra-submitit-launcher with tasks_per_node > 1
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return DistContext(rank, local_rank, world_size)


def resolve_device(name: str, ctx: DistContext = DistContext()) -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; under torchrun, this rank's GPU."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available (use cpu)")
    return torch.device("cuda", ctx.local_rank) if device.type == "cuda" and ctx.distributed else device
