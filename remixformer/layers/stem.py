"""A convolutional stem in place of the linear patch embedding ("Early convolutions help transformers
see better", Xiao et al., NeurIPS 2021).

The paper's encoders embed patches linearly, which is what the ImageNet and DINO weights fit. Trained
from scratch on a few hundred images (the CPU-sized preset, no pretrained weights), a ViT with a linear
embedding learns fine textures very slowly; a few 3x3 convolutions give it the locality it lacks.
Only presets that train from scratch use it; the paper preset keeps the linear embedding.

As in Xiao et al., the stem is stride-2 3x3 convolutions (BatchNorm, ReLU) and a final 1x1 projection.
It ends in BatchNorm instead of the per-token LayerNorm of a Swin patch embedding: a LayerNorm per token
divides out the token's overall magnitude, i.e. the local texture energy the stem has just measured.
``norm_layer`` is accepted for the interface and not used. On the synthetic set (docs/synthetic.md) the
small preset's dermoscopy branch learns the 1-px attributes with this stem and stays at chance with the
linear embedding in the same number of epochs.
"""

from __future__ import annotations

import math

from timm.layers import PatchEmbed
from torch import nn


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class ConvStemPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` (same interface, output formats and checks) whose projection is log2(patch)
    stride-2 3x3 convolutions (each with BatchNorm and ReLU), then a 1x1 convolution and BatchNorm."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        patch = self.patch_size[0]
        steps = int(round(math.log2(patch)))
        if 2**steps != patch or self.patch_size[0] != self.patch_size[1]:
            raise ValueError(
                f"a convolutional stem needs a square power-of-two patch size, got {self.patch_size}"
            )
        embed_dim = self.proj.out_channels
        widths = [max(16, embed_dim // 2 ** (steps - i)) for i in range(steps)]
        layers: list[nn.Module] = []
        c_in = self.proj.in_channels
        for c_out in widths:
            layers += _conv_bn_relu(c_in, c_out, 2)
            c_in = c_out
        layers += [nn.Conv2d(c_in, embed_dim, 1, bias=False), nn.BatchNorm2d(embed_dim)]
        self.proj = nn.Sequential(*layers)
        self.norm = nn.Identity()
