"""Metadata branch (section III-D): one-hot metadata -> Linear -> BatchNorm -> ReLU = g^M (then dropout,
``metadata.dropout``, not in the paper and off by default)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from remixformer.models.branch import BranchOutput, no_weight_decay_names
from remixformer.models.config import MetadataConfig


class MetadataBranch(nn.Module):
    letter = "M"

    def __init__(self, metadata_dim: int, cfg: MetadataConfig) -> None:
        super().__init__()
        self.metadata_dim = metadata_dim
        self.linear = nn.Linear(metadata_dim, cfg.hidden_dim)
        self.norm = nn.BatchNorm1d(cfg.hidden_dim)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.out_dim = self.token_dim = cfg.hidden_dim

    def no_weight_decay(self) -> set[str]:
        """Parameters without weight decay (:func:`~remixformer.models.branch.no_weight_decay_names`)."""
        return no_weight_decay_names(self)

    def forward(self, x: torch.Tensor, explain: bool = False) -> BranchOutput:
        h = self.linear(x)
        if self.training and h.shape[0] == 1:
            # one case with metadata in a training batch: batch statistics are undefined, use running ones
            bn = self.norm
            h = F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            h = self.norm(h)
        g = self.drop(F.relu(h))
        return BranchOutput(g, g[:, None])
