"""The dermoscopy image: seven checklist-like attributes as high-pass filtered 1-px structures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from remixformer.data.datasets.synthetic.drawing import (
    _add_hair,
    _curve,
    _draw_lines,
    _highpass,
    _smooth_noise,
    _soft_disk,
)

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
