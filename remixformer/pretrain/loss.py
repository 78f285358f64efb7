"""DINO loss: cross-entropy between the centred, sharpened teacher distribution of each global view and
the student distribution of every other view, with the centre an EMA of the teacher's batch mean.

    P_t = softmax((g_t - c) / tau_t),   P_s = softmax(g_s / tau_s)
    L   = mean over pairs (teacher view i, student view v != i) of mean over the batch of -P_t . log P_s
    c  <- m c + (1 - m) mean over the batch (all processes) of g_t

The teacher temperature tau_t comes from the per-step schedule (``schedules.py``); the centre update is
an ``all_reduce`` under DDP and a local mean otherwise (every distributed call is guarded).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from remixformer.engine.distributed import all_reduce_sum, world_size


class DINOLoss(nn.Module):
    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_out: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """(n, K) teacher logits -> centred, sharpened probabilities (n, K), no gradient."""
        return F.softmax((teacher_out.detach().float() - self.center) / teacher_temp, dim=-1)

    def forward(
        self,
        student_out: torch.Tensor,
        teacher_out: torch.Tensor,
        teacher_temp: float,
        n_global: int = 2,
        update_center: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``student_out``: (V * B, K), views in blocks of B (the ``n_global`` global views first);
        ``teacher_out``: (n_global * B, K), the global views in the same order. Returns the loss and the
        teacher's probabilities (n_global * B, K) (for monitoring)."""
        batch = teacher_out.shape[0] // n_global
        if batch * n_global != teacher_out.shape[0] or student_out.shape[0] % max(1, batch):
            raise ValueError(
                f"DINO loss: teacher output {tuple(teacher_out.shape)} and student output "
                f"{tuple(student_out.shape)} are not whole numbers of views of the same batch"
            )
        log_ps = F.log_softmax(student_out.float() / self.student_temp, dim=-1).chunk(
            student_out.shape[0] // batch
        )
        probs = self.teacher_probs(teacher_out, teacher_temp)
        pt = probs.chunk(n_global)
        total = student_out.new_zeros((), dtype=torch.float32)
        terms = 0
        for i, q in enumerate(pt):
            for v, log_p in enumerate(log_ps):
                if v == i:  # a view is never compared with itself
                    continue
                total = total + torch.sum(-q * log_p, dim=-1).mean()
                terms += 1
        if terms == 0:
            raise ValueError("DINO loss needs at least two views")
        if update_center and self.training:
            self.update_center(teacher_out)
        return total / terms, probs

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """EMA of the teacher's batch mean over all processes."""
        batch_sum = teacher_out.detach().float().sum(dim=0, keepdim=True)
        all_reduce_sum(batch_sum)
        batch_center = batch_sum / (teacher_out.shape[0] * world_size())
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)


@torch.no_grad()
def entropy_stats(probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Collapse monitors from the teacher's probabilities (n, K), each also divided by log K:

    - ``teacher_entropy``: the mean entropy of one window's distribution. Near 0: every window is sent
      to a single prototype (one-hot); near log K: the teacher says nothing (uniform collapse).
    - ``teacher_mean_entropy``: the entropy of the batch-mean distribution, i.e. how many prototypes the
      batch uses. Near 0 together with the above: all windows fall on the same prototype.
    """
    p = probs.float().clamp_min(1e-12)
    h = -(probs.float() * p.log()).sum(dim=-1).mean()
    mean = probs.float().mean(dim=0)
    h_mean = -(mean * mean.clamp_min(1e-12).log()).sum()
    log_k = math.log(probs.shape[-1]) if probs.shape[-1] > 1 else 1.0
    return {
        "teacher_entropy": h,
        "teacher_entropy_ratio": h / log_k,
        "teacher_mean_entropy_ratio": h_mean / log_k,
    }
