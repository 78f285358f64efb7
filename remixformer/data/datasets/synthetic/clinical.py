"""The clinical photo: skin, lighting, hair, distractors and the lesion with its micro-pattern."""

from __future__ import annotations

import numpy as np

from remixformer.data.datasets.synthetic.design import LESION_RADIUS, PATTERNS
from remixformer.data.datasets.synthetic.drawing import _add_hair, _smooth_noise

# ----------------------------------------------------------------------------------------------------
# Clinical photo


def _micro_texture(rng: np.random.Generator, shape: tuple[int, int], pattern: int) -> np.ndarray:
    """Zero-sum texture on the 2x2 grid: every aligned 2x2 block holds a * [[1, -1], [-1, 1]].

    A 2x2 average (downsampling by 2) of it is exactly zero. ``grain``: every block, a ~ N(0, 1);
    ``points``: 7 % of the blocks, a = +-3.8 (same energy); ``smooth``: nothing.
    """
    h, w = shape
    hb, wb = (h + 1) // 2, (w + 1) // 2
    if PATTERNS[pattern] == "grain":
        amp = rng.standard_normal((hb, wb)).astype(np.float32)
    elif PATTERNS[pattern] == "points":
        amp = (rng.random((hb, wb)) < 0.07) * rng.choice([-3.8, 3.8], size=(hb, wb))
        amp = amp.astype(np.float32)
    else:
        return np.zeros(shape, dtype=np.float32)
    checker = np.array([[1.0, -1.0], [-1.0, 1.0]], dtype=np.float32)
    return np.kron(amp, checker)[:h, :w]


LESION_BASE = np.array([150.0, 100.0, 78.0], dtype=np.float32)  # a mid brown, RGB
RED = np.array([1.0, -0.45, -0.35], dtype=np.float32)  # direction of "redder" in RGB


def lesion_colour(rng: np.random.Generator, redness: float, darkness: float) -> np.ndarray:
    """The lesion's RGB colour from its two colour latents (version 3): darkness scales a brown (16 % of
    it per unit); a positive redness adds 26 units of red per unit, a negative one turns the brown
    greyer (30 % of the way to grey per unit, at most 90 %); a little colour noise on top."""
    colour = LESION_BASE * float(np.clip(0.78 - 0.16 * darkness, 0.25, 1.3))
    if redness >= 0:
        colour = colour + 26.0 * redness * RED
    else:
        t = min(0.9, -0.3 * redness)
        colour = (1 - t) * colour + t * colour.mean()
    return (colour + rng.normal(0, 4, 3)).astype(np.float32)


def render_clinical(
    rng: np.random.Generator, size: int, pattern: int, colour: np.ndarray
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """One clinical photo; returns (uint8 (size, size, 3), lesion (cx, cy, radius)).

    The lesion is the largest spot, drawn in ``colour`` (from :func:`lesion_colour`; it carries the class
    at the lesion's scale) with its micro-pattern (which only a full-resolution view shows); smaller,
    fainter distractor spots take colours of their own, drawn independently of the class."""
    s = size / 256.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    tone = rng.uniform(0.0, 1.0)
    skin = np.array([236, 204, 184]) + tone * (np.array([128, 86, 62]) - np.array([236, 204, 184]))
    skin = (skin + rng.normal(0, 6, 3)).astype(np.float32)
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = skin
    img *= (1 + 0.04 * _smooth_noise(rng, (size, size), 12 * s))[:, :, None]
    phi, g = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.35)
    light = 1 + g * ((xx - size / 2) * np.cos(phi) + (yy - size / 2) * np.sin(phi)) / size
    light *= 1 - 0.18 * (((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size / 2) ** 2)
    img *= light[:, :, None]

    r = rng.uniform(*LESION_RADIUS) * s
    margin = max(40.0, r / s + 4.0) * s  # the lesion lies inside the photo
    cx, cy = rng.uniform(margin, size - margin, 2)
    for _ in range(int(rng.integers(3, 9))):  # distractor spots: smaller, smooth, no micro-pattern
        sx, sy = rng.uniform(0, size, 2)
        if np.hypot(sx - cx, sy - cy) < r + 8 * s:
            continue
        rs = rng.uniform(1.5, 0.6 * r)
        y1, y2 = max(0, int(sy - rs - 3)), min(size, int(sy + rs + 4))
        x1, x2 = max(0, int(sx - rs - 3)), min(size, int(sx + rs + 4))
        d = np.sqrt((xx[y1:y2, x1:x2] - sx) ** 2 + (yy[y1:y2, x1:x2] - sy) ** 2)
        a = (np.clip((rs - d) / 1.2 + 0.5, 0.0, 1.0) * rng.uniform(0.25, 0.6))[:, :, None]
        spot = lesion_colour(rng, rng.normal(0.2, 1.2), rng.normal(0.0, 1.2))  # independent of the class
        img[y1:y2, x1:x2] = img[y1:y2, x1:x2] * (1 - a) + a * spot

    ratio, theta = rng.uniform(0.75, 1.0), rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    v = (-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)) / ratio
    mask = np.clip((r - np.sqrt(u**2 + v**2)) / 1.5 + 0.5, 0.0, 1.0)[:, :, None]
    shade = colour * (1 + 0.06 * _smooth_noise(rng, (size, size), 3 * s))[:, :, None]
    img = img * (1 - 0.9 * mask) + 0.9 * mask * shade
    texture = _micro_texture(rng, (size, size), pattern)
    img += (
        15.0 * (texture * (mask[:, :, 0] > 0.99))[:, :, None] * np.array([1.0, 0.92, 0.88], dtype=np.float32)
    )

    _add_hair(img, rng, int(rng.integers(0, 6)), (1, 1, 2))
    img += 2.0 * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), (float(cx), float(cy), float(r))
