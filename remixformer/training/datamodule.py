"""Data loaders of a run, built once the process knows its rank (DDP, several nodes, or one CPU)."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from remixformer.data.cases import CaseTable
from remixformer.training.balance import class_balance
from remixformer.training.config import RunConfig
from remixformer.training.sampling import EpochIndexed, EpochSampler

log = logging.getLogger(__name__)


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


def make_dataset(table: CaseTable, indices: list[int], model_cfg: Any, train: bool, cfg: RunConfig):
    from remixformer.data.dataset import MultiModalDataset

    borrow = cfg.data.remix_modalities if (train and cfg.data.remix) else ""
    indices, left_out = answerable(table, indices, model_cfg.modalities, borrow)
    if left_out:
        log.warning(
            "%d %s case(s) have none of the model's modalities %s and are left out: %s",
            len(left_out),
            "training" if train else "evaluation",
            model_cfg.modalities,
            ", ".join(left_out[:20]),
        )
    return MultiModalDataset(
        table,
        indices,
        modalities=model_cfg.modalities,
        clinical_size=model_cfg.clinical.image_size,
        dermoscopy_size=model_cfg.dermoscopy.image_size,
        train=train,
        remix=cfg.data.remix and train,
        remix_modalities=cfg.data.remix_modalities,
        seed=cfg.seed,
        max_image_pixels=cfg.data.max_image_pixels,
        cache_images=cfg.data.cache_images,
        skip_bad_cases=cfg.data.skip_bad_cases,
        augment=cfg.data.augment,
    )


def make_loader(
    dataset: Any,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    weights: Any = None,
) -> DataLoader:
    from remixformer.data.dataset import collate

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
        persistent_workers=False,
        pin_memory=False,
    )


class RemixDataModule(L.LightningDataModule):
    def __init__(
        self, cfg: RunConfig, table: CaseTable, splits: dict[str, list[int]], model_cfg: Any
    ) -> None:
        super().__init__()
        self.cfg, self.table, self.splits, self.model_cfg = cfg, table, splits, model_cfg
        self._datasets: dict[str, Any] = {}
        self._balance: dict[str, Any] | None = None

    def balance(self) -> dict[str, Any]:
        """``train.class_balance`` computed on the training cases the model is fed (see balance.py)."""
        if self._balance is None:
            t = self.cfg.train
            ds = self.dataset("train") if self.splits.get("train") else None
            self._balance = class_balance(
                self.table,
                ds.indices if ds is not None else [],
                self.model_cfg.task_specs,
                t.class_balance,
                t.class_weighting,
                t.class_balance_beta,
                t.sampler_power,
            )
        return self._balance

    def dataset(self, split: str):
        if split not in self._datasets:
            self._datasets[split] = make_dataset(
                self.table, self.splits[split], self.model_cfg, split == "train", self.cfg
            )
        return self._datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader | list:
        if not self.splits.get(split):
            return []
        t = self.cfg.train
        bs = t.batch_size if shuffle else (t.eval_batch_size or t.batch_size)
        return make_loader(
            self.dataset(split),
            bs,
            shuffle=shuffle,
            seed=self.cfg.seed,
            num_workers=self.cfg.data.num_workers,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
            weights=self.balance().get("sample_weights") if shuffle else None,
        )

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)
