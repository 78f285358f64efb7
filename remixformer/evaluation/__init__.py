"""Evaluation: ISIC-compatible metrics, per-case predictions, reports, figures and fold statistics.

``metrics`` holds pure numpy functions, ``predictions`` the :class:`Predictions` container and its
CSV, ``report`` the metrics dict and report files, ``plots`` the figures (imported lazily, as it
loads matplotlib), ``stats`` the mean ± std tables and paired t-tests. Definitions:
``docs/evaluation.md``.
"""

from __future__ import annotations

from remixformer.evaluation.metrics import (
    UNDECIDED,
    accuracy,
    balanced_accuracy,
    expected_calibration_error,
    isic2017_score,
    multilabel_metrics,
    per_class_metrics,
    predicted_labels,
    single_label_metrics,
)
from remixformer.evaluation.predictions import Predictions
from remixformer.evaluation.report import (
    derm7pt_table_vi,
    derm7pt_table_viii,
    evaluate_predictions,
    flat_metrics,
    write_report,
)
from remixformer.evaluation.stats import cv_table, load_cv_results, mean_std, paired_ttest

__all__ = [
    "UNDECIDED",
    "Predictions",
    "accuracy",
    "balanced_accuracy",
    "cv_table",
    "derm7pt_table_vi",
    "derm7pt_table_viii",
    "evaluate_predictions",
    "expected_calibration_error",
    "flat_metrics",
    "isic2017_score",
    "load_cv_results",
    "mean_std",
    "multilabel_metrics",
    "paired_ttest",
    "per_class_metrics",
    "predicted_labels",
    "single_label_metrics",
    "write_report",
]
