"""The LightningModule of DINO pretraining and its data module.

Per optimiser step ``it`` (``optimizer_step``): learning rate and weight decay are set from the per-step
arrays, the student steps, then the teacher moves by EMA with momentum ``m[it]``. Before the step the
head's last layer loses its gradient during the first ``freeze_last_layer_epochs`` epochs, and each
parameter's gradient is clipped to ``clip_grad`` (DINO's per-tensor clipping, after AMP unscaling, via
``configure_gradient_clipping``). Logged under ``pretrain/``: loss, lr, wd, momentum, teacher and student
temperatures, and the teacher's output entropy (``teacher_entropy_ratio`` = entropy / log K) to see
collapse (``callbacks.CollapseGuard`` warns about it).
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from remixformer.data.loaders import pin_memory_for
from remixformer.engine.devices import trainer_device
from remixformer.engine.distributed import weight_checksums
from remixformer.pretrain.config import PretrainConfig
from remixformer.pretrain.meta_arch import DINOMetaArch
from remixformer.pretrain.schedules import Schedules
from remixformer.pretrain.windows import WindowDataset, make_loader

log = logging.getLogger(__name__)


def views_first(x: torch.Tensor) -> torch.Tensor:
    """(B, V, 3, s, s) -> (V * B, 3, s, s): all first views, then all second views, ... (DINO's order)."""
    return x.transpose(0, 1).flatten(0, 1)


class DINOModule(L.LightningModule):
    def __init__(self, cfg: PretrainConfig, meta: DINOMetaArch | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.meta = meta if meta is not None else DINOMetaArch(cfg)
        self.schedules: Schedules | None = None
        self.teacher_checksums: list[float] = []

    # --- schedules -------------------------------------------------------------------------------
    def build_schedules(self) -> Schedules:
        """From the trainer: optimiser steps per epoch, and windows per step over all processes."""
        t = self.trainer
        steps_per_epoch = max(1, int(t.estimated_stepping_batches) // max(1, t.max_epochs or 1))
        effective = self.cfg.optim.batch_size * t.world_size * t.accumulate_grad_batches
        return Schedules.build(self.cfg, steps_per_epoch, effective)

    def on_train_epoch_start(self) -> None:
        # Drop path draws are a function of (seed, epoch, rank): a resumed run draws what it would have.
        torch.manual_seed(
            (self.cfg.seed * 1_000_003 + self.current_epoch * 10_007 + self.global_rank) % 2**63
        )

    # --- step ------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        assert self.schedules is not None
        s = self.schedules.at(self.global_step)
        global_views = views_first(batch["global"])
        local_views = views_first(batch["local"])
        out = self.meta(global_views, local_views, s["teacher_temp"], n_global=batch["global"].shape[1])
        B = batch["global"].shape[0]
        self.log(
            "pretrain/loss",
            out["loss"],
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=B,
            sync_dist=True,
        )
        for k in ("teacher_entropy", "teacher_entropy_ratio", "teacher_mean_entropy_ratio"):
            self.log(
                f"pretrain/{k}",
                out[k],
                prog_bar=k == "teacher_entropy_ratio",
                on_step=True,
                on_epoch=True,
                batch_size=B,
                sync_dist=True,
            )
        self.log_dict(
            {
                "pretrain/lr": s["lr"],
                "pretrain/wd": s["weight_decay"],
                "pretrain/momentum": s["momentum"],
                "pretrain/teacher_temp": s["teacher_temp"],
                "pretrain/student_temp": self.cfg.dino.student_temp,
            },
            on_step=True,
            on_epoch=False,
            batch_size=B,
        )
        return out["loss"]

    # --- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        self.schedules = self.build_schedules()
        s = self.schedules
        log.info(
            "schedules: %d steps (%d per epoch); lr %.3g (scaled to %d windows per step) -> %.3g, "
            "wd %.3g -> %.3g, teacher momentum %.4g -> %.4g, teacher temperature %.3g -> %.3g",
            s.total_steps,
            s.steps_per_epoch,
            s.base_lr,
            self.cfg.optim.batch_size * self.trainer.world_size * self.trainer.accumulate_grad_batches,
            s.lr[-1],
            s.weight_decay[0],
            s.weight_decay[-1],
            s.momentum[0],
            s.momentum[-1],
            s.teacher_temp[0],
            s.teacher_temp[-1],
        )
        return torch.optim.AdamW(self.meta.param_groups(), lr=float(s.lr[0]))

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        assert self.schedules is not None
        s = self.schedules.at(self.global_step)  # steps done so far = index of this step
        for group in optimizer.param_groups:
            group["lr"] = s["lr"]
            if group.get("apply_wd", False):
                group["weight_decay"] = s["weight_decay"]
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.meta.update_teacher(s["momentum"])

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.current_epoch < self.cfg.optim.freeze_last_layer_epochs:
            self.meta.cancel_last_layer_gradients()

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        if self.cfg.optim.clip_grad > 0:
            self.meta.clip_gradients(self.cfg.optim.clip_grad)

    def on_fit_end(self) -> None:
        """A checksum of the teacher on every process (they must agree under DDP)."""
        self.teacher_checksums = weight_checksums(self.meta.teacher.parameters())


class WindowDataModule(L.LightningDataModule):
    """The training loader, built once the process knows its rank and the world size."""

    def __init__(self, dataset: WindowDataset, batch_size: int, seed: int, num_workers: int = 0) -> None:
        super().__init__()
        self.dataset, self.batch_size, self.seed, self.num_workers = dataset, batch_size, seed, num_workers

    def train_dataloader(self) -> DataLoader:
        return make_loader(
            self.dataset,
            self.batch_size,
            seed=self.seed,
            num_workers=self.num_workers,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
            pin_memory=pin_memory_for(trainer_device(self.trainer)),
        )
