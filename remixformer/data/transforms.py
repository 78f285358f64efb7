"""Image transforms (torchvision transforms v2): the paper's training augmentation and eval resizing.

Training (paper, section IV-B): horizontal and vertical flips (p = 0.5 each); random crop of 65-100 %
of the image area (resized to the model size); rotation by a multiple of 10 degrees in [0, 180];
affine translation up to 15 % of width/height and shear in [-10, 10] degrees (both axes); brightness,
contrast and saturation factors in [0.5, 1.5]. The crop comes first so that the other steps work on
the small image (flips and crop commute in distribution). Evaluation only resizes.
Both end with ImageNet normalisation (``timm.data.IMAGENET_DEFAULT_MEAN/STD``), or, for the data
pipeline (``normalize=False``), with the uint8 image that the model normalises on its device
(:mod:`remixformer.layers.imaging`).
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from remixformer.layers.imaging import MEAN, STD

CROP_SCALE = (0.65, 1.0)
ROTATION_STEP = 10
ROTATION_MAX = 180
TRANSLATE = (0.15, 0.15)
SHEAR = (-10.0, 10.0, -10.0, 10.0)
JITTER = (0.5, 1.5)


class RandomRotationSteps(v2.Transform):
    """Rotate by ``step * k`` degrees, ``k`` uniform in ``0 .. max_degrees // step`` (black corners)."""

    def __init__(self, step: int = ROTATION_STEP, max_degrees: int = ROTATION_MAX) -> None:
        super().__init__()
        if step <= 0 or max_degrees < 0:
            raise ValueError(f"step must be positive and max_degrees >= 0, got {step}, {max_degrees}")
        self.step = step
        self.n_steps = max_degrees // step

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        k = int(torch.randint(0, self.n_steps + 1, ()).item())
        return {"angle": float(k * self.step)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["angle"] == 0.0:
            return inpt
        return self._call_kernel(
            F.rotate, inpt, angle=params["angle"], interpolation=v2.InterpolationMode.BILINEAR
        )


def _finish() -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]


AUGMENT_POLICIES = ("paper", "light", "flips", "none")


def build_image_transform(
    size: int, train: bool, policy: str = "paper", normalize: bool = True
) -> v2.Compose:
    """PIL image or uint8 ``(3, H, W)`` tensor -> float ``(3, size, size)``, ImageNet-normalised, or with
    ``normalize=False`` the uint8 ``(3, size, size)`` image before that last step (what the data sets
    yield; the model normalises it, :func:`remixformer.layers.imaging.normalize_images`).

    ``policy`` (training only): ``paper`` (section IV-B, the default); ``light``: flips, rotations by
    multiples of 90 degrees and the colour jitter, no resampling, so 1-pixel detail survives; ``flips``:
    the same without the colour jitter, so a lesion's colour survives too (the synthetic set, whose
    clinical cue is partly the lesion's colour: docs/synthetic.md); ``none``: as evaluation.
    """
    if size <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    if policy not in AUGMENT_POLICIES:
        raise ValueError(f"augmentation policy must be one of {list(AUGMENT_POLICIES)}, got {policy!r}")
    finish = _finish() if normalize else []
    if not train or policy == "none":
        return v2.Compose([v2.ToImage(), v2.Resize((size, size), antialias=True), *finish])
    if policy in ("light", "flips"):
        jitter = (
            []
            if policy == "flips"
            else [v2.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER)]
        )
        return v2.Compose(
            [
                v2.ToImage(),
                v2.Resize((size, size), antialias=True),
                v2.RandomHorizontalFlip(0.5),
                v2.RandomVerticalFlip(0.5),
                RandomRotationSteps(90, 270),
                *jitter,
                *finish,
            ]
        )
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop((size, size), scale=CROP_SCALE, antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomVerticalFlip(0.5),
        RandomRotationSteps(ROTATION_STEP, ROTATION_MAX),
        v2.RandomAffine(degrees=0.0, translate=TRANSLATE, shear=SHEAR),
        v2.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER),
        *finish,
    ])  # fmt: skip


def resize_uint8(image: Image.Image | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(3, size, size)`` tensor, resized exactly as the eval transform does (the image cache)."""
    t = F.pil_to_tensor(image) if isinstance(image, Image.Image) else image
    return F.resize(t, [size, size], antialias=True).as_subclass(torch.Tensor).contiguous()


def to_model_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """One RGB image -> the model's input ``(3, size, size)`` (eval transform); for serving."""
    return build_image_transform(size, train=False)(image).as_subclass(torch.Tensor)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation: ``(..., 3, H, W)`` -> values in [0, 1] (clamped)."""
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0.0, 1.0)
