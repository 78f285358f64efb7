"""Class imbalance: per-class loss weights and class-balanced sampling, both from the training split.

Skin-lesion sets are dominated by one class (HAM10000: 67 % naevi; MILK10k: 48 % BCC), and a model
trained on them with plain cross-entropy learns to answer the majority class. Two remedies, as the
strong ISIC entries use them (``train.class_balance``):

- ``loss``: cross-entropy weighted per class, for every single-label task. ``inverse`` weights are
  ``N / (K n_c)``; ``effective`` weights follow Cui et al. (CVPR 2019), ``(1 - beta) / (1 - beta^n_c)``.
  Either is scaled so that the mean weight over the training cases is 1 (PyTorch's weighted mean
  divides by the weights of the batch anyway; the scale only makes the numbers readable).
- ``sampler``: each epoch draws as many training cases as there are, with replacement, class ``c``
  with probability proportional to ``n_c ** sampler_power`` (0.5: square-root frequency; 0: every
  class equally often; 1: the natural frequencies). The draw is a function of (seed, epoch) only and
  is sharded by rank like the plain shuffle (:class:`~remixformer.data.sampling.EpochSampler`).
  Cases with an unknown diagnosis keep their natural share.

A class with no training case is an error that names the task, the class and the counts: its weight
would be infinite and its sampling probability undefined.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from remixformer.data.cases import CaseTable
from remixformer.keys import IGNORE_INDEX
from remixformer.serialization import write_text_atomic
from remixformer.tasks import MULTI, TaskSpec

log = logging.getLogger(__name__)

BALANCE_FILE = "class_balance.json"


def class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Cases per class (unknown labels, ``-1``, are not counted)."""
    labels = np.asarray(labels)
    known = labels[labels != IGNORE_INDEX]
    return np.bincount(known.astype(np.int64), minlength=n_classes)[:n_classes]


def _require_every_class(counts: np.ndarray, task: TaskSpec, what: str) -> None:
    absent = [task.classes[i] for i in np.flatnonzero(counts == 0)]
    if absent:
        listing = ", ".join(f"{c} {int(n)}" for c, n in zip(task.classes, counts))
        raise ValueError(
            f"train.class_balance={what}: task {task.name!r} has no training case of class(es) {absent} "
            f"(training counts: {listing}); a weight for a class never seen would be infinite. Use a split "
            "whose training part holds every class, drop the class from the data, or set "
            "train.class_balance=none"
        )


def loss_weights(counts: np.ndarray, method: str = "inverse", beta: float = 0.999) -> np.ndarray:
    """Per-class weights from training counts, scaled so that the mean weight per training case is 1."""
    counts = np.asarray(counts, dtype=np.float64)
    if (counts <= 0).any():
        raise ValueError(f"every class needs at least one training case, got counts {counts.tolist()}")
    if method == "inverse":
        raw = 1.0 / counts
    elif method == "effective":
        if not 0.0 < beta < 1.0:
            raise ValueError(f"train.class_balance_beta must be in (0, 1), got {beta}")
        raw = (1.0 - beta) / (1.0 - np.power(beta, counts))
    else:
        raise ValueError(f"train.class_weighting must be 'inverse' or 'effective', got {method!r}")
    return raw * counts.sum() / (raw * counts).sum()


def sampling_weights(labels: np.ndarray, counts: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Per-case draw weights (summing to 1) so that class ``c`` is drawn with probability proportional
    to ``n_c ** power``; cases with an unknown label keep their natural share of the draws."""
    labels = np.asarray(labels)
    counts = np.asarray(counts, dtype=np.float64)
    known = labels != IGNORE_INDEX
    n, n_known = len(labels), int(known.sum())
    class_mass = np.power(counts, power)
    class_mass = class_mass / class_mass.sum() * (n_known / n)
    w = np.full(n, 1.0 / n)  # unknown labels: natural share
    lab = labels[known].astype(np.int64)
    w[known] = class_mass[lab] / counts[lab]
    return w / w.sum()


def class_balance(
    table: CaseTable,
    train_indices: list[int],
    tasks: tuple[TaskSpec, ...],
    mode: str,
    method: str = "inverse",
    beta: float = 0.999,
    power: float = 0.5,
) -> dict[str, Any]:
    """What ``train.class_balance`` does for a run, computed from its training cases.

    Returns ``{"mode", "tasks": {task: {"counts", "loss_weights"?}}, "sampling"?: {...}}``;
    ``"sample_weights"`` (one per training case, in ``train_indices`` order) for the sampler.
    """
    out: dict[str, Any] = {"mode": mode, "tasks": {}}
    if mode == "none":
        return out
    if mode not in ("loss", "sampler"):
        raise ValueError(f"train.class_balance must be none, loss or sampler, got {mode!r}")
    idx = np.asarray(train_indices, dtype=np.int64)
    single = [t for t in tasks if t.kind != MULTI]
    for t in single:
        labels = table.labels(t.name)[idx]
        counts = class_counts(labels, t.num_classes)
        entry: dict[str, Any] = {"classes": list(t.classes), "counts": counts.tolist()}
        if mode == "loss":
            _require_every_class(counts, t, mode)
            entry["loss_weights"] = loss_weights(counts, method, beta).tolist()
            entry["weighting"] = method if method == "inverse" else f"effective (beta {beta})"
        out["tasks"][t.name] = entry
    if mode == "sampler":
        t = single[0] if single else None
        if t is None:
            raise ValueError("train.class_balance=sampler needs a single-label task to balance")
        labels = table.labels(t.name)[idx]
        counts = class_counts(labels, t.num_classes)
        _require_every_class(counts, t, mode)
        w = sampling_weights(labels, counts, power)
        per_class = [float(w[labels == c].sum()) for c in range(t.num_classes)]
        out["sampling"] = {
            "task": t.name,
            "power": power,
            "class_probabilities": dict(zip(t.classes, per_class)),
            "unknown_label_probability": float(w[labels == IGNORE_INDEX].sum()),
        }
        out["sample_weights"] = w
    return out


def write_balance(info: dict[str, Any], run_dir: str | Path) -> Path:
    """``class_balance.json`` in the run directory (without the per-case weights), written atomically."""
    public = {k: v for k, v in info.items() if k != "sample_weights"}
    return write_text_atomic(Path(run_dir) / BALANCE_FILE, json.dumps(public, indent=2))


def describe(info: dict[str, Any]) -> str:
    """One log line: what the balance does."""
    if info["mode"] == "none":
        return "class balance: none"
    if info["mode"] == "loss":
        parts = [
            f"{name}: " + ", ".join(f"{c} {w:.2f}" for c, w in zip(e["classes"], e["loss_weights"]))
            for name, e in info["tasks"].items()
        ]
        return "class balance: loss weights " + "; ".join(parts)
    s = info["sampling"]
    probs = ", ".join(f"{c} {p:.3f}" for c, p in s["class_probabilities"].items())
    return f"class balance: sampler on {s['task']} (power {s['power']}): {probs}"
