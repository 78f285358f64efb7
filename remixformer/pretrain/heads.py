"""DINO projection head: an MLP to a bottleneck, L2 normalisation, then a weight-normalised linear layer
to K prototypes (Caron et al. 2021, ``DINOHead``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn


class WeightNormLinear(nn.Module):
    """``y = x W^T`` with each row of W = g * v / ||v|| (weight normalisation, no bias).

    With ``fix_scale`` the norms g stay 1 (DINO's ``norm_last_layer``): the logits are cosines between
    the normalised bottleneck and the prototypes. Written out rather than ``nn.utils.weight_norm`` so that
    the parameters are plain tensors with plain names (``direction``, ``scale``).
    """

    def __init__(self, in_dim: int, out_dim: int, fix_scale: bool = True) -> None:
        super().__init__()
        self.direction = nn.Parameter(nn.Linear(in_dim, out_dim, bias=False).weight.detach().clone())
        self.scale = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not fix_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.direction
        w = v * (self.scale / v.norm(dim=1, keepdim=True).clamp_min(1e-12))  # K, d
        return F.linear(x, w)


class DINOHead(nn.Module):
    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        nlayers = max(1, nlayers)
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
            for _ in range(nlayers - 2):
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.mlp.apply(_init_linear)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, fix_scale=norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, in_dim) class tokens -> (n, out_dim) logits (before the temperature)."""
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2, eps=1e-6)  # eps safe in half precision too
        return self.last_layer(x)


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
