"""A decision rule for a metric that binarises every class at 0.5 (MILK10k's macro F1): per-class
thresholds fitted on validation predictions, applied as a monotone per-class rescaling.

Softmax outputs seldom pass 0.5 for a rare class, so at 0.5 such a class is never predicted and its F1
is 0. :func:`fit_thresholds` chooses, for each class on its own, the threshold ``t_c`` that maximises that
class's F1 on the validation cases (the macro F1 is a mean of per-class terms, each depending only on
its own column, so this maximises the macro F1 on validation). The threshold lies halfway between the
lowest validation score taken as positive and the next lower one (half the lowest score when every
case is positive). A class without a validation case keeps ``t_c = 0.5``. :meth:`DecisionRule.apply`
maps each column through the piecewise-linear, increasing function that sends ``[0, t_c]`` onto
``[0, 0.5]`` and ``[t_c, 1]`` onto ``[0.5, 1]``: ``q >= 0.5`` exactly where ``p >= t_c``, every class's
ranking (hence its AUC) is unchanged, and the rows no longer sum to 1.

Fit on the validation split only, never on the cases that are scored: a run stores the rule in
``thresholds.json`` with the ids of the cases it was fitted on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from remixformer.evaluation import metrics as M
from remixformer.evaluation.report import to_jsonable
from remixformer.serialization import write_text_atomic

THRESHOLDS_FILE = "thresholds.json"
_EPS = 1e-6  # thresholds are kept in [eps, 1 - eps] so that the rescaling is defined


def best_threshold(y_binary: Any, scores: Any) -> tuple[float, float] | None:
    """``(threshold, F1)`` maximising the F1 of ``scores >= threshold`` against ``y_binary``; ``None``
    without a positive case. Ties go to the higher threshold (fewer positives)."""
    y = np.asarray(y_binary, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    k = np.arange(1, len(s) + 1)  # the top k cases predicted positive
    last_of_tie = np.r_[s_sorted[1:] < s_sorted[:-1], True]  # a threshold cannot split equal scores
    f1 = np.where(last_of_tie, 2 * tp / (k + n_pos), -1.0)
    i = int(np.argmax(f1))
    lower = s_sorted[i + 1] if i + 1 < len(s) else 0.0
    t = float(np.clip((s_sorted[i] + lower) / 2, _EPS, 1 - _EPS))
    return t, float(f1[i])


def rescale(probs: Any, thresholds: Any) -> np.ndarray:
    """Per column, the increasing piecewise-linear map sending ``t`` to 0.5 (``[0, t] -> [0, 0.5]``,
    ``[t, 1] -> [0.5, 1]``); values are clipped to [0, 1] first."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (p.shape[1],))
    if ((t <= 0) | (t >= 1)).any():
        raise ValueError(f"thresholds must lie strictly between 0 and 1, got {t.tolist()}")
    above = 0.5 + 0.5 * (p - t) / (1 - t)
    below = np.minimum(0.5 * p / t, np.nextafter(0.5, 0.0))  # never rounds up onto 0.5
    return np.where(p >= t, np.minimum(above, 1.0), below)


@dataclass
class DecisionRule:
    """Per-class thresholds of one single-label task and how they were fitted."""

    classes: list[str]
    thresholds: list[float]
    fitted: list[bool]
    task: str = "diag"
    fitted_on: dict[str, Any] = field(default_factory=dict)  # split, n_cases, class_counts, case_ids
    validation: dict[str, Any] = field(default_factory=dict)  # macro F1 before/after, per class

    def __post_init__(self) -> None:
        if not (len(self.classes) == len(self.thresholds) == len(self.fitted)):
            raise ValueError(
                f"decision rule: {len(self.classes)} classes, {len(self.thresholds)} thresholds and "
                f"{len(self.fitted)} fitted flags; expected one of each per class"
            )
        bad = [c for c, t in zip(self.classes, self.thresholds) if not 0 < float(t) < 1]
        if bad:
            raise ValueError(f"decision rule: thresholds of {bad} are not strictly between 0 and 1")

    def apply(self, probs: Any) -> np.ndarray:
        """The rescaled probabilities (each class crosses 0.5 at its threshold)."""
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.classes):
            raise ValueError(
                f"decision rule for {len(self.classes)} classes given probabilities of shape {p.shape}"
            )
        return rescale(p, self.thresholds)

    def evaluate(self, y_true: Any, probs: Any) -> dict[str, Any]:
        """Macro F1 at 0.5 before and after the rule, and per class, on labelled cases."""
        before = M.threshold_f1_per_class(y_true, probs)
        after = M.threshold_f1_per_class(y_true, self.apply(probs))
        return {
            "threshold_f1_macro_before": M.threshold_f1_macro(y_true, probs),
            "threshold_f1_macro_after": M.threshold_f1_macro(y_true, self.apply(probs)),
            "per_class": {
                c: {"threshold": t, "fitted": f, "f1_before": float(b), "f1_after": float(a)}
                for c, t, f, b, a in zip(self.classes, self.thresholds, self.fitted, before, after)
            },
        }

    # --- plain data ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": "per-class thresholds fitted on validation predictions; probabilities rescaled per class "
            "so that each crosses 0.5 at its threshold",
            "task": self.task,
            "classes": list(self.classes),
            "thresholds": [float(t) for t in self.thresholds],
            "fitted": [bool(f) for f in self.fitted],
            "fitted_on": self.fitted_on,
            "validation": self.validation,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "decision rule") -> DecisionRule:
        missing = [k for k in ("classes", "thresholds", "fitted") if k not in d]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}")
        try:
            return cls(
                classes=[str(c) for c in d["classes"]],
                thresholds=[float(t) for t in d["thresholds"]],
                fitted=[bool(f) for f in d["fitted"]],
                task=str(d.get("task", "diag")),
                fitted_on=dict(d.get("fitted_on", {})),
                validation=dict(d.get("validation", {})),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from e

    def save(self, path: str | Path) -> Path:
        return write_text_atomic(Path(path), json.dumps(to_jsonable(self.to_dict()), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DecisionRule:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable decision rule (thresholds.json): {e}") from e
        return cls.from_dict(d, where=str(path))


def fit_thresholds(
    y_true: Any,
    probs: Any,
    classes: Sequence[str],
    *,
    task: str = "diag",
    case_ids: Sequence[str] | None = None,
    split: str = "val",
) -> DecisionRule:
    """Fit the rule on validation predictions (targets ``-1`` are ignored); the fit is reported with
    the validation macro F1 before and after."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    known = y >= 0
    y, p = y[known], p[known]
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise ValueError(f"{len(classes)} classes given for probabilities of shape {p.shape}")
    thresholds, fitted = [], []
    for c in range(len(classes)):
        best = best_threshold(y == c, p[:, c])
        thresholds.append(M.CHALLENGE_THRESHOLD if best is None else best[0])
        fitted.append(best is not None)
    rule = DecisionRule(list(classes), thresholds, fitted, task=task)
    rule.fitted_on = {
        "split": split,
        "n_cases": int(len(y)),
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
    }
    if case_ids is not None:
        rule.fitted_on["case_ids"] = [str(c) for c, k in zip(case_ids, known) if k]
    rule.validation = rule.evaluate(y, p) if len(y) else {}
    return rule
