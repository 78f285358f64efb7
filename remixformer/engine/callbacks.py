"""Callbacks every run uses (training and pretraining): the per-epoch metrics table and the progress
(a bar on a terminal, log lines in a background run); and the name of the resumable training state."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
from lightning.pytorch.callbacks import TQDMProgressBar

from remixformer.serialization import write_text_atomic

log = logging.getLogger(__name__)

STATE_FILE = "last.state.safetensors"  # the full training state, for --resume (tensors + JSON, never pickled)


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


class StepProgress(L.Callback):
    """Progress in the log for runs without the bar (background jobs, ``nohup``, CI): inside an epoch, at
    most one line every ``interval_s`` seconds with the step, the loss and the time left in the epoch and
    in the run, estimated from the epoch's steps so far (validation not counted). A DINO epoch on a CPU
    can take an hour; the per-epoch line of :class:`EpochMetrics` alone would leave the log silent."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._start = self._last = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = self.clock()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = self.clock()
        if not trainer.is_global_zero or now - self._last < self.interval_s:
            return
        self._last = now
        steps = trainer.num_training_batches
        done = batch_idx + 1
        per_step = (now - self._start) / done
        left = per_step * (steps - done) if steps != float("inf") else float("nan")
        left_run = left + per_step * steps * (trainer.max_epochs - trainer.current_epoch - 1)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        log.info(
            "epoch %d/%d, step %d/%s: loss=%s (%.2fs per step, about %s left in the epoch, %s in the run)",
            trainer.current_epoch + 1,
            trainer.max_epochs,
            done,
            steps,
            f"{float(loss):.4g}" if loss is not None else "?",
            per_step,
            _duration(left),
            _duration(left_run),
        )


def _duration(seconds: float) -> str:
    if seconds != seconds:  # an iterable without a length: no estimate
        return "?"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def progress_callback(progress_bar: bool) -> L.Callback:
    """The bar on a terminal (``progress_bar: true``), log lines with an ETA otherwise."""
    return ProgressBar() if progress_bar else StepProgress()
