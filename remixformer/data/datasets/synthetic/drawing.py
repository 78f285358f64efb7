"""Image helpers of the renderers (float32 images in 0..255 units, shape (H, W, 3))."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

# ----------------------------------------------------------------------------------------------------
# Image helpers (float32 images in 0..255 units, shape (H, W, 3))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-blurred noise; large blurs are made on a coarse grid and upsampled (fast)."""
    h, w = shape
    factor = max(1.0, sigma / 2.0)
    ch, cw = max(2, int(np.ceil(h / factor))), max(2, int(np.ceil(w / factor)))
    x = gaussian_filter(rng.standard_normal((ch, cw)).astype(np.float32), sigma / factor, mode="wrap")
    if (ch, cw) != (h, w):
        x = np.asarray(Image.fromarray(x).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    x = x - x.mean()
    return x / (x.std() + 1e-6)


def _soft_disk(
    xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float, edge: float = 1.0
) -> np.ndarray:
    """Anti-aliased disk in [0, 1] (computed only inside its bounding box)."""
    out = np.zeros(xx.shape, dtype=np.float32)
    k = r + edge + 1
    y1, y2 = max(0, int(cy - k)), min(xx.shape[0], int(cy + k) + 2)
    x1, x2 = max(0, int(cx - k)), min(xx.shape[1], int(cx + k) + 2)
    if y1 >= y2 or x1 >= x2:
        return out
    d = np.sqrt((xx[y1:y2, x1:x2] - cx) ** 2 + (yy[y1:y2, x1:x2] - cy) ** 2)
    out[y1:y2, x1:x2] = np.clip((r - d) / edge + 0.5, 0.0, 1.0)
    return out


def _highpass(layer: np.ndarray, cutoff: float) -> np.ndarray:
    """Remove spatial frequencies below ``cutoff`` (cycles/pixel) from an (H, W, C) layer."""
    h, w = layer.shape[:2]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    keep = (1.0 - np.exp(-((np.sqrt(fx**2 + fy**2) / cutoff) ** 8))).astype(np.float32)
    spec = scipy.fft.rfft2(layer, axes=(0, 1), workers=1)
    return scipy.fft.irfft2(spec * keep[:, :, None], s=(h, w), axes=(0, 1), workers=1).astype(np.float32)


def _curve(
    rng: np.random.Generator, start: np.ndarray, length: float, step: float = 2.0, wiggle: float = 0.25
) -> list[tuple[float, float]]:
    """A random smooth polyline (hair, vessel) starting at ``start``."""
    angle = rng.uniform(0, 2 * np.pi)
    pts = [tuple(start)]
    p = np.asarray(start, dtype=np.float64)
    for _ in range(max(2, int(length / step))):
        angle += rng.normal(0, wiggle)
        p = p + step * np.array([np.cos(angle), np.sin(angle)])
        pts.append((float(p[0]), float(p[1])))
    return pts


def _draw_lines(size: int, polylines: Sequence[list[tuple[float, float]]], width: int = 1) -> np.ndarray:
    """Rasterise polylines into a float (H, W) map in [0, 1]."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for pts in polylines:
        draw.line(pts, fill=255, width=width)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _add_hair(img: np.ndarray, rng: np.random.Generator, n: int, width_choices: Sequence[int]) -> None:
    """Draw ``n`` dark hairs (one colour per image) over ``img`` in place."""
    if n == 0:
        return
    size = img.shape[0]
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(n):
        pts = _curve(rng, rng.uniform(0, size, 2), rng.uniform(0.3, 0.9) * size, wiggle=0.06)
        draw.line(pts, fill=255, width=int(rng.choice(width_choices)))
    a = (0.85 / 255.0) * np.asarray(canvas, dtype=np.float32)[:, :, None]
    img *= 1 - a
    img += a * rng.uniform(20, 60)
