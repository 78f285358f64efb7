"""Callbacks of a training run: checkpoints (model files + resumable state). The per-epoch metrics
table and the progress bar are shared with pretraining (:mod:`remixformer.engine.callbacks`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L

from remixformer.engine.callbacks import STATE_FILE
from remixformer.models.checkpoint import save_model

log = logging.getLogger(__name__)

BEST_MODEL = "best.safetensors"  # model files: weights + config + label names + metadata schema
LAST_MODEL = "last.safetensors"


class RunCheckpoint(L.Callback):
    """At the end of every training epoch (after its validation): the best model by the monitored
    validation metric, the last model, and the resumable training state. Every write is atomic; only
    the global rank 0 writes. The best is chosen on the validation split only, never the test split.
    It must be the last callback, so that the state holds the others' state after the epoch."""

    def __init__(self, run_dir: Path, monitor: str, mode: str, extra: dict[str, Any]) -> None:
        self.dir = Path(run_dir) / "checkpoints"
        self.monitor = monitor
        self.mode = mode
        self.extra = extra
        self.best_score: float | None = None
        self.best_epoch: int = -1

    def _improved(self, score: float | None) -> bool:
        if score is None:  # no validation split: the last model is the best known
            return True
        if math.isnan(score):
            return self.best_epoch < 0
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        value = trainer.callback_metrics.get(self.monitor)
        score = None if value is None else float(value)
        improved = self._improved(score)
        if improved:
            self.best_score, self.best_epoch = score, epoch
        if trainer.is_global_zero:
            extra = dict(
                self.extra, epoch=epoch, global_step=trainer.global_step, monitor=self.monitor, score=score
            )
            model = getattr(pl_module, "eval_model", pl_module.model)  # the weight average, if any
            if improved:
                save_model(model, self.dir / BEST_MODEL, extra)
            save_model(model, self.dir / LAST_MODEL, extra)
        trainer.save_checkpoint(self.dir / STATE_FILE)  # every rank (barrier); rank 0 writes

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_epoch = int(state_dict.get("best_epoch", -1))
