"""Process-group helpers so the same code runs single-process or under `torchrun` (DDP).

Pruning decisions are made on rank 0 and broadcast, so every rank removes the same channels;
only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """True when the environment carries torchrun's rendezvous variables."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env() -> bool:
    """Join the process group torchrun set up (gloo on CPU, nccl on GPU). Returns True if distributed."""
    if not launched_by_torchrun():
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Only the main process writes artifacts and prints."""
    return rank() == 0


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (identity when not distributed)."""
    if not is_distributed():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few scalars over ranks (accuracy counts)."""
    if not is_distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def device_for_rank() -> torch.device:
    """CUDA device of this rank when CUDA is present, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Overwrite every buffer (BatchNorm statistics) with rank 0's."""
    if not is_distributed():
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)
