"""A convolutional stem in place of the linear patch embedding ("Early convolutions help transformers
see better", Xiao et al., NeurIPS 2021).

The paper's encoders embed patches linearly, which is what the ImageNet and DINO weights fit. Trained
from scratch on a few hundred images (the CPU-sized preset, no pretrained weights), a ViT with a linear
embedding learns fine textures very slowly; a few strided 3x3 convolutions give it the locality it lacks.
Only presets that train from scratch use it; the paper preset keeps the linear embedding.
"""

from __future__ import annotations

import math

from timm.layers import PatchEmbed
from torch import nn


class ConvStemPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` (same interface, output formats and checks) whose projection is log2(patch)
    stages of a stride-2 and a stride-1 3x3 convolution (BatchNorm, ReLU), then a 1x1 convolution."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        patch = self.patch_size[0]
        steps = int(round(math.log2(patch)))
        if 2**steps != patch or self.patch_size[0] != self.patch_size[1]:
            raise ValueError(
                f"a convolutional stem needs a square power-of-two patch size, got {self.patch_size}"
            )
        embed_dim = self.proj.out_channels
        c_in = self.proj.in_channels
        layers: list[nn.Module] = []
        for i in range(steps):
            c_out = max(16, embed_dim // 2 ** (steps - 1 - i) // 2)
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, embed_dim, 1))
        self.proj = nn.Sequential(*layers)
