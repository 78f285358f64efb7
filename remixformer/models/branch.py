"""The one interface every branch follows."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class BranchOutput:
    """What a branch hands to the fusion: its global embedding, its tokens, and explanation maps.

    ``embedding``: (B, out_dim), the branch's summary (g^C/l^C, g^D, g^M).
    ``tokens``: (B, T, token_dim), what the other modalities' class tokens attend to in CMF.
    ``maps``: attention maps for explanations, filled only when the forward is asked to explain.
    ``aux``: intermediate features for auxiliary losses (the clinical branch's ``global_cls``).
    ``token_weights``: (B, T) or None (all ones): a factor on each token's value wherever a cross-attention
    reads the tokens (the clinical branch's LSM estimator on its local patch tokens; value 1).
    """

    embedding: torch.Tensor
    tokens: torch.Tensor
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    token_weights: torch.Tensor | None = None


def no_weight_decay_names(module: nn.Module) -> set[str]:
    """Full names (relative to ``module``) of its parameters that take no weight decay: every 1-D
    parameter (biases, norm weights, scales) and those its submodules declare in their own
    ``no_weight_decay()`` (names relative to the submodule): class tokens, position embeddings,
    relative-position bias tables, MSTA templates; timm's ViT and Swin declare theirs the same way.

    Every branch, the composed model and the pretraining encoder expose this as ``no_weight_decay()``;
    the optimizers of training and pretraining group parameters by it."""
    params = dict(module.named_parameters())
    names = {n for n, p in params.items() if p.ndim <= 1}
    for prefix, sub in module.named_modules():
        declare = getattr(sub, "no_weight_decay", None)
        if sub is module or not callable(declare):
            continue
        for n in declare():
            full = f"{prefix}.{n}" if prefix else n
            if full in params:
                names.add(full)
    return names
