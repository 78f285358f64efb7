"""Sampling that makes every epoch a pure function of (seed, epoch, rank).

The sampler yields ``(index, epoch)`` pairs; :class:`EpochIndexed` hands the epoch to the data set
inside the worker that loads the sample, so augmentations and remix draws are the same whatever the
number of workers, and a run resumed at an epoch boundary sees exactly the batches it would have seen.
Under DDP each rank takes its own stride of one shared permutation (padded to equal length).
With ``weights`` (class-balanced sampling, :mod:`remixformer.training.balance`) the epoch's order is
``n`` draws with replacement from those weights instead of a permutation, sharded the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


class EpochSampler(Sampler):
    def __init__(
        self,
        n: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0
        self.weights = None
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float64)
            if w.shape != (n,) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ValueError(
                    f"sampler weights must be {n} finite non-negative numbers with a positive sum"
                )
            self.weights = w

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
            if self.weights is not None:
                order = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
            else:
                order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world_size > 1:
            if self.pad and order:
                total = math.ceil(self.n / self.world_size) * self.world_size
                order = (order * math.ceil(total / len(order)))[:total]
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(i, self.epoch) for i in self._order()])

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.n
        if self.pad:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))


class EpochIndexed(Dataset):
    """Wraps a data set with ``set_epoch``; items are fetched by ``(index, epoch)``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, epoch = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]
