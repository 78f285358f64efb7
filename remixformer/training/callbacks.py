"""Callbacks of a run: checkpoints (model files + resumable state), the per-epoch metrics table, the
progress bar."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

from remixformer.models.checkpoint import save_model
from remixformer.serialization import write_text_atomic

log = logging.getLogger(__name__)

STATE_FILE = "last.state.safetensors"  # the full training state, for --resume
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


class EpochMetrics(L.Callback):
    """``metrics.jsonl`` and ``metrics.csv`` in the run directory: one row per epoch (train and
    validation metrics, learning rate, time), both rewritten atomically. Rows of epochs that a resumed
    run repeats are replaced."""

    def __init__(self, run_dir: Path) -> None:
        self.jsonl = Path(run_dir) / "metrics.jsonl"
        self.csv = Path(run_dir) / "metrics.csv"
        self._t0 = time.time()

    def _rows(self) -> list[dict[str, Any]]:
        if not self.jsonl.exists():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]

    def _write(self, rows: list[dict[str, Any]]) -> None:
        import pandas as pd

        write_text_atomic(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows))
        write_text_atomic(self.csv, pd.DataFrame(rows).to_csv(index=False) if rows else "")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.jsonl.exists():
            # resumed (or started again): keep the rows of the epochs the training state holds
            self._write([r for r in self._rows() if r["epoch"] < trainer.current_epoch])

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.time()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for k, v in sorted(trainer.callback_metrics.items()):
            if k.endswith("_step"):
                continue
            row[k.removesuffix("_epoch")] = float(v)
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        row["epoch_time_s"] = round(time.time() - self._t0, 2)
        self._write([*self._rows(), row])  # both files whole, atomically: a kill leaves no half line
        left = (trainer.max_epochs - trainer.current_epoch - 1) * row["epoch_time_s"]
        log.info(
            "epoch %d/%d: %s (%.1fs, about %.0fs left)",
            trainer.current_epoch + 1,
            trainer.max_epochs,
            ", ".join(f"{k}={v:.4g}" for k, v in row.items() if "/" in k),
            row["epoch_time_s"],
            left,
        )


class ProgressBar(TQDMProgressBar):
    """Lightning's bar (epoch, step, time left) with the loss and without the logger version."""

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
