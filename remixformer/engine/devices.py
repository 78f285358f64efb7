"""Which torch device a command, or a run's final evaluation, uses."""

from __future__ import annotations

from typing import Any

import torch

AUTO = "auto"


def resolve_device(name: str | torch.device, option: str = "--device") -> torch.device:
    """The device ``name`` names, checked to exist here: ``"auto"`` is CUDA when a CUDA GPU is present,
    else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and ``"mps"`` as torch reads them. Raises
    ``ValueError`` naming ``option`` and the problem (no CUDA GPU, a GPU index out of range, an unknown
    device type), so that a command stops before it loads anything."""
    if isinstance(name, torch.device):
        device = name
    else:
        text = str(name).strip().lower()
        if text == AUTO:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(text)
        except RuntimeError:
            raise ValueError(
                f"{option} {name!r}: expected auto, cpu, cuda, cuda:N or mps (a torch device)"
            ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option} {name}: no CUDA GPU is available here; use {option} cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{option} {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{option} {name}: no Apple MPS device is available here; use {option} cpu")
    elif device.type != "cpu":
        raise ValueError(
            f"{option} {name}: expected auto, cpu, cuda, cuda:N or mps, got device type {device.type!r}"
        )
    return device


def trainer_device(trainer: Any) -> torch.device:
    """The device this process of a Lightning trainer runs on (``cuda:<local rank>`` on GPUs, the CPU
    otherwise): where its batches go (pinned memory on CUDA) and, after a fit, where the run's final
    evaluation goes."""
    device = getattr(getattr(trainer, "strategy", None), "root_device", None)
    return device if isinstance(device, torch.device) else torch.device("cpu")
