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


# Environment variables that give the number of processes of a launcher or scheduler: torchrun and
# other torch.distributed launchers, Lightning's own subprocess launcher, Kubeflow (WORLD_SIZE); SLURM
# (SLURM_NTASKS); Open MPI and MPICH/Intel MPI (OMPI_COMM_WORLD_SIZE, PMI_SIZE); LSF/jsrun
# (JSM_NAMESPACE_SIZE).
PROCESS_COUNT_VARIABLES = (
    "WORLD_SIZE",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "JSM_NAMESPACE_SIZE",
)


def available_devices(accelerator: str) -> int | None:
    """How many devices ``accelerator`` offers here, as Lightning counts them for ``devices="auto"`` or
    ``-1``: CUDA GPUs for ``gpu``/``cuda`` (and for ``auto`` when CUDA is present), 1 for ``cpu``
    and ``mps`` (and for ``auto`` without CUDA); ``None`` for another accelerator (TPU, HPU, ...),
    whose count is not known here."""
    acc = str(accelerator).lower()
    if acc in ("gpu", "cuda"):
        return torch.cuda.device_count()
    if acc == "auto":
        return torch.cuda.device_count() if torch.cuda.is_available() else 1
    if acc in ("cpu", "mps"):
        return 1
    return None


def device_count(devices: Any, accelerator: str = "auto") -> int | None:
    """The number of devices (processes per node) Lightning uses for a ``devices`` value, parsed as
    Lightning parses it: ``"auto"`` and ``-1``/``"-1"`` all the accelerator's devices; an int or a
    digit string ``"N"`` N devices; ``"0,1"`` or a list the devices named. ``None`` when unknown (all
    devices of an accelerator this function cannot count)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return available_devices(accelerator)
        if "," in text:
            return len([d for d in text.split(",") if d.strip()])
        try:
            devices = int(text)
        except ValueError:
            raise ValueError(
                f"devices: expected an int, 'auto', '-1', 'N' or a comma-separated list of device ids "
                f"such as '0,1', got {devices!r}"
            ) from None
    if isinstance(devices, bool) or not isinstance(devices, int):
        raise ValueError(f"devices: expected an int, a string or a list of device ids, got {devices!r}")
    return available_devices(accelerator) if devices == -1 else devices


def launched_processes() -> int:
    """The number of processes a launcher or scheduler says this job has (1 when none says more):
    the largest of :data:`PROCESS_COUNT_VARIABLES` that is set to an integer."""
    counts = [1]
    for name in PROCESS_COUNT_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            counts.append(int(value))
    return max(counts)


def wants_ddp(devices: Any, num_nodes: int, accelerator: str = "auto") -> bool:
    """Whether a run with ``devices`` x ``num_nodes`` on ``accelerator`` may have more than one process:
    several nodes, several devices whatever the form of ``devices`` (``auto``, ``-1``, ``N``, ``"N"``,
    ``"0,1"``, a list), or a launcher / scheduler with several processes (torchrun, SLURM, MPI; see
    :func:`launched_processes`). Errs towards ``True``: a device count this process cannot know (an
    accelerator other than CPU, CUDA or MPS with ``auto`` or ``-1``) counts as several."""
    if num_nodes > 1 or launched_processes() > 1:
        return True
    count = device_count(devices, accelerator)
    return count is None or count > 1


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
