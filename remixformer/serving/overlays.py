"""Attention overlays: the explanation maps of ``Predictor.predict(..., explain=True)`` as PNG images.

Each map is stretched over the image as the model saw it (resized to its input size, then shrunk to at
most ``max_side`` pixels for display), coloured with a matplotlib colormap and blended over it:

- ``lsm``: the lesion selection module's score grid over the photo, with the crops it chose as boxes
  (numbered by rank);
- ``region``: the dermoscopy region encoder's attention over the windows;
- ``window``: the window encoder's attention over the patches inside each window (each window sums
  to 1, so it shows where each window looks, not which window matters).

Maps of an absent modality are NaN and give no overlay.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from remixformer import keys

DEFAULT_MAX_SIDE = 384
ALPHA = 0.5
COLORMAP = "inferno"


@dataclass
class Overlay:
    name: str  # lsm | region | window
    modality: str  # clinical | dermoscopy
    title: str
    png: bytes

    def data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "modality": self.modality, "title": self.title, "image": self.data_url()}


def _colormap(values: np.ndarray) -> np.ndarray:
    """(H, W) floats in [0, 1] -> (H, W, 3) uint8 through the colormap."""
    from matplotlib import colormaps

    rgba = colormaps[COLORMAP](values)  # (H, W, 4) floats
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def heat_overlay(image: Image.Image, grid: np.ndarray, alpha: float = ALPHA) -> Image.Image:
    """``grid`` (h, w) stretched over ``image`` (bilinear), scaled to [0, 1] by its maximum, blended."""
    g = np.nan_to_num(np.asarray(grid, dtype=np.float32), nan=0.0)
    g = g - g.min()
    top = float(g.max())
    g = g / top if top > 0 else g
    heat = Image.fromarray(g.astype(np.float32)).resize(image.size, Image.Resampling.BILINEAR)
    colour = _colormap(np.clip(np.asarray(heat), 0.0, 1.0))
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    out = (1 - alpha) * base + alpha * colour.astype(np.float32)
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def draw_boxes(image: Image.Image, boxes: np.ndarray, scale: float) -> Image.Image:
    """Rectangles ``(top, left, bottom, right)`` in model pixels, multiplied by ``scale``; numbered."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(min(out.size) / 128))
    for rank, (top, left, bottom, right) in enumerate(np.asarray(boxes, dtype=np.float64).tolist(), 1):
        if min(top, left, bottom, right) < 0:
            continue  # a missing box (-1)
        xy = (left * scale, top * scale, right * scale - 1, bottom * scale - 1)
        draw.rectangle(xy, outline=(0, 255, 128), width=width)
        draw.text((xy[0] + width + 2, xy[1] + width + 1), str(rank), fill=(0, 255, 128))
    return out


def _fit(image: Image.Image, size: int, max_side: int) -> tuple[Image.Image, float]:
    """The image as the model saw it (``size`` square), then shrunk to ``max_side``; and that scale."""
    side = min(size, max_side)
    return image.convert("RGB").resize((side, side), Image.Resampling.BILINEAR), side / size


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # fast: the default level takes ~10x longer
    return buf.getvalue()


def _usable(maps: dict[str, np.ndarray], key: str) -> np.ndarray | None:
    m = maps.get(key)
    if m is None:
        return None
    m = np.asarray(m)
    if m.size == 0 or (np.issubdtype(m.dtype, np.floating) and np.isnan(m).all()):
        return None
    return m


def make_overlays(
    explanation: dict[str, np.ndarray],
    input_sizes: dict[str, int],
    clinical: Image.Image | None = None,
    dermoscopy: Image.Image | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
) -> list[Overlay]:
    """Overlays for one case from its explanation maps (``CasePrediction.explanation``) and images."""
    out: list[Overlay] = []
    if clinical is not None and "clinical" in input_sizes:
        scores = _usable(explanation, keys.LSM_SCORES)
        if scores is not None:
            base, scale = _fit(clinical, input_sizes["clinical"], max_side)
            img = heat_overlay(base, scores)
            boxes = explanation.get(keys.LSM_BOXES)
            if boxes is not None:
                img = draw_boxes(img, boxes, scale)
            out.append(
                Overlay(
                    "lsm",
                    "clinical",
                    f"Photo: lesion selection scores ({scores.shape[0]}x{scores.shape[1]} grid) and the "
                    "crops chosen",
                    _png(img),
                )
            )
    if dermoscopy is not None and "dermoscopy" in input_sizes:
        base, _ = _fit(dermoscopy, input_sizes["dermoscopy"], max_side)
        for key, name, title in (
            (keys.REGION_ATTENTION, "region", "Dermoscopy: region encoder attention over windows"),
            (keys.WINDOW_ATTENTION, "window", "Dermoscopy: window encoder attention over patches"),
        ):
            grid = _usable(explanation, key)
            if grid is not None:
                shape = f" ({grid.shape[0]}x{grid.shape[1]} grid)"
                out.append(Overlay(name, "dermoscopy", title + shape, _png(heat_overlay(base, grid))))
    return out
