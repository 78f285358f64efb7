"""Classification metrics as pure functions of targets and probabilities (numpy in, floats out).

Conventions shared by every function here (``docs/evaluation.md`` gives the full definitions):

* Single-label targets are ints ``(N,)`` with ``-1`` (:data:`remixformer.keys.IGNORE_INDEX`) for an
  unknown label; those rows are dropped before anything is computed. Multi-label targets are floats
  ``(N, A)`` of 0/1 with NaN for unknown; each attribute drops its own NaN rows.
* The predicted class is the argmax of the probabilities, and a row whose maximum is shared by two
  or more classes is *undecided* (:data:`UNDECIDED`): it counts as wrong for its true class and as a
  prediction of no class. This is the tie rule of the official ISIC scorer (``isic-challenge-scoring``),
  applied to every label-based metric (accuracy, balanced accuracy, per-class sensitivity,
  specificity, precision, F1, confusion matrix, calibration) so that they agree with each other.
* The exception: :func:`threshold_f1_macro` (MILK10k's challenge metric) binarises every class's
  probability on its own at >= 0.5, so a row may be positive for no class or for several.
* An undefined value is NaN: the AUC or AP of a class absent from the targets, the sensitivity of such
  a class, the specificity of a class that every case has. Macro means average the classes present in
  the targets and skip NaN; a class absent from the targets never enters a macro mean.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from remixformer.keys import IGNORE_INDEX

logger = logging.getLogger(__name__)

UNDECIDED = -1  # predicted label of a row whose maximum probability is shared by several classes
PROB_TOLERANCE = 1e-6  # float32 softmax and sigmoid may overshoot [0, 1] by a rounding error
ECE_BINS = 15
CHALLENGE_THRESHOLD = 0.5  # MILK10k (ISIC 2025): a class is predicted where its probability is >= 0.5

# Class names that identify the two ISIC 2017 one-vs-rest targets, compared case-insensitively.
ISIC2017_MELANOMA_NAMES = ("MEL", "melanoma")
ISIC2017_KERATOSIS_NAMES = ("SK", "seborrheic_keratosis")


# ----------------------------------------------------------------------------------------------------
# Input checks and small helpers
# ----------------------------------------------------------------------------------------------------


def _check_probabilities(p: np.ndarray) -> None:
    """Probabilities must be finite and in [0, 1] (scores such as logits are refused, naming the row)."""
    finite = np.isfinite(p)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise ValueError(f"probabilities contain NaN or inf (row {row})")
    outside = (p < -PROB_TOLERANCE) | (p > 1 + PROB_TOLERANCE)
    if outside.any():
        row = int(np.flatnonzero(outside.any(axis=1))[0])
        value = float(p[row][outside[row]][0])
        raise ValueError(
            f"probabilities must lie in [0, 1]; row {row} holds {value:g} (logits or scores are not "
            "probabilities: apply softmax or sigmoid first)"
        )


def _check_single(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate single-label inputs and drop the rows whose target is unknown."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (N, C) with C >= 2, got {p.shape}")
    if y.shape != (p.shape[0],):
        raise ValueError(f"targets must have shape ({p.shape[0]},) to match probabilities, got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"single-label targets must be integer class indices, got dtype {y.dtype}")
        y = y.astype(np.int64)
    y = y.astype(np.int64, copy=False)
    bad = (y < IGNORE_INDEX) | (y >= p.shape[1])
    if bad.any():
        raise ValueError(
            f"targets must be class indices in [0, {p.shape[1]}) or {IGNORE_INDEX} (unknown); "
            f"row {int(np.flatnonzero(bad)[0])} holds {int(y[bad][0])}"
        )
    _check_probabilities(p)
    known = y != IGNORE_INDEX
    return y[known], p[known]


def _check_multi(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or y.shape != p.shape:
        raise ValueError(
            f"multi-label targets and probabilities must both be (N, A), got {y.shape} and {p.shape}"
        )
    known = ~np.isnan(y)
    if not np.isin(y[known], (0.0, 1.0)).all():
        raise ValueError("multi-label targets must be 0, 1 or NaN (unknown)")
    _check_probabilities(p)
    return y, p


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def nanmean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the finite values; NaN (without a warning) when there are none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def macro_mean(values: np.ndarray, present: np.ndarray) -> float:
    """Mean over the classes present in the targets, skipping NaN."""
    return nanmean(np.asarray(values, dtype=np.float64)[np.asarray(present, dtype=bool)])


# ----------------------------------------------------------------------------------------------------
# Labels and confusion matrix
# ----------------------------------------------------------------------------------------------------


def predicted_labels(probs: Any) -> np.ndarray:
    """Argmax of each row, or :data:`UNDECIDED` where the maximum is shared (exact float equality)."""
    p = np.asarray(probs, dtype=np.float64)
    labels = p.argmax(axis=1)
    n_max = (p == p.max(axis=1, keepdims=True)).sum(axis=1)
    return np.where(n_max > 1, UNDECIDED, labels).astype(np.int64)


def confusion_counts(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Confusion matrix ``(C, C)`` (rows true, columns predicted) and undecided counts per true class.

    Unknown targets are dropped; undecided rows appear only in the second array, so
    ``cm.sum(1) + undecided`` is the support of each class.
    """
    y, p = _check_single(y_true, probs)
    c = p.shape[1]
    pred = predicted_labels(p)
    decided = pred != UNDECIDED
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (y[decided], pred[decided]), 1)
    undecided = np.bincount(y[~decided], minlength=c).astype(np.int64)
    return cm, undecided


# ----------------------------------------------------------------------------------------------------
# Single-label metrics
# ----------------------------------------------------------------------------------------------------


def accuracy(y_true: Any, probs: Any) -> float:
    """Fraction of known rows whose predicted class is the true one (undecided rows are wrong)."""
    y, p = _check_single(y_true, probs)
    if y.size == 0:
        return float("nan")
    return float(np.mean(predicted_labels(p) == y))


def balanced_accuracy(y_true: Any, probs: Any) -> float:
    """ISIC's balanced multi-class accuracy (BMCA): mean recall over the classes present in the targets.

    Ties count as wrong, exactly as ``isic_challenge_scoring.metrics.balanced_multiclass_accuracy``.
    """
    cm, undecided = confusion_counts(y_true, probs)
    support = cm.sum(axis=1) + undecided
    return nanmean(_safe_div(np.diag(cm), support))


def binary_auc(y_binary: Any, scores: Any) -> float:
    """ROC AUC of one binary problem (sklearn's trapezoidal AUC); NaN when only one class is present."""
    y = np.asarray(y_binary).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


def binary_average_precision(y_binary: Any, scores: Any) -> float:
    """Average precision (sklearn's step-wise sum, no interpolation); NaN without positives."""
    y = np.asarray(y_binary).astype(bool)
    if not y.any():
        return float("nan")
    return float(average_precision_score(y, np.asarray(scores, dtype=np.float64)))


def auc_per_class(y_true: Any, probs: Any) -> np.ndarray:
    """One-vs-rest ROC AUC of each class, ``(C,)``; NaN for a class absent from (or alone in) the targets."""
    y, p = _check_single(y_true, probs)
    return np.array([binary_auc(y == c, p[:, c]) for c in range(p.shape[1])])


def average_precision_per_class(y_true: Any, probs: Any) -> np.ndarray:
    """One-vs-rest average precision of each class, ``(C,)``; NaN for a class absent from the targets."""
    y, p = _check_single(y_true, probs)
    return np.array([binary_average_precision(y == c, p[:, c]) for c in range(p.shape[1])])


def per_class_metrics(y_true: Any, probs: Any) -> dict[str, np.ndarray]:
    """Per-class one-vs-rest counts and rates, each an array ``(C,)``.

    Keys: ``support``, ``tp``, ``fp``, ``fn``, ``tn``, ``sensitivity`` (recall), ``specificity``,
    ``precision``, ``f1``, ``auc``, ``ap``. Counts come from the argmax with the tie rule.
    Precision of a class present in the targets but never predicted is 0 (sklearn's
    ``zero_division=0``); every rate of a class absent from the targets except specificity and
    precision is NaN.
    """
    y, p = _check_single(y_true, probs)
    cm, undecided = confusion_counts(y, p)
    n = y.size
    tp = np.diag(cm).astype(np.int64)
    support = cm.sum(axis=1) + undecided
    predicted = cm.sum(axis=0)
    fn = support - tp
    fp = predicted - tp
    tn = n - tp - fn - fp
    precision = _safe_div(tp, predicted)
    precision[(predicted == 0) & (support > 0)] = 0.0
    return {
        "support": support,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "sensitivity": _safe_div(tp, support),
        "specificity": _safe_div(tn, tn + fp),
        "precision": precision,
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "auc": np.array([binary_auc(y == c, p[:, c]) for c in range(p.shape[1])]),
        "ap": np.array([binary_average_precision(y == c, p[:, c]) for c in range(p.shape[1])]),
    }


def threshold_f1_per_class(y_true: Any, probs: Any, threshold: Any = CHALLENGE_THRESHOLD) -> np.ndarray:
    """F1 (Dice) of each class, ``(C,)``, with every class's probability binarised on its own at
    ``>= threshold`` (a number, or one per class): the indicator matrix of the targets against that of
    the binarised probabilities. NaN for a class that is neither in the targets nor predicted."""
    y, p = _check_single(y_true, probs)
    t = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (p.shape[1],))
    pred = p >= t
    true = y[:, None] == np.arange(p.shape[1])
    tp = (pred & true).sum(0)
    return _safe_div(2 * tp, pred.sum(0) + true.sum(0))


def threshold_f1_macro(y_true: Any, probs: Any, threshold: Any = CHALLENGE_THRESHOLD) -> float:
    """MILK10k's challenge metric: the mean of :func:`threshold_f1_per_class` over the classes present
    in the targets (equal to scikit-learn's ``f1_score(indicator, probs >= 0.5, average="macro")`` when
    every class is present). Softmax outputs seldom pass 0.5 for rare classes: see
    :mod:`remixformer.evaluation.thresholds` for the decision rule that moves the thresholds."""
    y, p = _check_single(y_true, probs)
    present = np.bincount(y, minlength=p.shape[1]) > 0
    return macro_mean(threshold_f1_per_class(y, p, threshold), present)


def calibration_bins(y_true: Any, probs: Any, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Reliability-diagram data over ``n_bins`` equal-width bins of the top probability.

    Bin ``b`` holds rows with confidence in ``(b/n_bins, (b+1)/n_bins]`` (a confidence of exactly 0
    goes to the first bin). Returns ``edges`` (n_bins+1,), ``count``, ``confidence`` (mean top
    probability) and ``accuracy`` (fraction correct, ties wrong), the last two NaN in empty bins.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y, p = _check_single(y_true, probs)
    conf = p.max(axis=1)
    correct = (predicted_labels(p) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    return {
        "edges": edges,
        "count": count,
        "confidence": _safe_div(np.bincount(idx, weights=conf, minlength=n_bins), count),
        "accuracy": _safe_div(np.bincount(idx, weights=correct, minlength=n_bins), count),
    }


def expected_calibration_error(y_true: Any, probs: Any, n_bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of (count / N) * |accuracy - mean confidence|; bins of :func:`calibration_bins`."""
    bins = calibration_bins(y_true, probs, n_bins)
    n = bins["count"].sum()
    if n == 0:
        return float("nan")
    used = bins["count"] > 0
    gap = np.abs(bins["accuracy"][used] - bins["confidence"][used])
    return float(np.sum(bins["count"][used] / n * gap))


def single_label_metrics(y_true: Any, probs: Any, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Every metric of one single-label task, as a nested dict of Python floats (NaN = undefined).

    Keys: ``n_labelled``, ``n_unknown``, ``n_undecided``, ``accuracy``, ``balanced_accuracy``,
    ``auc_macro``, ``ap_macro``, ``f1_macro``, ``threshold_f1_macro`` (MILK10k's challenge metric),
    ``sensitivity_macro``, ``specificity_macro``, ``precision_macro``, ``ece``, ``per_class`` (class ->
    metric -> value; ``threshold_f1`` is the class's F1 at >= 0.5), ``confusion_matrix``
    (list of rows), ``undecided_per_class``, ``absent_classes``.
    """
    n_total = int(np.asarray(y_true).shape[0]) if np.asarray(y_true).ndim else 0
    y, p = _check_single(y_true, probs)
    c = p.shape[1]
    names = list(classes) if classes is not None else [f"class_{i}" for i in range(c)]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names given for probabilities with {c} columns")
    pc = per_class_metrics(y, p)
    cm, undecided = confusion_counts(y, p)
    present = pc["support"] > 0
    f1_at_half = threshold_f1_per_class(y, p)
    absent = [names[i] for i in range(c) if not present[i]]
    if absent:
        logger.info("classes absent from the targets (excluded from macro means): %s", absent)
    per_class = {
        names[i]: {
            "support": int(pc["support"][i]),
            "sensitivity": float(pc["sensitivity"][i]),
            "specificity": float(pc["specificity"][i]),
            "precision": float(pc["precision"][i]),
            "f1": float(pc["f1"][i]),
            "auc": float(pc["auc"][i]),
            "ap": float(pc["ap"][i]),
            "threshold_f1": float(f1_at_half[i]),
        }
        for i in range(c)
    }
    return {
        "n_labelled": int(y.size),
        "n_unknown": n_total - int(y.size),
        "n_undecided": int(undecided.sum()),
        "accuracy": float(np.mean(predicted_labels(p) == y)) if y.size else float("nan"),
        "balanced_accuracy": macro_mean(pc["sensitivity"], present),
        "auc_macro": macro_mean(pc["auc"], present),
        "ap_macro": macro_mean(pc["ap"], present),
        "f1_macro": macro_mean(pc["f1"], present),
        "threshold_f1_macro": macro_mean(f1_at_half, present),
        "sensitivity_macro": macro_mean(pc["sensitivity"], present),
        "specificity_macro": macro_mean(pc["specificity"], present),
        "precision_macro": macro_mean(pc["precision"], present),
        "ece": expected_calibration_error(y, p),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "undecided_per_class": undecided.tolist(),
        "absent_classes": absent,
    }


# ----------------------------------------------------------------------------------------------------
# Multi-label attributes
# ----------------------------------------------------------------------------------------------------


def multilabel_metrics(y_true: Any, probs: Any, attributes: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-attribute AUC and AP of a multi-label task (NaN targets ignored per attribute) and their means.

    Keys: ``per_attribute`` (attr -> ``auc``, ``ap``, ``n_labelled``, ``n_positive``), ``auc_mean``,
    ``ap_mean`` (over attributes whose value is defined), ``undefined_auc`` (attributes whose
    labelled rows are all positive or all negative).
    """
    y, p = _check_multi(y_true, probs)
    a = p.shape[1]
    names = list(attributes) if attributes is not None else [f"attr_{i}" for i in range(a)]
    if len(names) != a:
        raise ValueError(f"{len(names)} attribute names given for probabilities with {a} columns")
    per: dict[str, dict[str, float | int]] = {}
    for j, name in enumerate(names):
        known = ~np.isnan(y[:, j])
        yj, pj = y[known, j], p[known, j]
        per[name] = {
            "auc": binary_auc(yj, pj),
            "ap": binary_average_precision(yj, pj),
            "n_labelled": int(known.sum()),
            "n_positive": int(yj.sum()),
        }
    aucs = [float(v["auc"]) for v in per.values()]
    return {
        "per_attribute": per,
        "auc_mean": nanmean(aucs),
        "ap_mean": nanmean([float(v["ap"]) for v in per.values()]),
        "undefined_auc": [n for n, v in zip(names, aucs) if np.isnan(v)],
    }


# ----------------------------------------------------------------------------------------------------
# Curves and data-set specific scores
# ----------------------------------------------------------------------------------------------------


def roc_points(y_binary: Any, scores: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """False- and true-positive rates of the ROC curve, or None when only one class is present."""
    y = np.asarray(y_binary).astype(bool)
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, np.asarray(scores, dtype=np.float64))
    return fpr, tpr


def find_class(classes: Sequence[str], aliases: Sequence[str]) -> int:
    """Index of the one class whose name equals one of ``aliases`` (case-insensitive)."""
    wanted = {a.lower() for a in aliases}
    hits = [i for i, c in enumerate(classes) if str(c).lower() in wanted]
    if len(hits) != 1:
        raise ValueError(
            f"expected exactly one class named one of {list(aliases)} (case-insensitive) "
            f"among {list(classes)}, found {len(hits)}"
        )
    return hits[0]


def isic2017_score(y_true: Any, probs: Any, classes: Sequence[str]) -> dict[str, float]:
    """ISIC 2017 part 3 score: mean of the melanoma-vs-rest and seborrheic-keratosis-vs-rest AUCs.

    The two classes are found by name: :data:`ISIC2017_MELANOMA_NAMES` and
    :data:`ISIC2017_KERATOSIS_NAMES` (case-insensitive); the score uses each class's own probability
    column. Returns ``melanoma_auc``, ``keratosis_auc`` and ``score`` (NaN if either is undefined).
    """
    mel = find_class(classes, ISIC2017_MELANOMA_NAMES)
    sk = find_class(classes, ISIC2017_KERATOSIS_NAMES)
    y, p = _check_single(y_true, probs)
    mel_auc = binary_auc(y == mel, p[:, mel])
    sk_auc = binary_auc(y == sk, p[:, sk])
    return {"melanoma_auc": mel_auc, "keratosis_auc": sk_auc, "score": float(np.mean([mel_auc, sk_auc]))}
