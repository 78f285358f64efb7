"""The model's image input convention, in one place: ImageNet normalisation of a uint8 image batch.

The data pipeline hands the model uint8 images, ``(B, 3, S, S)`` (a quarter of the bytes of float32
through the loader workers' shared memory and the host-to-device copy); the model converts them on the
device it runs on (:func:`normalize_images`, called by ``RemixFormer``). A float tensor is taken as
already normalised (serving, ONNX export, callers that normalise themselves). The conversion is
torchvision's ``ToDtype(float32, scale=True)`` then ``Normalize(MEAN, STD)``, the same kernels the
float transform runs, so both paths give the same values.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

# timm.data.IMAGENET_DEFAULT_MEAN / _STD (Swin-T and DINO ViT-S were trained with them), written out so
# that the model does not import timm (tests/data/test_transforms.py checks they agree)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` -> float32, scaled to [0, 1] and ImageNet-normalised; a floating-point
    tensor is returned as it is (already normalised); any other dtype is an error."""
    if x.is_floating_point():
        return x
    if x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (0-255) or normalised floats, got dtype {x.dtype}")
    return F.normalize(F.to_dtype(x, torch.float32, scale=True), list(MEAN), list(STD))
