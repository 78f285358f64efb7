"""The one interface every branch follows."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


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
