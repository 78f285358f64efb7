"""Figures of the explanations: LSM (Fig. 7), dermoscopy attention (Fig. 8), metadata importance
(Fig. 10), the readers' accuracy beside the model's (Fig. 11b) and by reading stage (Fig. 11a).

Built on matplotlib's Agg canvas directly, as :mod:`remixformer.evaluation.plots` (no ``pyplot``, no
global state). Overlays are drawn on the original image, shrunk for display when its longer side
exceeds ``max_side``; the axes are in pixels of the original image, so boxes are drawn where they are
in the original. Every function returns a :class:`matplotlib.figure.Figure`; save it with
:func:`remixformer.evaluation.plots.save_figure`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import ScalarFormatter
from PIL import Image

from remixformer.explain.maps import ClinicalMaps, DermoscopyMaps, display_size

log = logging.getLogger(__name__)

HEAT_CMAP = "jet"  # as the paper's attention figures
OVERLAY_ALPHA = 0.45
MAX_SIDE = 1024  # longer side of an image as displayed
_BOX_COLOURS = ("white", "cyan", "magenta", "yellow", "lime", "orange", "red", "blue")


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _as_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def _display(image: Any, max_side: int | None) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """(RGB array for display, original (H, W), display (H, W))."""
    pil = _as_pil(image)
    original = (pil.height, pil.width)
    shown = display_size(original, max_side)
    if shown != original:
        pil = pil.resize((shown[1], shown[0]), Image.Resampling.BILINEAR)
    return np.asarray(pil), original, shown


def _image_axes(ax: Any, rgb: np.ndarray, original: tuple[int, int], title: str) -> tuple[float, ...]:
    """Show the image with axes in original pixels (edges at integers); returns the extent."""
    H, W = original
    extent = (0.0, float(W), float(H), 0.0)
    ax.imshow(rgb, extent=extent, interpolation="bilinear")
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x (pixels)", fontsize=8)
    ax.set_ylabel("y (pixels)", fontsize=8)
    ax.tick_params(labelsize=7)
    return extent


def _grid_lines(ax: Any, grid: tuple[int, int], original: tuple[int, int], colour: str = "white") -> None:
    H, W = original
    for r in range(1, grid[0]):
        ax.axhline(r * H / grid[0], color=colour, lw=0.6, alpha=0.7)
    for c in range(1, grid[1]):
        ax.axvline(c * W / grid[1], color=colour, lw=0.6, alpha=0.7)


def _annotate_grid(ax: Any, values: np.ndarray, original: tuple[int, int], fmt: str = "{:.3g}") -> None:
    """Write each cell's value at its centre (only for grids small enough to stay readable)."""
    gh, gw = values.shape
    if gh * gw > 256:
        return
    H, W = original
    size = 8 if gh * gw <= 64 else 6
    for r in range(gh):
        for c in range(gw):
            v = values[r, c]
            if np.isnan(v):
                continue
            ax.text(
                (c + 0.5) * W / gw,
                (r + 0.5) * H / gh,
                fmt.format(v),
                ha="center",
                va="center",
                fontsize=size,
                color="white",
                bbox={"boxstyle": "round,pad=0.1", "fc": "black", "alpha": 0.35, "lw": 0},
            )


def _draw_boxes(ax: Any, boxes: np.ndarray, labels: Sequence[str]) -> None:
    for k, ((top, left, bottom, right), text) in enumerate(zip(boxes, labels)):
        colour = _BOX_COLOURS[k % len(_BOX_COLOURS)]
        ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, edgecolor=colour, lw=1.6))
        ax.text(
            left + 2,
            top + 2,
            text,
            color="black",
            fontsize=7,
            va="top",
            ha="left",
            bbox={"boxstyle": "round,pad=0.15", "fc": colour, "alpha": 0.8, "lw": 0},
        )


# ----------------------------------------------------------------------------------------------------
# Fig. 7: clinical branch
# ----------------------------------------------------------------------------------------------------


def plot_clinical(
    image: Any, maps: ClinicalMaps, *, title: str | None = None, max_side: int = MAX_SIDE
) -> Figure:
    """Three panels: the photo with the selected crops, the LSM score grid (its values written in the
    cells, selected cells outlined), and the score as a heat map over the photo with the crops.

    The colour of a pixel is the score of its cell (the grid sums to 1)."""
    rgb, original, shown = _display(image, max_side)
    boxes = maps.boxes_in(original)
    scores = maps.scores
    flat = scores.reshape(-1)
    labels = [f"#{k + 1} {flat[c]:.3g}" for k, c in enumerate(maps.cells)]
    vmin, vmax = float(np.nanmin(scores)), float(np.nanmax(scores))
    if vmax <= vmin:
        vmax = vmin + 1e-6
    H, W = original
    fig = _new_figure(14.0, 4.9 * max(0.6, min(1.6, H / W)))
    axes = fig.subplots(1, 3)

    _image_axes(axes[0], rgb, original, f"Photo ({W}x{H}) and the {len(boxes)} lesion crops")
    _draw_boxes(axes[0], boxes, labels)

    ax = axes[1]
    im = ax.imshow(scores, cmap=HEAT_CMAP, vmin=vmin, vmax=vmax, extent=(0, W, H, 0), interpolation="nearest")
    ax.set_title(f"LSM attention score ({scores.shape[0]}x{scores.shape[1]} grid)", fontsize=10)
    ax.set_xlabel("x (pixels)", fontsize=8)
    ax.set_ylabel("y (pixels)", fontsize=8)
    ax.tick_params(labelsize=7)
    _annotate_grid(ax, scores, original)
    for top, left, bottom, right in maps.cell_boxes_in(original):
        ax.add_patch(
            Rectangle((left, top), right - left, bottom - top, fill=False, edgecolor="white", lw=1.4)
        )
    fig.colorbar(im, ax=ax, shrink=0.8, label="LSM score of the cell (grid sums to 1)")

    ax = axes[2]
    _image_axes(ax, rgb, original, "Attention map and crops")
    heat = maps.cell_scores(shown)
    im = ax.imshow(
        heat,
        cmap=HEAT_CMAP,
        vmin=vmin,
        vmax=vmax,
        alpha=OVERLAY_ALPHA,
        extent=(0, W, H, 0),
        interpolation="nearest",
    )
    _draw_boxes(ax, boxes, labels)
    fig.colorbar(ScalarMappable(im.norm, im.cmap), ax=ax, shrink=0.8, label="LSM score of the cell")
    fig.suptitle(title or "Clinical branch: lesion selection (LSM)", fontsize=11)
    return fig


# ----------------------------------------------------------------------------------------------------
# Fig. 8: dermoscopy branch
# ----------------------------------------------------------------------------------------------------


def _overlay(
    fig: Figure, ax: Any, rgb: np.ndarray, original, heat: np.ndarray, title: str, label: str
) -> None:
    H, W = original
    _image_axes(ax, rgb, original, title)
    finite = heat[np.isfinite(heat)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1e-9
    im = ax.imshow(
        heat,
        cmap=HEAT_CMAP,
        vmin=vmin,
        vmax=vmax,
        alpha=OVERLAY_ALPHA,
        extent=(0, W, H, 0),
        interpolation="nearest",
    )
    cb = fig.colorbar(ScalarMappable(im.norm, im.cmap), ax=ax, shrink=0.8, label=label)  # opaque
    formatter = cb.formatter
    assert isinstance(formatter, ScalarFormatter)  # a colorbar of a continuous norm
    formatter.set_powerlimits((-2, 3))
    cb.update_ticks()


def plot_dermoscopy(
    image: Any,
    maps: DermoscopyMaps,
    *,
    templates: bool = True,
    title: str | None = None,
    max_side: int = MAX_SIDE,
) -> Figure:
    """Panels: the image with the window grid; region-level attention (class token to windows); window-
    level attention (class token to patches, each window on its own scale: every window sums to 1);
    their product (region x window, one distribution over all patches); and, with ``templates`` and
    MSTA, the template each patch is assigned to."""
    rgb, original, shown = _display(image, max_side)
    H, W = original
    grid = maps.grid
    show_templates = templates and maps.templates is not None
    n = 4 + int(show_templates)
    fig = _new_figure(4.4 * n, 4.6 * max(0.6, min(1.6, H / W)))
    axes = fig.subplots(1, n)
    ph, pw = maps.patches_per_window
    _image_axes(axes[0], rgb, original, f"Dermoscopy ({W}x{H}), {grid[0]}x{grid[1]} windows")
    _grid_lines(axes[0], grid, original)
    if maps.region is not None:
        _overlay(
            fig,
            axes[1],
            rgb,
            original,
            maps.region_pixels(shown),
            "Region-level attention",
            "class token to window (sums to 1)",
        )
        _annotate_grid(axes[1], maps.region, original)
    else:
        _image_axes(axes[1], rgb, original, "Region-level attention: none (single-level ablation)")
    _grid_lines(axes[1], grid, original)
    _overlay(
        fig,
        axes[2],
        rgb,
        original,
        maps.window_pixels(shown),
        f"Window-level attention ({ph}x{pw} patches per window)",
        "class token to patch (each window sums to 1)",
    )
    _grid_lines(axes[2], grid, original)
    _overlay(
        fig,
        axes[3],
        rgb,
        original,
        maps.combined_pixels(shown),
        "Region x window attention",
        "region x window (sums to 1 over the image)",
    )
    if show_templates:
        ax = axes[4]
        _image_axes(ax, rgb, original, "MSTA template assignment")
        k = int(max(maps.templates.max() + 1, 1))
        tab = colormaps["tab10" if k <= 10 else "tab20"]
        cmap = ListedColormap([tab(i % tab.N) for i in range(k)])
        norm = BoundaryNorm(np.arange(-0.5, k + 0.5), k)
        ax.imshow(
            maps.template_pixels(shown),
            cmap=cmap,
            norm=norm,
            alpha=0.55,
            extent=(0, W, H, 0),
            interpolation="nearest",
        )
        cb = fig.colorbar(
            ScalarMappable(norm, cmap),
            ax=ax,
            shrink=0.8,
            label="template index",
            ticks=range(k) if k <= 16 else None,
        )
        cb.ax.tick_params(labelsize=7)
        _grid_lines(ax, grid, original)
    fig.suptitle(title or "Dermoscopy branch: hierarchical attention (HRWE)", fontsize=11)
    return fig


# ----------------------------------------------------------------------------------------------------
# Fig. 10: metadata importance
# ----------------------------------------------------------------------------------------------------


def plot_importance(result: Any, *, title: str | None = None) -> Figure:
    """Heat map of the mean drop (fields x [accuracy, recall of each class]) with ± std in the cells,
    on a diverging scale centred at 0 (red: the model relied on the field)."""
    mean, std = result.mean(), result.std()
    fields, measures = result.fields, result.measures
    finite = mean[np.isfinite(mean)]
    bound = float(np.abs(finite).max()) if finite.size else 0.0
    bound = bound if bound > 0 else 1e-3
    width = max(6.0, 1.05 * len(measures) + 3.0)
    height = max(3.5, 0.5 * len(fields) + 2.0)
    fig = _new_figure(width, height)
    ax = fig.add_subplot()
    im = ax.imshow(mean, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), aspect="auto")
    fig.colorbar(im, ax=ax, shrink=0.9, label="drop when the field is shuffled\n(baseline - shuffled)")
    cols = [
        f"accuracy\n(n={result.n_cases})",
        *(f"{c}\n(n={int(s)})" for c, s in zip(result.classes, result.support)),
    ]
    ax.set_xticks(range(len(measures)), cols, fontsize=8)
    ax.set_yticks(range(len(fields)), fields, fontsize=9)
    ax.set_xlabel("overall accuracy / recall of each class")
    ax.set_ylabel("metadata field")
    small = len(fields) * len(measures) <= 200
    for i in range(len(fields)):
        for j in range(len(measures)):
            v = mean[i, j]
            if np.isnan(v) or not small:
                continue
            text = f"{v:.3f}" + ("" if np.isnan(std[i, j]) else f"\n±{std[i, j]:.3f}")
            colour = "white" if abs(v) > 0.6 * bound else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(
        title or f"Permutation importance of the metadata ({result.repeats} repeats, mean ± std)", fontsize=11
    )
    return fig


# ----------------------------------------------------------------------------------------------------
# Fig. 11: readers and the model
# ----------------------------------------------------------------------------------------------------


def plot_reader_accuracy(
    readers: Sequence[Mapping[str, Any]], model_accuracy: float, *, title: str | None = None
) -> Figure:
    """Accuracy of each reader as a dot, a box per group with its mean as "+", and the model's accuracy
    on the study's cases as the last column and a dashed line."""
    groups = list(dict.fromkeys(r["group"] for r in readers))
    fig = _new_figure(max(5.0, 1.3 * (len(groups) + 1) + 2.0), 4.8)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    data = [
        np.asarray([r["accuracy"] for r in readers if r["group"] == g], dtype=np.float64) * 100
        for g in groups
    ]
    ax.boxplot(
        data, positions=range(len(groups)), widths=0.5, showfliers=False, medianprops={"color": "black"}
    )
    for i, v in enumerate(data):
        ax.scatter(i + rng.uniform(-0.12, 0.12, v.size), v, s=14, color=f"C{i % 10}", zorder=3, alpha=0.8)
        ax.scatter([i], [v.mean()], marker="+", s=120, color="black", zorder=4)
        ax.annotate(
            f"{v.mean():.1f} (n={v.size})",
            xy=(i, v.max()),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    m = 100 * float(model_accuracy)
    k = len(groups)
    ax.scatter([k], [m], marker="*", s=220, color="red", edgecolor="black", zorder=4, label="model")
    ax.annotate(f"{m:.1f}", xy=(k, m), xytext=(0, 8), textcoords="offset points", ha="center", fontsize=8)
    ax.axhline(m, color="red", lw=0.8, ls="--", alpha=0.6)
    ax.set_xticks(range(k + 1), [*groups, "model"])
    ax.set_ylabel("Top-1 accuracy (%)")
    ax.set_xlim(-0.6, k + 0.6)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title or "Accuracy of the readers (+ = group mean) and of the model", fontsize=11)
    return fig


def plot_reader_stages(
    readers: Sequence[Mapping[str, Any]],
    stages: Sequence[str],
    model_accuracy: Mapping[str, float],
    *,
    title: str | None = None,
) -> Figure:
    """Accuracy by reading stage (the paper's Fig. 11a): per group its mean over readers at each stage
    joined by a line (error bar: standard deviation over readers), each reader as a small dot, and
    the model's accuracy on each stage's cases as a red star joined by a dashed line.

    ``readers``: rows with ``stage``, ``group``, ``accuracy`` (one per reader and stage).
    """
    groups = list(dict.fromkeys(r["group"] for r in readers))
    fig = _new_figure(max(5.0, 1.4 * len(stages) + 2.5), 4.6)
    ax = fig.add_subplot()
    x = np.arange(len(stages), dtype=np.float64)
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    width = 0.5 / max(1, len(groups))
    for k, g in enumerate(groups):
        offset = (k - (len(groups) - 1) / 2) * width
        means, stds = [], []
        for i, stage in enumerate(stages):
            v = np.asarray(
                [r["accuracy"] for r in readers if r["group"] == g and r["stage"] == stage], dtype=np.float64
            )
            v = 100 * v[~np.isnan(v)]
            ax.scatter(
                x[i] + offset + rng.uniform(-0.04, 0.04, v.size), v, s=10, color=f"C{k % 10}", alpha=0.5
            )
            means.append(v.mean() if v.size else np.nan)
            stds.append(v.std(ddof=1) if v.size > 1 else 0.0)
        ax.errorbar(
            x + offset, means, yerr=stds, color=f"C{k % 10}", marker="o", capsize=4, lw=1.5, label=str(g)
        )
    m = np.asarray([100 * float(model_accuracy.get(s, np.nan)) for s in stages])
    ax.plot(
        x, m, color="red", ls="--", lw=1, marker="*", markersize=14, markeredgecolor="black", label="model"
    )
    for i, v in enumerate(m):
        if not np.isnan(v):
            ax.annotate(
                f"{v:.1f}", xy=(x[i], v), xytext=(0, 8), textcoords="offset points", ha="center", fontsize=8
            )
    ax.set_xticks(x, [str(s) or "(no stage)" for s in stages])
    ax.set_xlim(-0.6, len(stages) - 0.4)
    ax.set_xlabel("Reading stage (modalities shown)")
    ax.set_ylabel("Top-1 accuracy (%)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "Readers' accuracy by stage (mean ± std over readers) and the model", fontsize=11)
    return fig
