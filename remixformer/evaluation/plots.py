"""Figures of an evaluation: ROC curves, confusion matrix, reliability diagram, per-fold comparisons.

Figures are built on matplotlib's Agg canvas directly (no ``pyplot``), so importing this module
changes no global backend and works without a display or in threads. Every function returns a
:class:`matplotlib.figure.Figure`; :func:`save_figure` writes it as PNG.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from remixformer.evaluation import metrics as M
from remixformer.keys import IGNORE_INDEX

logger = logging.getLogger(__name__)

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


@dataclass(frozen=True)
class OperatingPoint:
    """One reader's (or a group's mean) decision on one class, drawn on that class's ROC curve.

    ``group`` decides the marker (for example "junior", "senior"); ``label`` is shown in the legend
    when given, otherwise the group is.
    """

    cls: str
    sensitivity: float
    specificity: float
    group: str = "reader"
    label: str | None = None


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Write the figure as PNG (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _binary_problems(
    y_true: Any, probs: Any, names: Sequence[str]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, y_binary, scores) per class (single-label) or per attribute (multi-label, NaN dropped)."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    out = []
    if y.ndim == 1:
        known = y != IGNORE_INDEX
        for c, name in enumerate(names):
            out.append((name, y[known] == c, p[known, c]))
    else:
        for j, name in enumerate(names):
            known = ~np.isnan(y[:, j])
            out.append((name, y[known, j] == 1, p[known, j]))
    return out


def plot_roc_curves(
    y_true: Any,
    probs: Any,
    classes: Sequence[str],
    *,
    title: str | None = None,
    operating_points: Sequence[OperatingPoint] = (),
    panels: bool = False,
) -> Figure:
    """One-vs-rest ROC curve of each class (or attribute, when ``y_true`` is (N, A)) with its AUC.

    ``panels=True`` draws one small panel per class, which keeps reader operating points readable.
    Classes whose AUC is undefined (absent from the targets) are listed in the title, not drawn.
    """
    problems = _binary_problems(y_true, probs, classes)
    colours = [f"C{i % 10}" for i in range(len(problems))]
    points_by_class: dict[str, list[OperatingPoint]] = {}
    for op in operating_points:
        if op.cls not in classes:
            raise ValueError(f"operating point for unknown class {op.cls!r}; classes are {list(classes)}")
        points_by_class.setdefault(op.cls, []).append(op)
    groups = list(dict.fromkeys(op.group for op in operating_points))
    marker_of = {g: _MARKERS[i % len(_MARKERS)] for i, g in enumerate(groups)}

    if panels:
        ncols = min(4, len(problems))
        nrows = int(np.ceil(len(problems) / ncols))
        fig = _new_figure(3.2 * ncols, 3.2 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(problems) :]:
            ax.set_visible(False)
    else:
        fig = _new_figure(6.0, 5.5)
        axes = [fig.add_subplot()] * len(problems)

    undefined = []
    for (name, yb, score), colour, ax in zip(problems, colours, axes):
        curve = M.roc_points(yb, score)
        if curve is None:
            undefined.append(name)
        else:
            auc = M.binary_auc(yb, score)
            ax.plot(curve[0], curve[1], color=colour, lw=1.6, label=f"{name} (AUC {auc:.3f})")
        seen_groups: set[str] = set()
        for op in points_by_class.get(name, []):
            first = op.group not in seen_groups
            seen_groups.add(op.group)
            ax.plot(
                1.0 - op.specificity,
                op.sensitivity,
                linestyle="none",
                marker=marker_of[op.group],
                markersize=7,
                markerfacecolor=colour,
                markeredgecolor="black",
                label=op.label or (f"{name}: {op.group}" if first else None),
            )
        if panels:
            ax.set_title(name if curve is not None else f"{name} (AUC undefined)", fontsize=10)
    for ax in dict.fromkeys(axes):  # each distinct axes once
        if not ax.get_visible():
            continue
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, linestyle="--")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("1 - specificity (false-positive rate)")
        ax.set_ylabel("Sensitivity (true-positive rate)")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=8)
    heading = title or "ROC curves (one-vs-rest)"
    if undefined:
        heading += f"\nAUC undefined (one class only): {', '.join(undefined)}"
    fig.suptitle(heading, fontsize=11)
    return fig


def plot_confusion_matrix(
    confusion: Any,
    classes: Sequence[str],
    *,
    undecided: Sequence[int] | None = None,
    title: str | None = None,
) -> Figure:
    """Counts in each cell, colour = fraction of the true class (row-normalised), with a colour bar.

    ``undecided`` (per true class) adds an "undecided" column for rows whose top probability was tied.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    col_labels = list(classes)
    if undecided is not None and np.any(np.asarray(undecided) > 0):
        cm = np.column_stack([cm, np.asarray(undecided, dtype=np.int64)])
        col_labels.append("undecided")
    support = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, support, out=np.zeros(cm.shape), where=support > 0)
    size = max(4.0, 0.6 * len(col_labels) + 2.5)
    fig = _new_figure(size + 1.0, size)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, label="fraction of the true class", shrink=0.8)
    fontsize = 9 if len(col_labels) <= 8 else 7
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if frac[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(classes)), [f"{c} (n={int(s)})" for c, s in zip(classes, support[:, 0])])
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(title or "Confusion matrix", fontsize=11)
    return fig


def plot_reliability(
    y_true: Any, probs: Any, *, n_bins: int = M.ECE_BINS, title: str | None = None
) -> Figure:
    """Reliability diagram: accuracy against mean top probability in each bin, with the ECE."""
    bins = M.calibration_bins(y_true, probs, n_bins)
    ece = M.expected_calibration_error(y_true, probs, n_bins)
    centres = (bins["edges"][:-1] + bins["edges"][1:]) / 2
    fig = _new_figure(5.0, 5.0)
    ax = fig.add_subplot()
    used = bins["count"] > 0
    ax.bar(
        centres[used],
        bins["accuracy"][used],
        width=1.0 / n_bins,
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", lw=0.8, label="perfect calibration")
    ax.set_xlabel("Top probability (confidence)")
    ax.set_ylabel("Accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or f"Reliability (ECE {ece:.3f}, {n_bins} bins)", fontsize=11)
    return fig


def plot_fold_comparison(
    values: Mapping[str, Sequence[float]],
    *,
    metric_label: str = "Accuracy (%)",
    percent: bool = True,
    title: str | None = None,
    references: Mapping[str, float] | None = None,
) -> Figure:
    """Bar per group (for example a modality subset "C", "CD", "CDM") at the mean over folds, the
    standard deviation as an error bar (ddof=1) and each fold as a dot. NaN folds are skipped.
    ``references`` draws labelled horizontal lines (e.g. ``{"majority class": 0.26}``), same scale."""
    names = list(values)
    if not names:
        raise ValueError("nothing to plot: no groups given")
    scale = 100.0 if percent else 1.0
    fig = _new_figure(max(4.0, 0.9 * len(names) + 2.0), 4.5)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # fixed jitter so the figure is reproducible
    for i, name in enumerate(names):
        v = np.asarray(values[name], dtype=np.float64) * scale
        v = v[~np.isnan(v)]
        if v.size == 0:
            continue
        std = float(v.std(ddof=1)) if v.size > 1 else 0.0
        ax.bar(i, v.mean(), yerr=std, color=f"C{i % 10}", alpha=0.6, capsize=4, edgecolor="black")
        ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, color="black", s=12, zorder=3)
        ax.annotate(
            f"{v.mean():.1f}",
            xy=(i, max(v.max(), v.mean() + std)),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    for j, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value * scale, color="0.3", linestyle=("--", ":", "-.")[j % 3], linewidth=1, label=label)
    if references:
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(metric_label)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title or f"{metric_label} across folds", fontsize=11)
    return fig
