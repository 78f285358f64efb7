"""The LightningModule: summed task losses, optimisation, reproducible per-epoch randomness and the
validation metrics used to pick the best checkpoint."""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from remixformer import keys
from remixformer.engine.distributed import gather_objects, weight_checksums
from remixformer.evaluation.predictions import Predictions
from remixformer.evaluation.report import evaluate_predictions
from remixformer.tasks import MULTI, TaskSpec
from remixformer.training.config import TrainConfig

log = logging.getLogger(__name__)


def task_losses(
    logits: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    tasks: tuple[TaskSpec, ...],
    class_weights: dict[str, torch.Tensor] | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum over tasks of (weight x) cross-entropy; BCE for multi-label tasks. Unknown labels (-1, NaN)
    are left out; a task with no known label in the batch contributes nothing. ``class_weights``: per
    single-label task, a weight per class (``train.class_balance=loss``); ``label_smoothing`` applies to
    the single-label tasks."""
    total = next(iter(logits.values())).new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for t in tasks:
        y = targets.get(t.name)
        if y is None:
            continue
        x = logits[t.name]
        if t.kind == MULTI:
            known = ~torch.isnan(y)
            if not known.any():
                continue
            loss = F.binary_cross_entropy_with_logits(x[known], y[known].to(x.dtype))
        else:
            known = y != keys.IGNORE_INDEX
            if not known.any():
                continue
            w = class_weights.get(t.name) if class_weights else None
            loss = F.cross_entropy(
                x[known],
                y[known],
                weight=None if w is None else w.to(device=x.device, dtype=x.dtype),
                label_smoothing=label_smoothing,
            )
        parts[t.name] = loss.detach()
        total = total + t.weight * loss
    return total, parts


class WarmupCosine:
    """Learning-rate factor per optimiser step: linear warm-up, then cosine down to ``floor``.
    A plain object (not a closure), so LambdaLR can store its state without pickling."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, floor: float = 0.0, cosine: bool = True):
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = int(warmup_steps)
        self.floor = float(floor)
        self.cosine = bool(cosine)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if not self.cosine:
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


class WeightAverage(torch.nn.Module):
    """An exponential moving average of a model's weights (``train.ema_decay``): after every optimiser
    step, ``ema = d * ema + (1 - d) * weights`` with ``d = min(decay, (1 + n) / (10 + n))`` at the
    n-th update (the usual warm-up, so that the first epochs are not dominated by the initial weights);
    buffers (BatchNorm statistics) are copied. A submodule of the LightningModule, so the training state
    holds it and a resumed run continues it exactly."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.decay = float(decay)
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        n = int(self.updates.item())
        d = min(self.decay, (1 + n) / (10 + n))
        for avg, new in zip(self.module.parameters(), model.parameters()):
            avg.lerp_(new.detach(), 1.0 - d)
        for avg, new in zip(self.module.buffers(), model.buffers()):
            avg.copy_(new)
        self.updates += 1


class RemixFormerModule(L.LightningModule):
    """``class_weights``: per-class loss weights of single-label tasks (``train.class_balance=loss``),
    used in training only; validation reports the plain loss. With ``train.ema_decay`` validation, the
    best and last model files are those of the weight average (:class:`WeightAverage`)."""

    def __init__(
        self,
        model: torch.nn.Module,
        train_cfg: TrainConfig,
        seed: int = 0,
        class_weights: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.cfg = train_cfg
        self.seed = seed
        self.tasks: tuple[TaskSpec, ...] = model.tasks
        self.class_weights = {
            name: torch.as_tensor(w, dtype=torch.float32) for name, w in (class_weights or {}).items()
        }
        self._val: list[dict[str, Any]] = []
        self.weight_checksums: list[float] = []
        self.ema = WeightAverage(model, train_cfg.ema_decay) if train_cfg.ema_decay > 0 else None
        self._ema_step = -1

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated and saved: the average with ``train.ema_decay``, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def forward(self, batch: dict[str, Any], explain: bool = False) -> dict[str, Any]:
        return self.model(batch, explain=explain)

    # --- randomness ------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The model's own randomness (LSM sampling, drop path, modality dropout) is a function of
        # (seed, epoch, batch, rank): a run resumed at an epoch boundary draws exactly what it would
        # have, whatever else consumed the global generator in between (data loader set-up, restarts).
        key = ((self.seed * 1_000_003 + self.current_epoch) * 100_003 + batch_idx) * 1_009 + self.global_rank
        torch.manual_seed(key % (2**63 - 1))

    def _drop_modalities(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Hide each modality of each case with probability ``modality_dropout``; a case that would lose
        every modality keeps one of its own, drawn at random."""
        p = self.cfg.modality_dropout
        letters = [m for m in self.model.modalities if keys.MODALITY_KEYS[m] in batch]
        if p <= 0 or len(letters) < 2:
            return batch
        batch = dict(batch)
        first = batch[keys.MODALITY_KEYS[letters[0]]]
        B, device = first.shape[0], first.device
        pkeys = [keys.present_key(keys.MODALITY_KEYS[m]) for m in letters]
        had = torch.stack(
            [batch.get(k, torch.ones(B, dtype=torch.bool, device=device)).bool() for k in pkeys]
        )
        kept = had & (torch.rand(had.shape, device=device) >= p)  # M, B
        lost_all = ~kept.any(0)
        pick = torch.rand(had.shape, device=device).masked_fill(~had, -1).argmax(0)  # one present modality
        rescue = torch.nn.functional.one_hot(pick, len(letters)).T.bool() & lost_all
        kept = kept | rescue
        for k, row in zip(pkeys, kept):
            batch[k] = row
        return batch

    # --- steps -----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        batch = self._drop_modalities(batch)
        out = self.model(batch)
        loss, parts = task_losses(
            out[keys.LOGITS],
            batch[keys.TARGETS],
            self.tasks,
            self.class_weights,
            self.cfg.label_smoothing,
        )
        B = len(batch[keys.CASE_ID])
        for name, (logits, rows) in out.get(keys.AUX_LOGITS, {}).items():
            # deep supervision (clinical.deep_supervision) and branch supervision
            # (fusion.branch_supervision): the same task losses on a training-only head
            targets = {k: v[rows] for k, v in batch[keys.TARGETS].items()}
            aux, _ = task_losses(logits, targets, self.tasks, self.class_weights, self.cfg.label_smoothing)
            self.log(f"train/aux_{name}_loss", aux.detach(), on_step=False, on_epoch=True, batch_size=B)
            loss = loss + self.model.aux_weights[name] * aux
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=B)
        for name, v in parts.items():
            self.log(f"train/{name}_loss", v, on_step=False, on_epoch=True, batch_size=B)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # once per optimiser step (several batches make one step with accumulate_grad_batches)
        if self.ema is not None and self.trainer.global_step != self._ema_step:
            self._ema_step = self.trainer.global_step
            self.ema.update(self.model)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.eval_model(batch)
        loss, _ = task_losses(out[keys.LOGITS], batch[keys.TARGETS], self.tasks)
        B = len(batch[keys.CASE_ID])
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, batch_size=B, sync_dist=True)
        self._val.append(
            {
                "case_id": list(batch[keys.CASE_ID]),
                "logits": {k: v.detach().float().cpu() for k, v in out[keys.LOGITS].items()},
                "targets": {k: v.detach().cpu() for k, v in batch[keys.TARGETS].items()},
            }
        )

    def on_validation_epoch_end(self) -> None:
        parts = self._val
        self._val = []
        if self.trainer.world_size > 1:  # every rank computes the same metrics
            parts = [p for rank_parts in gather_objects(parts) for p in rank_parts]
        if not parts or self.trainer.sanity_checking:
            return
        preds = Predictions.from_logits(
            [c for p in parts for c in p["case_id"]],
            self.tasks,
            {t.name: torch.cat([p["logits"][t.name] for p in parts]) for t in self.tasks},
            {
                t.name: torch.cat([p["targets"][t.name] for p in parts])
                for t in self.tasks
                if t.name in parts[0]["targets"]
            },
        ).aggregate_by_case()
        metrics = evaluate_predictions(preds)["tasks"]
        for t in self.tasks:
            m = metrics[t.name]
            names = (
                ("accuracy", "balanced_accuracy", "auc_macro", "f1_macro", "threshold_f1_macro")
                if t.kind != MULTI
                else ("auc_mean",)
            )
            for name in names:
                value = m.get(name)
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    self.log(
                        f"val/{t.name}/{name}",
                        float(value),
                        prog_bar=(t.name == self.tasks[0].name and name == "balanced_accuracy"),
                    )

    # --- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        decay, no_decay = [], []
        exempt = self.model.no_weight_decay()  # declared by the branches: tokens, positions, norms, ...
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (no_decay if name in exempt else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": self.cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if self.cfg.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=self.cfg.lr, momentum=self.cfg.momentum)
        else:
            opt = torch.optim.AdamW(groups, lr=self.cfg.lr)
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = int(round(self.cfg.warmup_epochs * total / epochs))
        factor = WarmupCosine(total, warmup, self.cfg.min_lr_ratio, cosine=self.cfg.scheduler == "cosine")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- distributed check -----------------------------------------------------------------------
    def on_fit_end(self) -> None:
        """Record a checksum of the weights on every process (they must agree under DDP)."""
        self.weight_checksums = weight_checksums(self.model.parameters())
