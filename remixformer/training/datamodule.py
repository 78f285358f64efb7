"""Data loaders of a run, built once the process knows its rank (DDP, several nodes, or one CPU)."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L

from remixformer.data.cases import CaseTable
from remixformer.data.loaders import epoch_loader, evaluation_loader, model_dataset, pin_memory_for
from remixformer.engine.devices import trainer_device
from remixformer.training.balance import class_balance
from remixformer.training.config import RunConfig

log = logging.getLogger(__name__)


def _dataset_options(cfg: RunConfig) -> dict[str, Any]:
    """The run's ``MultiModalDataset`` keywords shared by its training and validation sets."""
    return {
        "remix_modalities": cfg.data.remix_modalities,
        "seed": cfg.seed,
        "max_image_pixels": cfg.data.max_image_pixels,
        "cache_images": cfg.data.cache_images,
        "skip_bad_cases": cfg.data.skip_bad_cases,
        "augment": cfg.data.augment,
    }


def _warn_left_out(left_out: list[str], what: str, modalities: str) -> None:
    if left_out:
        log.warning(
            "%d %s case(s) have none of the model's modalities %s and are left out: %s",
            len(left_out),
            what,
            modalities,
            ", ".join(left_out[:20]),
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
        """The training set (built once: its cases also give the class balance)."""
        if split not in self._datasets:
            train = split == "train"
            cfg = self.cfg
            borrow = cfg.data.remix_modalities if (train and cfg.data.remix) else ""
            ds, left_out = model_dataset(
                self.table,
                self.splits[split],
                self.model_cfg,
                train=train,
                borrow=borrow,
                remix=cfg.data.remix and train,
                **_dataset_options(cfg),
            )
            _warn_left_out(left_out, "training" if train else "evaluation", self.model_cfg.modalities)
            self._datasets[split] = ds
        return self._datasets[split]

    def pin_memory(self) -> bool:
        """Pinned batches when this process trains on a CUDA device."""
        return pin_memory_for(trainer_device(self.trainer))

    def train_dataloader(self):
        if not self.splits.get("train"):
            return []
        t = self.cfg.train
        return epoch_loader(
            self.dataset("train"),
            t.batch_size,
            shuffle=True,
            seed=self.cfg.seed,
            num_workers=self.cfg.data.num_workers,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
            weights=self.balance().get("sample_weights"),
            pin_memory=self.pin_memory(),
        )

    def val_dataloader(self):
        if not self.splits.get("val"):
            return []
        t = self.cfg.train
        loader, left_out = evaluation_loader(
            self.table,
            self.splits["val"],
            self.model_cfg,
            batch_size=t.eval_batch_size or t.batch_size,
            num_workers=self.cfg.data.num_workers,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
            pin_memory=self.pin_memory(),
            **_dataset_options(self.cfg),
        )
        _warn_left_out(left_out, "evaluation", self.model_cfg.modalities)
        return loader
