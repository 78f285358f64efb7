"""Multi-crop augmentation of DINO (``DataAugmentationDINO``) with torchvision transforms v2.

From one window: two global views (first: blur always; second: blur rarely, solarisation) and
``n_local`` local views, each a random resized crop (bicubic), horizontal flip, colour jitter
(0.4, 0.4, 0.2, 0.1 as the paper gives), random grayscale, Gaussian blur, then ImageNet normalisation.

The draws are a pure function of the seed handed to :meth:`MultiCrop.__call__` (the data set derives it
from (seed, epoch, index)): the global torch generator is forked, seeded and restored, so the views do
not depend on the worker, the batch or anything drawn before.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageFilter
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision.transforms import InterpolationMode, v2

from remixformer.pretrain.config import CropsConfig


class GaussianBlur:
    """With probability ``p``, PIL's Gaussian blur of radius (standard deviation) uniform in ``sigma``,
    as DINO does it (PIL's C filter: far cheaper than a convolution through torch on small windows).
    Draws from the torch generator, like the v2 transforms around it."""

    def __init__(self, p: float, sigma: tuple[float, float]) -> None:
        self.p, self.sigma = p, (float(sigma[0]), float(sigma[1]))

    def __call__(self, img: Image.Image) -> Image.Image:
        if torch.rand(()) >= self.p:
            return img
        radius = self.sigma[0] + (self.sigma[1] - self.sigma[0]) * float(torch.rand(()))
        return img.filter(ImageFilter.GaussianBlur(radius=radius))


def _view(
    size: int, scale: tuple[float, float], c: CropsConfig, blur_p: float, solarize_p: float
) -> v2.Compose:
    steps: list = [
        v2.RandomResizedCrop(
            size, scale=tuple(scale), interpolation=InterpolationMode.BICUBIC, antialias=True
        ),
        v2.RandomHorizontalFlip(p=c.flip_p),
        v2.RandomApply([v2.ColorJitter(*c.jitter)], p=c.jitter_p),
        v2.RandomGrayscale(p=c.grayscale_p),
    ]
    if blur_p > 0:
        steps.append(GaussianBlur(blur_p, c.blur_sigma))
    if solarize_p > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=solarize_p))
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD),
    ]
    return v2.Compose(steps)


class MultiCrop:
    """``MultiCrop(crops)(window, seed) -> (globals (2, 3, G, G), locals (n_local, 3, l, l))``.

    ``crops`` must have its sizes resolved (``config.resolve_sizes``).
    """

    def __init__(self, crops: CropsConfig) -> None:
        if crops.global_size is None or crops.local_size is None:
            raise ValueError("MultiCrop needs resolved sizes (remixformer.pretrain.config.resolve_sizes)")
        self.cfg = crops
        b = crops.blur_p
        self.global_1 = _view(crops.global_size, crops.global_scale, crops, b[0], 0.0)
        self.global_2 = _view(crops.global_size, crops.global_scale, crops, b[1], crops.solarize_p)
        self.local = _view(crops.local_size, crops.local_scale, crops, b[2], 0.0)

    def __call__(self, window: Image.Image, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            globals_ = torch.stack([self.global_1(window), self.global_2(window)])
            s = self.cfg.local_size
            locals_ = (
                torch.stack([self.local(window) for _ in range(self.cfg.n_local)])
                if self.cfg.n_local
                else torch.zeros(0, 3, s, s)
            )
        return globals_, locals_
