"""Explanation maps of one case, brought to the geometry of the image they explain.

The model returns its maps on its own grids (``docs/model.md``): the LSM score over the global
encoder's last-stage grid, crop boxes in pixels of the photo at ``clinical.image_size``, the region
attention over the dermoscopy window grid and the window attention over the patch grid. The model
sees each image stretched to a square, so a grid covers the whole image whatever its aspect ratio:
cell ``(r, c)`` of an ``h x w`` grid covers rows ``[r H/h, (r+1) H/h)`` and columns
``[c W/w, (c+1) W/w)`` of an ``H x W`` image.

On a pixel raster each pixel takes the cell that contains its centre (:func:`cell_of_pixels`).
:func:`upsample_grid` copies the cell's value into its pixels (for display: the colour is the cell's
score); with ``preserve_sum=True`` it divides it by the cell's pixel count, so a grid that sums to 1
becomes a distribution over pixels that sums to 1 exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from remixformer import keys

log = logging.getLogger(__name__)

Size = tuple[int, int]  # (height, width) in pixels


# ----------------------------------------------------------------------------------------------------
# Grids and pixels
# ----------------------------------------------------------------------------------------------------


def cell_of_pixels(n_cells: int, n_pixels: int) -> np.ndarray:
    """Cell index of every pixel along one axis: the cell containing the pixel's centre."""
    if n_cells <= 0 or n_pixels <= 0:
        raise ValueError(f"need positive sizes, got {n_cells} cells over {n_pixels} pixels")
    idx = np.floor((np.arange(n_pixels) + 0.5) * (n_cells / n_pixels)).astype(np.int64)
    return np.minimum(idx, n_cells - 1)


def upsample_grid(grid: Any, size: Size, *, preserve_sum: bool = False) -> np.ndarray:
    """A ``(h, w)`` grid on an ``(H, W)`` pixel raster covering the same area.

    Each pixel takes the value of the cell containing its centre. ``preserve_sum``: divide by the
    number of pixels of the cell, so the raster sums to what the grid sums to (needs ``H >= h`` and
    ``W >= w``, otherwise some cell would own no pixel). NaN cells stay NaN.
    """
    g = np.asarray(grid)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-d grid, got shape {g.shape}")
    H, W = int(size[0]), int(size[1])
    h, w = g.shape
    rows, cols = cell_of_pixels(h, H), cell_of_pixels(w, W)
    out = g[rows][:, cols]
    if preserve_sum:
        if H < h or W < w:
            raise ValueError(
                f"a {h}x{w} grid cannot keep its sum on {H}x{W} pixels (fewer pixels than cells)"
            )
        counts = np.bincount(rows, minlength=h)[:, None] * np.bincount(cols, minlength=w)[None, :]
        out = out / counts[rows][:, cols]
    return out


def cell_box(cell: int, grid: Size, size: Size) -> tuple[float, float, float, float]:
    """(top, left, bottom, right) of a cell (flat index, row-major) in pixels of an image of ``size``."""
    gh, gw = grid
    H, W = size
    r, c = divmod(int(cell), int(gw))
    if not 0 <= r < gh:
        raise ValueError(f"cell {cell} is outside a {gh}x{gw} grid")
    return (r * H / gh, c * W / gw, (r + 1) * H / gh, (c + 1) * W / gw)


def scale_boxes(boxes: Any, from_size: Size, to_size: Size) -> np.ndarray:
    """Boxes ``(..., 4)`` (top, left, bottom, right) in pixels of an image of ``from_size`` (the model
    input) to pixels of the same image at ``to_size`` (the original), as float."""
    b = np.asarray(boxes, dtype=np.float64)
    sy = to_size[0] / from_size[0]
    sx = to_size[1] / from_size[1]
    return b * np.array([sy, sx, sy, sx])


def display_size(size: Size, max_side: int | None) -> Size:
    """``size`` shrunk (aspect ratio kept) so that its longer side is at most ``max_side``."""
    H, W = int(size[0]), int(size[1])
    if not max_side or max(H, W) <= max_side:
        return H, W
    s = max_side / max(H, W)
    return max(1, round(H * s)), max(1, round(W * s))


# ----------------------------------------------------------------------------------------------------
# Per-branch maps
# ----------------------------------------------------------------------------------------------------


def _is_absent(x: np.ndarray) -> bool:
    x = np.asarray(x)
    return bool(np.isnan(x).all()) if np.issubdtype(x.dtype, np.floating) else bool((x < 0).all())


@dataclass
class ClinicalMaps:
    """LSM maps of one photo. ``scores``: (h, w), sums to 1; ``cells``: (K,) flat indices of the
    selected cells, best first; ``boxes``: (K, 4) crops in pixels of the model input
    (``input_size`` square)."""

    scores: np.ndarray
    cells: np.ndarray
    boxes: np.ndarray
    input_size: int

    @property
    def grid(self) -> Size:
        return (int(self.scores.shape[0]), int(self.scores.shape[1]))

    def pixel_scores(self, size: Size) -> np.ndarray:
        """The score as a distribution over the pixels of an image of ``size`` (sums to 1)."""
        return upsample_grid(self.scores, size, preserve_sum=True)

    def cell_scores(self, size: Size) -> np.ndarray:
        """Each pixel holds the score of its cell (what the figure shows; does not sum to 1)."""
        return upsample_grid(self.scores, size)

    def boxes_in(self, size: Size) -> np.ndarray:
        """(K, 4) crop boxes in pixels of the photo at ``size`` (the original image)."""
        return scale_boxes(self.boxes, (self.input_size, self.input_size), size)

    def cell_boxes_in(self, size: Size) -> np.ndarray:
        """(K, 4) boxes of the selected cells themselves in pixels of the photo at ``size``."""
        return np.asarray([cell_box(c, self.grid, size) for c in self.cells], dtype=np.float64).reshape(-1, 4)


@dataclass
class DermoscopyMaps:
    """Attention of the dermoscopy branch for one image.

    ``window``: (P, P') over the patch grid of the model input, class token to patches of each window,
    each window (a ``P/gh x P'/gw`` block) sums to 1. ``region``: (gh, gw), class token to windows,
    sums to 1; None for the single-level ablation (one "window": the whole image, which then sums to
    1). ``templates``: (P, P') MSTA template index of each patch, None without MSTA.
    """

    window: np.ndarray
    region: np.ndarray | None
    templates: np.ndarray | None
    input_size: int

    def __post_init__(self) -> None:
        P, Q = self.window.shape
        gh, gw = self.grid
        if P % gh or Q % gw:
            raise ValueError(f"a {P}x{Q} patch grid does not split into {gh}x{gw} windows")

    @property
    def grid(self) -> Size:
        """Window grid (1 x 1 without HRWE)."""
        return (1, 1) if self.region is None else (int(self.region.shape[0]), int(self.region.shape[1]))

    @property
    def patches_per_window(self) -> Size:
        gh, gw = self.grid
        return (self.window.shape[0] // gh, self.window.shape[1] // gw)

    @property
    def region_per_patch(self) -> np.ndarray:
        """(P, P'): the region attention of the window each patch belongs to."""
        if self.region is None:
            return np.ones_like(self.window)
        ph, pw = self.patches_per_window
        return np.repeat(np.repeat(self.region, ph, axis=0), pw, axis=1)

    @property
    def combined(self) -> np.ndarray:
        """(P, P'): region attention of the window times window attention of the patch; a
        distribution over all patches of the image (sums to 1)."""
        return self.region_per_patch * self.window

    def window_sums(self) -> np.ndarray:
        """(gh, gw): the window attention summed inside each window (1 everywhere)."""
        gh, gw = self.grid
        ph, pw = self.patches_per_window
        return self.window.reshape(gh, ph, gw, pw).sum(axis=(1, 3))

    def region_pixels(self, size: Size, *, preserve_sum: bool = False) -> np.ndarray:
        grid = np.ones((1, 1)) if self.region is None else self.region
        return upsample_grid(grid, size, preserve_sum=preserve_sum)

    def window_pixels(self, size: Size, *, preserve_sum: bool = False) -> np.ndarray:
        return upsample_grid(self.window, size, preserve_sum=preserve_sum)

    def combined_pixels(self, size: Size, *, preserve_sum: bool = False) -> np.ndarray:
        return upsample_grid(self.combined, size, preserve_sum=preserve_sum)

    def template_pixels(self, size: Size) -> np.ndarray | None:
        return None if self.templates is None else upsample_grid(self.templates, size)


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = x.float().numpy() if x.is_floating_point() else x.numpy()
    return np.asarray(x)


def clinical_maps(explanation: Mapping[str, Any], input_size: int) -> ClinicalMaps | None:
    """The LSM maps of one case (``CasePrediction.explanation``), None when the case has no photo or
    the model has no LSM (a note is logged)."""
    if keys.LSM_SCORES not in explanation:
        log.info("no LSM maps: the model has no clinical branch or no LSM")
        return None
    scores = _numpy(explanation[keys.LSM_SCORES]).astype(np.float64)
    if scores.ndim != 2:
        raise ValueError(f"lsm_scores of one case must be (h, w), got shape {scores.shape}")
    if _is_absent(scores):
        log.info("no LSM maps: the case has no clinical photo")
        return None
    return ClinicalMaps(
        scores=scores,
        cells=_numpy(explanation[keys.LSM_CELLS]).astype(np.int64).reshape(-1),
        boxes=_numpy(explanation[keys.LSM_BOXES]).astype(np.int64).reshape(-1, 4),
        input_size=int(input_size),
    )


def dermoscopy_maps(explanation: Mapping[str, Any], input_size: int) -> DermoscopyMaps | None:
    """The dermoscopy attention of one case, None when the case has no dermoscopy image or the model
    has no dermoscopy branch (a note is logged)."""
    if keys.WINDOW_ATTENTION not in explanation:
        log.info(
            "no dermoscopy maps: the model has no dermoscopy branch, or its window encoder (a Swin) has no "
            "class-token attention"
        )
        return None
    window = _numpy(explanation[keys.WINDOW_ATTENTION]).astype(np.float64)
    if window.ndim != 2:
        raise ValueError(f"window_attention of one case must be (P, P), got shape {window.shape}")
    if _is_absent(window):
        log.info("no dermoscopy maps: the case has no dermoscopy image")
        return None
    region = explanation.get(keys.REGION_ATTENTION)
    templates = explanation.get(keys.TEMPLATE_ASSIGNMENT)
    return DermoscopyMaps(
        window=window,
        region=None if region is None else _numpy(region).astype(np.float64),
        templates=None if templates is None else _numpy(templates).astype(np.int64),
        input_size=int(input_size),
    )
