"""Loaders of a model's cases: which cases a model can answer, its data set, and epoch-indexed loaders.

:func:`evaluation_loader` is the one way to build an evaluation loader for a model (evaluation,
permutation importance, a run's validation): the cases that have at least one of the model's
modalities, read at the model's image sizes without augmentation or remix, in order, sharded by rank
without padding under DDP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from remixformer.data.cases import CaseTable
from remixformer.data.dataset import MultiModalDataset, collate
from remixformer.data.sampling import EpochIndexed, EpochSampler


def answerable(
    table: CaseTable, indices: list[int], modalities: str, borrow: str = ""
) -> tuple[list[int], list[str]]:
    """Cases that have at least one of ``modalities`` (or can borrow one of ``borrow`` by remix), and
    the ids of those that cannot be fed to the model at all."""
    have = np.zeros(len(table), dtype=bool)
    for m in modalities:
        have |= table.has_modality(m) if m in table.modalities else False
        if m in borrow:
            have[:] = True
    keep = [i for i in indices if have[i]]
    return keep, [table.cases[i].case_id for i in indices if not have[i]]


def model_dataset(
    table: CaseTable,
    indices: Sequence[int],
    model_config: Any,
    *,
    train: bool = False,
    borrow: str = "",
    **options: Any,
) -> tuple[MultiModalDataset, list[str]]:
    """The answerable cases of ``indices`` as a :class:`MultiModalDataset` at the model's modalities and
    image sizes, and the ids of the cases left out. ``options``: further ``MultiModalDataset`` keywords
    (remix, seed, max_image_pixels, cache_images, skip_bad_cases, augment, ...)."""
    kept, left_out = answerable(table, list(indices), model_config.modalities, borrow)
    ds = MultiModalDataset(
        table,
        kept,
        modalities=model_config.modalities,
        clinical_size=model_config.clinical.image_size,
        dermoscopy_size=model_config.dermoscopy.image_size,
        train=train,
        **options,
    )
    return ds, left_out


def pin_memory_for(device: str | torch.device | None) -> bool:
    """Whether batches bound for ``device`` are best read into pinned (page-locked) memory: on CUDA,
    where a pinned batch is copied to the GPU asynchronously and faster; never for the CPU."""
    return device is not None and torch.device(device).type == "cuda"


def epoch_loader(
    dataset: Any,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    weights: Any = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader whose epochs are a pure function of (seed, epoch, rank) (:mod:`remixformer.data.sampling`);
    shuffled shards are padded to equal length, ordered ones are not.

    ``pin_memory``: read batches into pinned memory (for a CUDA device, :func:`pin_memory_for`). With
    workers, they persist from epoch to epoch (not restarted, and not re-forked with the data set, at
    every epoch): the epoch travels with each index (``EpochIndexed``), so a persistent worker reads
    what a fresh one would."""
    sampler = EpochSampler(
        len(dataset),
        seed=seed,
        shuffle=shuffle,
        rank=rank,
        world_size=world_size,
        pad=shuffle,
        weights=weights,
    )
    return DataLoader(
        EpochIndexed(dataset),
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )


def evaluation_loader(
    table: CaseTable,
    indices: Sequence[int],
    model_config: Any,
    *,
    batch_size: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    **options: Any,
) -> tuple[DataLoader, list[str]]:
    """An evaluation loader for a model (``model_config``: its ``ModelConfig``) over cases ``indices`` of
    ``table``: in order, no augmentation, no remix. Returns the loader and the ids of the cases left out
    because they have none of the model's modalities. ``pin_memory``: as :func:`epoch_loader`.
    ``options``: further ``MultiModalDataset`` keywords (max_image_pixels, cache_images,
    skip_bad_cases, seed, ...)."""
    ds, left_out = model_dataset(table, indices, model_config, train=False, remix=False, **options)
    loader = epoch_loader(
        ds,
        batch_size,
        shuffle=False,
        num_workers=num_workers,
        rank=rank,
        world_size=world_size,
        pin_memory=pin_memory,
    )
    return loader, left_out
