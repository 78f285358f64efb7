"""Callbacks of a pretraining run: the per-epoch export and training state, and the collapse guard."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L

from remixformer.engine.callbacks import STATE_FILE
from remixformer.pretrain.export import EXPORT_NAME, export_backbone

log = logging.getLogger(__name__)

ENTROPY_KEY = "pretrain/teacher_entropy_ratio"
MEAN_ENTROPY_KEY = "pretrain/teacher_mean_entropy_ratio"


def epoch_metric(trainer: L.Trainer, key: str) -> float | None:
    m = trainer.callback_metrics
    value = m.get(f"{key}_epoch", m.get(key))
    return None if value is None else float(value)


class PretrainCheckpoint(L.Callback):
    """After every epoch: the teacher backbone as T_phi1 weights (rank 0) and the resumable training
    state (every rank takes part, rank 0 writes). Both writes are atomic."""

    def __init__(self, run_dir: Path, extra: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.extra = extra or {}

    @property
    def export_path(self) -> Path:
        return self.run_dir / EXPORT_NAME

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            export_backbone(
                pl_module.meta.teacher.backbone,
                self.export_path,
                pl_module.cfg,
                epoch=trainer.current_epoch,
                global_step=trainer.global_step,
                **self.extra,
            )
        trainer.save_checkpoint(self.run_dir / "checkpoints" / STATE_FILE)


class CollapseGuard(L.Callback):
    """Warns, in words, when the teacher's mean output entropy / log K stays below ``low`` (every window
    on one prototype) or above ``high`` (uniform output) for ``patience`` consecutive epochs."""

    def __init__(self, low: float, high: float, patience: int) -> None:
        self.low, self.high, self.patience = low, high, max(1, patience)
        self.low_epochs = 0
        self.high_epochs = 0
        self.warnings: list[str] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ratio = epoch_metric(trainer, ENTROPY_KEY)
        if ratio is None:
            return
        spread = epoch_metric(trainer, MEAN_ENTROPY_KEY)
        self.low_epochs = self.low_epochs + 1 if ratio < self.low else 0
        self.high_epochs = self.high_epochs + 1 if ratio > self.high else 0
        epoch = trainer.current_epoch + 1
        msg = None
        if self.low_epochs >= self.patience:
            msg = (
                f"possible collapse at epoch {epoch}: the teacher's output entropy has stayed near zero "
                f"({ratio:.3f} of its maximum log K) for {self.low_epochs} epochs, so every window gets a "
                "one-hot distribution"
                + (f"; the batch uses {spread:.3f} of log K of the prototypes" if spread is not None else "")
                + (
                    " (all windows on the same prototype: collapsed)"
                    if spread is not None and spread < self.low
                    else ""
                )
                + ". Try a higher dino.teacher_temp, a lower dino.center_momentum (faster centring), a lower "
                "optim.lr or a larger batch"
            )
        elif self.high_epochs >= self.patience:
            msg = (
                f"possible collapse at epoch {epoch}: the teacher's output entropy has stayed near its "
                f"maximum ({ratio:.3f} of log K) for {self.high_epochs} epochs, so its output is nearly "
                "uniform and teaches nothing (expected only in the first epochs from scratch). Try a lower "
                "dino.teacher_temp (sharper teacher), a lower optim.lr or a longer optim.warmup_epochs, and "
                "check that the windows are not nearly all alike (windows.max_background_fraction)"
            )
        if msg:
            self.warnings.append(msg)
            if trainer.is_global_zero:
                log.warning("%s", msg)

    def state_dict(self) -> dict[str, Any]:
        return {
            "low_epochs": self.low_epochs,
            "high_epochs": self.high_epochs,
            "warnings": list(self.warnings),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.low_epochs = int(state_dict.get("low_epochs", 0))
        self.high_epochs = int(state_dict.get("high_epochs", 0))
        self.warnings = list(state_dict.get("warnings", []))
