"""Multi-GPU / multi-machine training through torchrun only (torch.distributed + DDP).

Launched by ``torchrun`` (``WORLD_SIZE`` > 1), a process joins the process group (nccl
on CUDA, gloo on CPU), trains on its own GPU (``LOCAL_RANK``), wraps the R-Net in
SyncBatchNorm (CUDA only, as torch has it) + DistributedDataParallel, and reads its share of the data through a
DistributedSampler; only rank 0 writes files. Launched plainly, it is one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessContext:
    """This process's place in the run: rank, world size, local rank and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints and logs."""
        return self.rank == 0


def resolve_device(name: str, local_rank: int) -> torch.device:
    """cpu / cuda / cuda:K / auto; a plain "cuda" under torchrun is this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def init_process(device_name: str = "auto") -> ProcessContext:
    """Read torchrun's environment and join the process group when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ProcessContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def wrap_model(net: torch.nn.Module, context: ProcessContext) -> torch.nn.Module:
    """SyncBatchNorm + DDP when distributed (the original's choice); else the net itself.

    SyncBatchNorm runs on CUDA only, so CPU (gloo) processes keep per-process batch
    statistics; DDP still broadcasts rank 0's running statistics every forward pass.
    """
    if not context.distributed:
        return net
    if context.device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=device_ids)


def close_process(context: ProcessContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
