"""Progress of a run without the bar: log lines inside long epochs, with the time left."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch

from remixformer.engine.callbacks import ProgressBar, StepProgress, progress_callback


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_step_progress_logs_at_most_once_per_interval_with_the_time_left(caplog):
    clock = FakeClock()
    cb = StepProgress(interval_s=60.0, clock=clock)
    trainer = SimpleNamespace(is_global_zero=True, num_training_batches=100, max_epochs=3, current_epoch=1)
    caplog.set_level(logging.INFO, logger="remixformer.engine.callbacks")
    cb.on_train_epoch_start(trainer, None)
    for i in range(100):
        clock.now += 2.0  # 2 s per step: a line after steps 30, 60 and 90
        cb.on_train_batch_end(trainer, None, {"loss": torch.tensor(1.5 - i / 100)}, None, i)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    # step 30 of 100 at 2 s per step: 70 steps left in the epoch (140 s), one more epoch (200 s) after it
    assert lines[0] == (
        "epoch 2/3, step 30/100: loss=1.21 (2.00s per step, about 2 min left in the epoch, 6 min in the run)"
    )
    assert lines[2].startswith("epoch 2/3, step 90/100: loss=0.61 (2.00s per step, about 20 s left")


def test_step_progress_is_silent_on_other_ranks_and_without_a_known_length(caplog):
    clock = FakeClock()
    cb = StepProgress(interval_s=0.0, clock=clock)
    caplog.set_level(logging.INFO, logger="remixformer.engine.callbacks")
    other = SimpleNamespace(is_global_zero=False, num_training_batches=10, max_epochs=1, current_epoch=0)
    cb.on_train_epoch_start(other, None)
    clock.now += 5
    cb.on_train_batch_end(other, None, torch.tensor(0.5), None, 0)
    assert not caplog.records
    stream = SimpleNamespace(
        is_global_zero=True, num_training_batches=float("inf"), max_epochs=2, current_epoch=0
    )
    cb.on_train_batch_end(stream, None, torch.tensor(0.5), None, 0)
    assert caplog.records[0].getMessage().endswith("about ? left in the epoch, ? in the run)")


def test_progress_callback_chooses_the_bar_or_the_log():
    assert isinstance(progress_callback(True), ProgressBar)
    assert isinstance(progress_callback(False), StepProgress)
