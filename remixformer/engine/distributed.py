"""Distributed helpers: one guard for "is torch.distributed running", and what is built on it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch


def is_rank_zero() -> bool:
    """True in the process that writes files (global rank 0; also without any distributed set-up)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def wants_ddp(devices: Any, num_nodes: int) -> bool:
    """Whether a run on ``devices`` x ``num_nodes`` (or under torchrun / SLURM) is distributed."""
    return (
        num_nodes > 1
        or (isinstance(devices, int) and devices > 1)
        or os.environ.get("WORLD_SIZE", "1") not in ("", "1")
    )


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is available and initialised in this process."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def end_process_group() -> None:
    """Destroy the default process group, if this process has one (a no-op otherwise).

    Every process of a distributed run calls this when its collective work is over. A gloo process
    group left alive until the interpreter exits can abort the process (SIGABRT, "terminate called
    without an active exception") while its worker threads are torn down; seen on a rank that had
    finished while rank 0 still evaluated. Destroying the group is local to the process: no rank waits
    for another here.
    """
    if is_distributed():
        torch.distributed.destroy_process_group()


def world_size() -> int:
    """The number of processes when ``torch.distributed`` is initialised, else 1."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over processes in place when running distributed; a no-op on one process."""
    if is_distributed():
        torch.distributed.all_reduce(t)
    return t


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` on one process)."""
    if world_size() <= 1:
        return [obj]
    gathered: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def weight_checksum(parameters: Iterable[torch.Tensor]) -> float:
    """A position-weighted sum of the weights: equal on every process when DDP kept them in step."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum().item() * (i + 1) for i, p in enumerate(parameters)))


def weight_checksums(parameters: Iterable[torch.Tensor]) -> list[float]:
    """:func:`weight_checksum` of every process, in rank order."""
    return [float(c) for c in gather_objects(weight_checksum(parameters))]
