"""Statistics over cross-validation folds: mean ± std tables and paired t-tests, as the paper reports.

A fold's metrics are a flat ``name -> float`` dict (the ``metrics`` of one entry of
``cv_results.json``; None or NaN means undefined). Values are fractions; tables show percentages with
one decimal ("72.6±2.5"). The standard deviation is the sample one (``ddof=1``) unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

CV_RESULTS_FILE = "cv_results.json"
FoldMetrics = Mapping[str, Any]

# Column headings of the paper's tables for the flat metric names; other names are shown as they are.
PAPER_HEADINGS = {
    "sensitivity_macro": "Sens",
    "specificity_macro": "Spec",
    "precision_macro": "Prec",
    "auc_macro": "AUC",
    "accuracy": "Acc",
    "f1_macro": "F1",
    "balanced_accuracy": "BACC",
    "ap_macro": "AP",
    "ece": "ECE",
    "threshold_f1_macro": "F1@0.5",
    "threshold_f1_macro_fitted": "F1@rule",
}


def _as_float(v: Any) -> float:
    return float("nan") if v is None else float(v)


def fold_values(folds: Sequence[FoldMetrics], metric: str, *, what: str = "folds") -> np.ndarray:
    """The metric of each fold as a float array (NaN where undefined); ValueError if a fold lacks it."""
    out = []
    for i, f in enumerate(folds):
        if metric not in f:
            raise ValueError(f"{what}: fold {i} has no metric {metric!r}; it has {sorted(f)}")
        out.append(_as_float(f[metric]))
    return np.asarray(out, dtype=np.float64)


def mean_std(values: Sequence[float] | np.ndarray, ddof: int = 1) -> tuple[float, float, int]:
    """Mean, standard deviation and count of the defined (non-NaN) values.

    The std is NaN with fewer than ``ddof + 1`` values; everything is NaN with none.
    """
    v = np.asarray([_as_float(x) for x in values], dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan"), 0
    std = float(v.std(ddof=ddof)) if v.size > ddof else float("nan")
    return float(v.mean()), std, int(v.size)


def format_mean_std(mean: float, std: float, *, percent: bool = True, decimals: int = 1) -> str:
    """``72.6±2.5`` (percent of a fraction by default); ``n/a`` for an undefined mean."""
    if math.isnan(mean):
        return "n/a"
    scale = 100.0 if percent else 1.0
    text = f"{mean * scale:.{decimals}f}"
    return text if math.isnan(std) else f"{text}±{std * scale:.{decimals}f}"


def format_p_value(p: float) -> str:
    """As in the paper's tables: four decimals down to 0.0001, then two significant digits (5.2e-05)."""
    if math.isnan(p):
        return "n/a"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def summarize_folds(
    folds: Sequence[FoldMetrics], metric_names: Sequence[str], ddof: int = 1
) -> dict[str, dict]:
    """``{metric: {"mean", "std", "n"}}`` over the folds (undefined folds skipped, counted in ``n``)."""
    out = {}
    for m in metric_names:
        mean, std, n = mean_std(fold_values(folds, m), ddof=ddof)
        out[m] = {"mean": mean, "std": std, "n": n}
    return out


def paired_ttest(
    a_folds: Sequence[Any], b_folds: Sequence[Any], metric: str | None = None
) -> tuple[float, float]:
    """Two-sided paired t-test (``scipy.stats.ttest_rel(a, b)``) of one metric over folds paired by position.

    ``a_folds``/``b_folds`` are per-fold metric dicts (``metric`` names the entry) or, with
    ``metric=None``, plain numbers. ``t > 0`` when A is higher. Raises ValueError when the fold counts
    differ, are below 2, or a value is undefined. When every paired difference is equal the test is
    degenerate: t is ±inf (p = 0) or, with all differences zero, NaN.
    """
    from scipy.stats import ttest_rel

    if len(a_folds) != len(b_folds):
        raise ValueError(
            f"paired t-test needs the same number of folds, got {len(a_folds)} and {len(b_folds)}"
        )
    if len(a_folds) < 2:
        raise ValueError(f"paired t-test needs at least 2 folds, got {len(a_folds)}")
    if metric is None:
        a = np.asarray([_as_float(x) for x in a_folds])
        b = np.asarray([_as_float(x) for x in b_folds])
    else:
        a = fold_values(a_folds, metric, what="run A")
        b = fold_values(b_folds, metric, what="run B")
    for name, v in (("A", a), ("B", b)):
        if np.isnan(v).any():
            bad = np.flatnonzero(np.isnan(v)).tolist()
            raise ValueError(f"run {name}: {metric or 'value'} is undefined in fold(s) at position(s) {bad}")
    with np.errstate(divide="ignore", invalid="ignore"):
        res = ttest_rel(a, b)
    return float(res.statistic), float(res.pvalue)


def cv_table(
    fold_metrics: Sequence[FoldMetrics] | Mapping[str, Sequence[FoldMetrics]],
    metric_names: Sequence[str],
    *,
    headings: Mapping[str, str] | None = None,
    percent: bool = True,
    reference: str | None = None,
    test_metric: str = "f1_macro",
    ddof: int = 1,
) -> str:
    """A Markdown table of mean±std over folds, one row per run, like the paper's Tables III, X, XIII.

    ``fold_metrics`` is one run's list of per-fold dicts, or ``{row label: folds}`` for several runs.
    With ``reference`` (a row label) a last column gives the paired t-test p-value of
    ``test_metric`` of each row against that row ("Ref." on the reference itself). A cell whose
    metric is undefined in some folds says how many folds it averages, e.g. ``70.1±2.0 (4/5)``.
    """
    runs: Mapping[str, Sequence[FoldMetrics]]
    runs = fold_metrics if isinstance(fold_metrics, Mapping) else {"run": fold_metrics}
    heads = {**PAPER_HEADINGS, **(headings or {})}
    if reference is not None and reference not in runs:
        raise ValueError(f"reference row {reference!r} is not one of {list(runs)}")
    columns = ["Method", *(heads.get(m, m) for m in metric_names)]
    if reference is not None:
        columns.append("p-value")
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join([" --- "] * len(columns)) + "|"]
    for label, folds in runs.items():
        if not folds:
            raise ValueError(f"run {label!r} has no folds")
        cells = [str(label)]
        for m in metric_names:
            mean, std, n = mean_std(fold_values(folds, m, what=f"run {label!r}"), ddof=ddof)
            cell = format_mean_std(mean, std, percent=percent)
            if 0 < n < len(folds):
                cell += f" ({n}/{len(folds)})"
            cells.append(cell)
        if reference is not None:
            if label == reference:
                cells.append("Ref.")
            else:
                _, p = paired_ttest(folds, runs[reference], test_metric)
                cells.append(format_p_value(p))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# cv_results.json
# ----------------------------------------------------------------------------------------------------


def load_cv_results(run: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """Per-fold metrics of a run, ``{fold index: {name: value}}`` sorted by fold.

    ``run`` is a run directory holding ``cv_results.json`` or the file itself (format in
    docs/architecture.md). Raises FileNotFoundError or ValueError naming the file and what is wrong.
    """
    path = Path(run)
    if path.is_dir():
        path = path / CV_RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file (expected {CV_RESULTS_FILE} written by `remixformer cv`)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    folds = data.get("folds") if isinstance(data, dict) else None
    if not isinstance(folds, list) or not folds:
        raise ValueError(f"{path}: expected an object with a non-empty 'folds' list")
    out: dict[int, dict[str, Any]] = {}
    for i, entry in enumerate(folds):
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
            raise ValueError(f"{path}: folds[{i}] must be an object with a 'metrics' object")
        k = entry.get("fold", i)
        if not isinstance(k, int) or isinstance(k, bool):
            raise ValueError(f"{path}: folds[{i}].fold must be an integer, got {k!r}")
        if k in out:
            raise ValueError(f"{path}: fold {k} appears twice")
        for name, v in entry["metrics"].items():
            if v is not None and not isinstance(v, (int, float)):
                raise ValueError(f"{path}: fold {k}, metric {name!r}: expected a number or null, got {v!r}")
        out[k] = dict(entry["metrics"])
    return dict(sorted(out.items()))


def pair_folds(
    a: Mapping[int, FoldMetrics], b: Mapping[int, FoldMetrics], *, names: tuple[str, str] = ("A", "B")
) -> tuple[list[int], list[FoldMetrics], list[FoldMetrics]]:
    """Fold indices and the two runs' fold metrics in matching order; ValueError unless the folds agree."""
    if set(a) != set(b):
        raise ValueError(
            f"folds do not pair: {names[0]} has folds {sorted(a)}, {names[1]} has folds {sorted(b)}"
        )
    idx = sorted(a)
    return idx, [a[k] for k in idx], [b[k] for k in idx]
