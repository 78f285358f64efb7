"""A synthetic multi-modal skin-lesion data set in the manifest format: the project's embedded default.

Designed as a fair small test of the paper's ideas (docs/synthetic.md has the design and the measured
difficulty). Five diagnoses, each seen through three partial views:

- **clinical photo** (256^2): skin tone, lighting gradient, hair, distractor spots and a small lesion
  (radius 18-26 px) at a random place. Its *micro-pattern* (smooth / grain / points) is a zero-sum
  texture on the 2x2 pixel grid: a 2x downsampled copy of the photo loses it, a full-resolution crop
  around the lesion shows it (what the LSM zoom is for). A weak low-resolution cue (redness) remains.
- **dermoscopy image** (256^2): seven checklist-like attributes drawn as 1-px structures (network,
  dots/globules, streaks, veil speckle, vessels, regression peppering, pigment speckle) and high-pass
  filtered, so that shrinking the image to 64^2 erases them (what high-resolution windows are for).
- **metadata**: age, sex, location, elevation, changed, with class-dependent distributions and 8 %
  blanks per field.

The clinical pattern separates {NEV, MEL} / {MISC, SK} / {BCC}; the dermoscopy attributes separate
{NEV, MISC} / {MEL, SK} / {BCC}; metadata shifts the odds. No single view identifies the class.
Generation is deterministic for a seed (byte-identical files) and independent per case.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.fft
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from remixformer.data.cases import CaseTable
from remixformer.data.config import DataConfig
from remixformer.data.datasets.manifest import load_manifest
from remixformer.schema import AGE_BINS, AGE_RANGE, MetadataSchema, boolean, categorical, numeric
from remixformer.tasks import DIAG

log = logging.getLogger(__name__)

NAME = "synthetic"
VERSION = 2  # bump when the generator's output changes (2: clinical lesion radius 18-26 px, was 10-15)
CLASSES = ("BCC", "NEV", "MEL", "MISC", "SK")
PRIOR = np.array([0.18, 0.28, 0.24, 0.14, 0.16])

# Clinical micro-pattern of the lesion, P(pattern | class), rows in CLASSES order.
PATTERNS = ("smooth", "grain", "points")
P_PATTERN = np.array(
    [
        [0.12, 0.10, 0.78],  # BCC
        [0.84, 0.10, 0.06],  # NEV
        [0.82, 0.12, 0.06],  # MEL
        [0.10, 0.84, 0.06],  # MISC
        [0.08, 0.86, 0.06],  # SK
    ]
)
REDNESS_MEAN = np.array([0.8, 0.0, 0.2, 0.6, 0.0])  # low-resolution cue, N(mean, 1)
LESION_RADIUS = (18.0, 26.0)  # clinical lesion radius in pixels of a 256^2 photo, uniform

# Dermoscopy attributes (Derm7pt-like names). pn has three classes, the others ABS/PRS.
ATTRIBUTE_TASKS = ("pn", "bwv", "vs", "pig", "str", "dag", "rs")
ATTRIBUTE_CLASSES = {"pn": ("ABS", "TYP", "ATP"), **{t: ("ABS", "PRS") for t in ATTRIBUTE_TASKS[1:]}}
P_PN = np.array(
    [[0.90, 0.07, 0.03], [0.10, 0.80, 0.10], [0.15, 0.10, 0.75], [0.10, 0.75, 0.15], [0.20, 0.10, 0.70]]
)
P_PRESENT = np.array(
    [  # bwv, vs, pig, str, dag, rs
        [0.10, 0.85, 0.10, 0.05, 0.15, 0.10],  # BCC
        [0.05, 0.05, 0.10, 0.05, 0.55, 0.05],  # NEV
        [0.55, 0.10, 0.65, 0.55, 0.50, 0.50],  # MEL
        [0.05, 0.10, 0.15, 0.05, 0.45, 0.10],  # MISC
        [0.45, 0.10, 0.55, 0.45, 0.45, 0.40],  # SK
    ]
)

# Metadata.
AGE_MEAN = np.array([62.0, 40.0, 58.0, 46.0, 60.0])
AGE_SD = 13.0
P_MALE = np.array([0.55, 0.45, 0.55, 0.40, 0.50])
LOCATIONS = ("head_neck", "trunk", "upper_limbs", "lower_limbs", "acral")
P_LOCATION = np.array(
    [
        [0.40, 0.25, 0.15, 0.12, 0.08],
        [0.18, 0.38, 0.18, 0.18, 0.08],
        [0.18, 0.36, 0.16, 0.22, 0.08],
        [0.10, 0.22, 0.18, 0.42, 0.08],
        [0.22, 0.45, 0.15, 0.11, 0.07],
    ]
)
ELEVATIONS = ("flat", "palpable", "nodular")
P_ELEVATION = np.array(
    [[0.20, 0.40, 0.40], [0.40, 0.45, 0.15], [0.42, 0.40, 0.18], [0.35, 0.48, 0.17], [0.25, 0.55, 0.20]]
)
P_CHANGED = np.array([0.30, 0.15, 0.55, 0.20, 0.22])
META_FIELDS = ("age", "sex", "location", "elevation", "changed")
P_BLANK = 0.08  # per field, independent of everything (no leakage through blanks)

P_NO_CLINICAL = 0.08
P_NO_DERMOSCOPY = 0.08
P_SECOND_CLINICAL = 0.15  # a second photo of the same lesion (evaluation averages over photos)
P_SECOND_CASE = 0.2  # share of patients with two lesions (cases)
SPLIT_SHARES = (("train", 0.7), ("val", 0.15), ("test", 0.15))

SCHEMA = MetadataSchema(
    [
        numeric("age", AGE_BINS, description="years", value_range=AGE_RANGE),
        categorical("sex", ("female", "male")),
        categorical("location", LOCATIONS),
        categorical("elevation", ELEVATIONS),
        boolean("changed", description="the patient reports a recent change"),
    ],
    name=NAME,
)


def _tasks_json() -> list[dict[str, Any]]:
    tasks = [{"name": DIAG, "classes": list(CLASSES)}]
    tasks += [{"name": t, "classes": list(ATTRIBUTE_CLASSES[t])} for t in ATTRIBUTE_TASKS]
    return tasks


# ----------------------------------------------------------------------------------------------------
# Latent variables


@dataclass
class Latents:
    """Everything the images and metadata are drawn from, one entry per case."""

    diag: np.ndarray  # (N,) class index
    pattern: np.ndarray  # (N,) clinical micro-pattern index
    redness: np.ndarray  # (N,) float
    attributes: np.ndarray  # (N, 7): pn in {0, 1, 2}, the others in {0, 1}
    age: np.ndarray  # (N,) float years
    male: np.ndarray  # (N,) bool
    location: np.ndarray  # (N,)
    elevation: np.ndarray  # (N,)
    changed: np.ndarray  # (N,) bool
    blank: np.ndarray  # (N, 5) bool, metadata field blank
    has_clinical: np.ndarray  # (N,) bool
    has_dermoscopy: np.ndarray  # (N,) bool


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of ``probs`` (N, K)."""
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), probs.shape[1] - 1)


def sample_latents(rng: np.random.Generator, n: int, diag: np.ndarray | None = None) -> Latents:
    y = rng.choice(len(CLASSES), size=n, p=PRIOR) if diag is None else np.asarray(diag)
    pattern = _categorical(rng, P_PATTERN[y])
    redness = rng.normal(REDNESS_MEAN[y], 1.0)
    attrs = np.zeros((n, len(ATTRIBUTE_TASKS)), dtype=np.int64)
    attrs[:, 0] = _categorical(rng, P_PN[y])
    attrs[:, 1:] = rng.random((n, len(ATTRIBUTE_TASKS) - 1)) < P_PRESENT[y]
    age = np.clip(np.round(rng.normal(AGE_MEAN[y], AGE_SD)), 5, 95)
    male = rng.random(n) < P_MALE[y]
    location = _categorical(rng, P_LOCATION[y])
    elevation = _categorical(rng, P_ELEVATION[y])
    changed = rng.random(n) < P_CHANGED[y]
    blank = rng.random((n, len(META_FIELDS))) < P_BLANK
    no_c = rng.random(n) < P_NO_CLINICAL
    no_d = (rng.random(n) < P_NO_DERMOSCOPY) & ~no_c  # every case keeps at least one image
    return Latents(y, pattern, redness, attrs, age, male, location, elevation, changed, blank, ~no_c, ~no_d)


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


def render_clinical(
    rng: np.random.Generator, size: int, pattern: int, redness: float, lesion_color: np.ndarray
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """One clinical photo; returns (uint8 (size, size, 3), lesion (cx, cy, radius))."""
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
    margin = 40 * s
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
        img[y1:y2, x1:x2] = img[y1:y2, x1:x2] * (1 - a) + a * (lesion_color * rng.uniform(0.8, 1.2))

    ratio, theta = rng.uniform(0.75, 1.0), rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    v = (-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)) / ratio
    mask = np.clip((r - np.sqrt(u**2 + v**2)) / 1.5 + 0.5, 0.0, 1.0)[:, :, None]
    color = lesion_color + 16.0 * redness * np.array([1.0, -0.45, -0.35], dtype=np.float32)
    color = color * (1 + 0.06 * _smooth_noise(rng, (size, size), 3 * s))[:, :, None]
    img = img * (1 - 0.9 * mask) + 0.9 * mask * color
    texture = _micro_texture(rng, (size, size), pattern)
    img += (
        15.0 * (texture * (mask[:, :, 0] > 0.99))[:, :, None] * np.array([1.0, 0.92, 0.88], dtype=np.float32)
    )

    _add_hair(img, rng, int(rng.integers(0, 6)), (1, 1, 2))
    img += 2.0 * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), (float(cx), float(cy), float(r))


# ----------------------------------------------------------------------------------------------------
# Dermoscopy image

HIGHPASS_CUTOFF = 0.22  # cycles/pixel: structures keep only what a 4x shrink (to 64^2 from 256^2) removes


def _grid(
    xx: np.ndarray,
    yy: np.ndarray,
    period: np.ndarray | float,
    angle: float,
    warp: tuple[np.ndarray, np.ndarray] | None = None,
    width: float = 1.0,
) -> np.ndarray:
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    if warp is not None:
        u, v = u + warp[0], v + warp[1]
    du = np.abs(((u / period) + 0.5) % 1.0 - 0.5) * period
    dv = np.abs(((v / period) + 0.5) % 1.0 - 0.5) * period
    return np.clip(width - np.minimum(du, dv), 0.0, 1.0)


def _dots(
    rng: np.random.Generator, size: int, n: int, region: np.ndarray, radius: tuple[float, float]
) -> np.ndarray:
    out = np.zeros((size, size), dtype=np.float32)
    ys, xs = np.nonzero(region > 0.5)
    if len(xs) == 0:
        return out
    pick = rng.integers(0, len(xs), n)
    for x0, y0, rad in zip(xs[pick], ys[pick], rng.uniform(*radius, n)):
        k = int(np.ceil(rad)) + 1
        y1, y2, x1, x2 = max(0, y0 - k), min(size, y0 + k + 1), max(0, x0 - k), min(size, x0 + k + 1)
        gy, gx = np.mgrid[y1:y2, x1:x2]
        blob = np.clip(rad + 0.5 - np.sqrt((gx - x0) ** 2 + (gy - y0) ** 2), 0, 1)
        out[y1:y2, x1:x2] = np.maximum(out[y1:y2, x1:x2], blob)
    return out


def _stipple(rng: np.random.Generator, region: np.ndarray, density: float) -> np.ndarray:
    """Granular texture on the 2x2 grid, like the clinical micro-pattern: every aligned 2x2 block holds
    a * [[1, -1], [-1, 1]] (zero sum), with |a| <= 1, in a share ``density`` of the blocks of ``region``.
    The region is applied per block, so the texture stays zero-sum and a 2x downsampling erases it."""
    size = region.shape[0]
    hb = (size + 1) // 2
    amp = (
        np.clip(rng.standard_normal((hb, hb)) * 0.6, -1, 1)
        if density >= 1
        else (
            rng.choice([-1.0, 1.0], (hb, hb))
            * rng.uniform(0.6, 1.0, (hb, hb))
            * (rng.random((hb, hb)) < density)
        )
    )
    amp = (amp * region[::2, ::2]).astype(np.float32)
    return np.kron(amp, np.array([[1.0, -1.0], [-1.0, 1.0]], dtype=np.float32))[:size, :size]


def render_dermoscopy(rng: np.random.Generator, size: int, attributes: np.ndarray) -> np.ndarray:
    """One dermoscopy image with the given attribute vector (pn, bwv, vs, pig, str, dag, rs)."""
    s = size / 256.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c0 = size / 2 + rng.uniform(-14, 14, 2) * s
    dx, dy = xx - c0[0], yy - c0[1]
    rad, ang = np.sqrt(dx**2 + dy**2), np.arctan2(dy, dx)
    R = rng.uniform(78, 105) * s
    harmonics = [(k, rng.uniform(0, 0.06), rng.uniform(0, 2 * np.pi)) for k in range(2, 6)]

    def border_at(a: np.ndarray | float) -> np.ndarray | float:
        return 1 + sum(amp * np.cos(k * a + ph) for k, amp, ph in harmonics)

    border = border_at(ang)
    lesion = np.clip((R * border - rad) / (6 * s), 0.0, 1.0)
    inner = np.clip((0.82 * R * border - rad) / (3 * s), 0.0, 1.0)

    skin = (np.array([228, 186, 170]) + rng.normal(0, 8, 3)).astype(np.float32)
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = skin
    brown = (np.array([150, 100, 76]) * rng.uniform(0.7, 1.05) + rng.normal(0, 6, 3)).astype(np.float32)
    shade = 1 + 0.12 * _smooth_noise(rng, (size, size), 14 * s)
    img = img * (1 - lesion[:, :, None]) + lesion[:, :, None] * brown * shade[:, :, None]

    layer = np.zeros((size, size, 3), dtype=np.float32)

    def add(structure: np.ndarray, color: Sequence[float]) -> None:
        layer[:] += structure[:, :, None] * np.asarray(color, dtype=np.float32)

    pn, bwv, vs, pig, strk, dag, rs = (int(a) for a in attributes)
    if pn:
        angle = rng.uniform(0, np.pi)
        if pn == 1:  # typical: a regular fine mesh
            net = _grid(xx, yy, rng.uniform(3.8, 4.4), angle)
        else:  # atypical: warped, uneven, broken, thicker in places
            period = 4.3 * (1 + 0.15 * _smooth_noise(rng, (size, size), 10 * s))
            warp = (
                1.6 * _smooth_noise(rng, (size, size), 6 * s),
                1.6 * _smooth_noise(rng, (size, size), 6 * s),
            )
            width = 1.0 + 0.6 * (_smooth_noise(rng, (size, size), 8 * s) > 0.5)
            net = _grid(xx, yy, period, angle, warp, width) * (_smooth_noise(rng, (size, size), 4 * s) > -0.6)
        add(net * inner, (-60, -62, -55))
    if dag:
        add(_dots(rng, size, int(rng.integers(25, 70)), inner, (0.7, 1.6)), (-85, -80, -70))
    if strk:  # short radial lines crossing the lesion's edge
        lines = []
        for a in rng.uniform(0, 2 * np.pi, int(rng.integers(14, 30))):
            rb = R * float(border_at(a))
            r0, r1, bend = 0.78 * rb, rb * rng.uniform(0.98, 1.1), rng.normal(0, 0.03)
            lines.append(
                [
                    (c0[0] + r0 * np.cos(a), c0[1] + r0 * np.sin(a)),
                    (c0[0] + r1 * np.cos(a + bend), c0[1] + r1 * np.sin(a + bend)),
                ]
            )
        add(_draw_lines(size, lines), (-70, -72, -62))
    if bwv:  # blue-whitish stipple over a patch of the lesion
        bc = c0 + rng.uniform(-0.3, 0.3, 2) * R
        region = _soft_disk(xx, yy, bc[0], bc[1], rng.uniform(0.3, 0.5) * R, 4 * s) * inner
        add(_stipple(rng, region, 1.0), (22, 34, 50))
    if vs:
        vessels = [
            _curve(rng, c0 + rng.uniform(-0.5, 0.5, 2) * R, rng.uniform(25, 60) * s, 1.5, 0.5)
            for _ in range(int(rng.integers(3, 8)))
        ]
        add(_draw_lines(size, vessels) * lesion, (100, -65, -55))
    if pig:  # clusters of dark-brown stipple
        clusters = (_smooth_noise(rng, (size, size), 7 * s) > 0.9) * inner
        add(_stipple(rng, clusters, 0.4), (-40, -45, -45))
    if rs:  # grey-blue peppering and fine white scar lines
        rc = c0 + rng.uniform(-0.35, 0.35, 2) * R
        region = _soft_disk(xx, yy, rc[0], rc[1], rng.uniform(0.3, 0.45) * R, 4 * s) * inner
        add(_stipple(rng, region, 0.12), (-45, -35, 15))
        scars = [
            _curve(rng, rc + rng.uniform(-8, 8, 2) * s, rng.uniform(12, 24) * s, 1.5, 0.15)
            for _ in range(int(rng.integers(2, 5)))
        ]
        add(_draw_lines(size, scars) * region, (60, 60, 60))
    img += _highpass(layer, HIGHPASS_CUTOFF)

    if rng.random() < 0.5:  # dark dermoscope corners
        corner = np.clip((rad - size * rng.uniform(0.52, 0.62)) / (4 * s), 0, 1)
        img *= 1 - 0.9 * corner[:, :, None]
    _add_hair(img, rng, int(rng.integers(0, 4)), (2, 3))
    img += 2.0 * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------
# Writing the data set


def _case_rng(seed: int, case: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, case, stream]))


def _assign_patients(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient index of every case (20 % of patients have two cases) and each patient's split."""
    patient = np.empty(n, dtype=np.int64)
    p, i = 0, 0
    while i < n:
        k = 2 if (rng.random() < P_SECOND_CASE and i + 1 < n) else 1
        patient[i : i + k] = p
        p, i = p + 1, i + k
    shares = np.array([s for _, s in SPLIT_SHARES])
    split = rng.choice(len(SPLIT_SHARES), size=p, p=shares / shares.sum())
    return patient, split


def _render_case(args: tuple) -> dict[str, Any]:
    seed, i, case_id, lat, out, clinical_size, dermoscopy_size = args
    rng = _case_rng(seed, i, 1)
    row: dict[str, Any] = {"clinical": [], "dermoscopy": [], "lesions": []}
    lesion_color = (np.array([120, 78, 58]) * rng.uniform(0.55, 1.1) + rng.normal(0, 6, 3)).astype(np.float32)
    if lat["has_clinical"]:
        n_photos = 2 if rng.random() < P_SECOND_CLINICAL else 1
        for k in range(n_photos):
            arr, lesion = render_clinical(rng, clinical_size, lat["pattern"], lat["redness"], lesion_color)
            rel = f"clinical/{case_id}_{k}.png"
            Image.fromarray(arr).save(out / rel, compress_level=1)
            row["clinical"].append(rel)
            row["lesions"].append(lesion)
    if lat["has_dermoscopy"]:
        arr = render_dermoscopy(rng, dermoscopy_size, lat["attributes"])
        rel = f"dermoscopy/{case_id}.png"
        Image.fromarray(arr).save(out / rel, compress_level=1)
        row["dermoscopy"].append(rel)
    return row


def generate(
    out_dir: str | os.PathLike,
    n_cases: int = 600,
    seed: int = 0,
    clinical_size: int = 256,
    dermoscopy_size: int = 256,
    workers: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic set (``manifest.csv``, ``schema.json``, ``latents.csv``, images) to ``out_dir``.

    Deterministic for ``seed`` whatever ``workers`` is. The folder is written atomically (a temporary
    sibling, then renamed). Returns the folder.
    """
    out = Path(out_dir).expanduser()
    if n_cases < 10:
        raise ValueError(f"synthetic: n_cases must be at least 10, got {n_cases}")
    if min(clinical_size, dermoscopy_size) < 64:
        raise ValueError("synthetic: image sizes must be at least 64")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(
                f"synthetic: {out} exists and is not empty; choose another folder or overwrite it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write(tmp, n_cases, seed, clinical_size, dermoscopy_size, workers)
        if out.exists() and any(out.iterdir()):
            if not overwrite:  # another process wrote it meanwhile (same seed: the same files)
                log.info("synthetic: %s appeared while generating; keeping it", out)
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            shutil.rmtree(out)
        os.replace(tmp, out)  # atomic; replaces an empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write(out: Path, n: int, seed: int, clinical_size: int, dermoscopy_size: int, workers: int) -> None:
    (out / "clinical").mkdir()
    (out / "dermoscopy").mkdir()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, 0]))
    lat = sample_latents(rng, n)
    patient, patient_split = _assign_patients(rng, n)
    # A patient's age and sex are the patient's: later cases of a patient copy the first one's.
    first: dict[int, int] = {}
    for i, p in enumerate(patient):
        j = first.setdefault(int(p), i)
        lat.age[i], lat.male[i] = lat.age[j], lat.male[j]
        lat.blank[i, :2] = lat.blank[j, :2]
    width = len(str(n - 1))
    case_ids = [f"syn{i:0{width}d}" for i in range(n)]
    jobs = [
        (
            seed,
            i,
            case_ids[i],
            {
                "has_clinical": bool(lat.has_clinical[i]),
                "has_dermoscopy": bool(lat.has_dermoscopy[i]),
                "pattern": int(lat.pattern[i]),
                "redness": float(lat.redness[i]),
                "attributes": lat.attributes[i],
            },
            out,
            clinical_size,
            dermoscopy_size,
        )
        for i in range(n)
    ]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rendered = list(pool.map(_render_case, jobs, chunksize=8))
    else:
        rendered = [_render_case(j) for j in jobs]

    rows, latent_rows = [], []
    for i, rend in enumerate(rendered):
        meta = {
            "age": f"{lat.age[i]:g}",
            "sex": "male" if lat.male[i] else "female",
            "location": LOCATIONS[lat.location[i]],
            "elevation": ELEVATIONS[lat.elevation[i]],
            "changed": "True" if lat.changed[i] else "False",
        }
        for k, f in enumerate(META_FIELDS):
            if lat.blank[i, k]:
                meta[f] = ""
        row = {
            "case_id": case_ids[i],
            "patient_id": f"pat{int(patient[i]):0{width}d}",
            "diagnosis": CLASSES[lat.diag[i]],
            "clinical": ";".join(rend["clinical"]),
            "dermoscopy": ";".join(rend["dermoscopy"]),
            **meta,
        }
        for k, t in enumerate(ATTRIBUTE_TASKS):
            row[t] = ATTRIBUTE_CLASSES[t][int(lat.attributes[i, k])]
        row["split"] = SPLIT_SHARES[int(patient_split[patient[i]])][0]
        rows.append(row)
        latent_rows.append(
            {
                "case_id": case_ids[i],
                "clinical_pattern": PATTERNS[lat.pattern[i]],
                "redness": round(float(lat.redness[i]), 4),
                "lesions": ";".join(f"{x:.1f},{y:.1f},{r:.1f}" for x, y, r in rend["lesions"]),
            }
        )
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    pd.DataFrame(latent_rows).to_csv(out / "latents.csv", index=False, lineterminator="\n")
    schema = {
        "name": NAME,
        "description": "synthetic skin-lesion data set (remixformer synth)",
        **SCHEMA.to_dict(),
        "tasks": _tasks_json(),
    }
    (out / "schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    info = {
        "generator": "remixformer.data.datasets.synthetic",
        "version": VERSION,
        "n_cases": n,
        "seed": seed,
        "clinical_size": clinical_size,
        "dermoscopy_size": dermoscopy_size,
    }
    (out / "synthetic.json").write_text(json.dumps(info, indent=2) + "\n")


def load(cfg: DataConfig) -> CaseTable:
    """Load the synthetic set in ``cfg.root``, generating it there first when it is absent or empty."""
    root = Path(cfg.root).expanduser()
    info_path = root / "synthetic.json"
    if not root.exists() or not any(root.iterdir()):
        log.info(
            "synthetic: generating %d cases (seed %d) in %s", cfg.synthetic_cases, cfg.synthetic_seed, root
        )
        generate(root, cfg.synthetic_cases, cfg.synthetic_seed)
    elif not info_path.is_file():
        raise ValueError(
            f"synthetic: {root} is not empty and holds no synthetic.json; point root at an empty folder "
            "or at a folder written by `remixformer synth`"
        )
    else:
        info = json.loads(info_path.read_text())
        want = {"n_cases": cfg.synthetic_cases, "seed": cfg.synthetic_seed, "version": VERSION}
        have = {k: info.get(k) for k in want}
        if have != want:
            log.warning(
                "synthetic: %s holds a set generated with %s, not the configured %s; using it as it is",
                root,
                have,
                want,
            )
    return load_manifest(root / "manifest.csv", root / "schema.json", cfg, name=NAME)


def read_lesions(root: str | os.PathLike) -> dict[str, tuple[float, float, float, int]]:
    """Where the lesion is in every clinical photo of a synthetic set (from ``latents.csv``):
    resolved image path -> (centre x, centre y, radius, photo side), in pixels of the photo as written."""
    root = Path(root).expanduser()
    path = root / "latents.csv"
    if not path.is_file():
        raise ValueError(f"synthetic: {path} not found; it is written by `remixformer synth` with the images")
    size = int(json.loads((root / "synthetic.json").read_text()).get("clinical_size", 256))
    manifest = pd.read_csv(root / "manifest.csv", keep_default_na=False, dtype=str).set_index("case_id")
    out = {}
    for row in pd.read_csv(path, keep_default_na=False, dtype=str).itertuples():
        photos = [p for p in manifest.loc[row.case_id, "clinical"].split(";") if p]
        boxes = [b for b in row.lesions.split(";") if b]
        for photo, box in zip(photos, boxes):
            cx, cy, r = (float(v) for v in box.split(","))
            out[str((root / photo).resolve())] = (cx, cy, r, size)
    return out


# ----------------------------------------------------------------------------------------------------
# Difficulty: Bayes-optimal accuracy from the latent variables


def _modality_loglik(lat: Latents) -> dict[str, np.ndarray]:
    """Per-case log-likelihood of every class, per modality, of what a perfect reader of that modality
    sees: clinical pattern + redness; the seven attributes; the binned metadata (blanks contribute 0)."""
    from scipy.stats import norm

    n = len(lat.diag)
    out = {}
    lc = np.log(P_PATTERN[:, lat.pattern].T) + norm.logpdf(lat.redness[:, None], REDNESS_MEAN[None, :], 1.0)
    out["C"] = np.where(lat.has_clinical[:, None], lc, 0.0)
    ld = np.log(P_PN[:, lat.attributes[:, 0]].T)
    for k in range(1, len(ATTRIBUTE_TASKS)):
        p = P_PRESENT[:, k - 1][None, :]
        ld = ld + np.where(lat.attributes[:, k : k + 1] == 1, np.log(p), np.log(1 - p))
    out["D"] = np.where(lat.has_dermoscopy[:, None], ld, 0.0)
    edges = np.concatenate([[-np.inf], np.asarray(AGE_BINS) - 0.5, [np.inf]])  # ages are whole years
    cdf = norm.cdf((edges[None, :] - AGE_MEAN[:, None]) / AGE_SD)
    p_bin = np.diff(cdf, axis=1)  # (classes, bins)
    age_bin = np.searchsorted(np.asarray(AGE_BINS), lat.age, side="right")
    terms = [
        np.log(p_bin[:, age_bin].T),
        np.where(lat.male[:, None], np.log(P_MALE)[None], np.log(1 - P_MALE)[None]),
        np.log(P_LOCATION[:, lat.location].T),
        np.log(P_ELEVATION[:, lat.elevation].T),
        np.where(lat.changed[:, None], np.log(P_CHANGED)[None], np.log(1 - P_CHANGED)[None]),
    ]
    lm = np.zeros((n, len(CLASSES)))
    for k, t in enumerate(terms):
        lm += np.where(lat.blank[:, k : k + 1], 0.0, t)
    out["M"] = lm
    return out


def bayes_accuracy(n: int = 200_000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Accuracy and balanced accuracy of the Bayes-optimal classifier for every modality subset.

    An upper bound: it reads the latent variables (clinical pattern, attributes, metadata) perfectly,
    as a model could only if it resolved every fine detail. Missing modalities and blank fields occur
    at the generator's rates.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    lat = sample_latents(rng, n)
    ll = _modality_loglik(lat)
    out = {}
    for subset in ("C", "D", "M", "CD", "CM", "DM", "CDM", ""):
        score = np.log(PRIOR)[None, :] + sum((ll[m] for m in subset), np.zeros((n, len(CLASSES))))
        pred = score.argmax(axis=1)
        recalls = [float((pred[lat.diag == c] == c).mean()) for c in range(len(CLASSES))]
        out[subset or "prior"] = {
            "accuracy": float((pred == lat.diag).mean()),
            "balanced_accuracy": float(np.mean(recalls)),
        }
    return out
