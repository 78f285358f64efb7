"""Per-step schedules as arrays (DINO / dinov2 style): learning rate, weight decay, teacher momentum and
teacher temperature, one value per optimiser step of the whole run.

They are a pure function of the config, the number of steps per epoch and the effective batch, so a
resumed run recomputes exactly the arrays the interrupted one used. Unlike DINO's ``cosine_scheduler``
(whose last value stops one step short of ``final``) the cosine here ends exactly at ``final``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def cosine_schedule(
    base: float, final: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """``warmup_steps`` linear from ``warmup_start`` to ``base``, then a half cosine from ``base`` to
    ``final`` over the remaining steps (first value ``base``, last value ``final``)."""
    if total_steps < 1:
        raise ValueError(f"a schedule needs at least one step, got {total_steps}")
    warmup_steps = min(max(0, int(warmup_steps)), total_steps)
    warmup = np.linspace(warmup_start, base, warmup_steps) if warmup_steps else np.zeros(0)
    n = total_steps - warmup_steps
    if n == 1:
        cosine = np.array([final], dtype=np.float64)
    else:
        t = np.arange(n) / max(1, n - 1)
        cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * t))
    return np.concatenate([warmup, cosine]).astype(np.float64)


def linear_warmup_schedule(start: float, end: float, warmup_steps: int, total_steps: int) -> np.ndarray:
    """Linear from ``start`` (first step) to ``end`` (step ``warmup_steps - 1``), then constant ``end``."""
    if total_steps < 1:
        raise ValueError(f"a schedule needs at least one step, got {total_steps}")
    warmup_steps = min(max(0, int(warmup_steps)), total_steps)
    warmup = np.linspace(start, end, warmup_steps) if warmup_steps else np.zeros(0)
    return np.concatenate([warmup, np.full(total_steps - warmup_steps, end)]).astype(np.float64)


@dataclass
class Schedules:
    """The run's per-step arrays; ``at(step)`` clamps to the last step."""

    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray
    steps_per_epoch: int
    base_lr: float  # the configured lr scaled by the effective batch / 256

    @property
    def total_steps(self) -> int:
        return len(self.lr)

    @classmethod
    def build(cls, cfg, steps_per_epoch: int, effective_batch: int) -> Schedules:
        """``cfg``: a PretrainConfig; ``effective_batch``: windows per optimiser step over all devices."""
        o, d = cfg.optim, cfg.dino
        steps_per_epoch = max(1, int(steps_per_epoch))
        total = o.epochs * steps_per_epoch
        base_lr = o.lr * effective_batch / 256.0  # DINO's linear scaling rule
        return cls(
            lr=cosine_schedule(
                base_lr, o.min_lr, total, warmup_steps=math.ceil(o.warmup_epochs * steps_per_epoch)
            ),
            weight_decay=cosine_schedule(o.weight_decay, o.weight_decay_end, total),
            momentum=cosine_schedule(d.momentum_teacher, d.momentum_teacher_end, total),
            teacher_temp=linear_warmup_schedule(
                d.warmup_teacher_temp, d.teacher_temp, d.warmup_teacher_temp_epochs * steps_per_epoch, total
            ),
            steps_per_epoch=steps_per_epoch,
            base_lr=base_lr,
        )

    def at(self, step: int) -> dict[str, float]:
        i = min(max(0, int(step)), self.total_steps - 1)
        return {
            "lr": float(self.lr[i]),
            "weight_decay": float(self.weight_decay[i]),
            "momentum": float(self.momentum[i]),
            "teacher_temp": float(self.teacher_temp[i]),
        }
