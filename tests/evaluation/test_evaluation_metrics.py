"""Metric functions against the official ISIC scorer, scikit-learn and hand-computed values."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from remixformer.evaluation import metrics as M

SEEDS = (0, 1, 2)


# ----------------------------------------------------------------------------------------------------
# Against the official ISIC scorer (ties included)
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_bmca_auc_ap_match_official_scorer_with_ties(seed, make_predictions, official_score):
    y, p = make_predictions(seed)
    assert (M.predicted_labels(p) == M.UNDECIDED).sum() > 20  # the ties are really there
    score = official_score(y, p)
    assert M.balanced_accuracy(y, p) == pytest.approx(score.aggregate["balanced_accuracy"], abs=1e-9)
    assert M.balanced_accuracy(y, p) == pytest.approx(score.overall, abs=1e-9)
    per_official = score.per_category
    np.testing.assert_allclose(M.auc_per_class(y, p), per_official["auc"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(M.average_precision_per_class(y, p), per_official["ap"].to_numpy(), atol=1e-9)
    m = M.single_label_metrics(y, p)
    assert m["auc_macro"] == pytest.approx(score.macro_average["auc"], abs=1e-9)
    assert m["ap_macro"] == pytest.approx(score.macro_average["ap"], abs=1e-9)
    assert m["balanced_accuracy"] == pytest.approx(score.overall, abs=1e-9)
    assert m["sensitivity_macro"] == m["balanced_accuracy"]


def test_official_scorer_targets_auc_and_ap(make_predictions, official_score):
    y, p = make_predictions(3)
    m = M.single_label_metrics(y, p)
    assert m["auc_macro"] == pytest.approx(official_score(y, p, "auc").overall, abs=1e-9)
    assert m["ap_macro"] == pytest.approx(official_score(y, p, "ap").overall, abs=1e-9)


def test_bmca_absent_class_matches_official(make_predictions):
    # ClassificationScore itself fails on an absent class (its partial AUC), so call its BMCA function.
    from isic_challenge_scoring.metrics import balanced_multiclass_accuracy

    y, p = make_predictions(4, n=120, c=4)
    y[y == 3] = 0  # class 3 never occurs in the targets
    cats = ["a", "b", "c", "d"]
    truth = pd.DataFrame(np.eye(4)[y], columns=cats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the official scorer divides 0/0 for the absent class
        official = balanced_multiclass_accuracy(
            truth, pd.DataFrame(p, columns=cats), pd.Series(1.0, index=truth.index)
        )
    assert M.balanced_accuracy(y, p) == pytest.approx(official, abs=1e-9)


def test_official_label_rule_on_exact_ties():
    # Row 0 ties its maximum: undecided, hence wrong, even though class 0 is one of the tied maxima.
    p = np.array([[0.4, 0.4, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]])
    y = np.array([0, 1, 2, 0])
    np.testing.assert_array_equal(M.predicted_labels(p), [M.UNDECIDED, 1, 2, 0])
    assert M.accuracy(y, p) == 0.75
    assert M.balanced_accuracy(y, p) == pytest.approx((0.5 + 1 + 1) / 3)
    # sklearn's argmax takes the first maximum and counts row 0 as right
    assert balanced_accuracy_score(y, p.argmax(1)) == 1.0


# ----------------------------------------------------------------------------------------------------
# Against scikit-learn where the definitions agree (no ties) and where they differ (ties)
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_label_metrics_match_sklearn_without_ties(seed, make_predictions):
    y, p = make_predictions(seed, ties=False)
    assert (M.predicted_labels(p) != M.UNDECIDED).all()
    pred = p.argmax(1)
    m = M.single_label_metrics(y, p)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    assert m["precision_macro"] == pytest.approx(
        precision_score(y, pred, average="macro", zero_division=0), abs=1e-12
    )
    assert m["auc_macro"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    pc = M.per_class_metrics(y, p)
    np.testing.assert_allclose(pc["f1"], f1_score(y, pred, average=None), atol=1e-12)
    np.testing.assert_allclose(pc["sensitivity"], recall_score(y, pred, average=None), atol=1e-12)
    onehot = np.eye(p.shape[1])[y]
    np.testing.assert_allclose(pc["ap"], average_precision_score(onehot, p, average=None), atol=1e-12)
    # specificity = recall of "not c"
    for c in range(p.shape[1]):
        assert pc["specificity"][c] == pytest.approx(recall_score(y != c, pred != c), abs=1e-12)


def test_ties_differ_from_sklearn_and_follow_official(make_predictions, official_score):
    y, p = make_predictions(5)
    ours = M.balanced_accuracy(y, p)
    assert ours == pytest.approx(official_score(y, p).overall, abs=1e-9)
    assert ours != pytest.approx(balanced_accuracy_score(y, p.argmax(1)), abs=1e-6)
    # Our label metrics equal sklearn's once undecided rows are a label of their own that no class has.
    pred = M.predicted_labels(p)
    labels = list(range(p.shape[1]))
    m = M.single_label_metrics(y, p)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, labels=labels, average="macro"), abs=1e-12)


def test_absent_class_is_nan_and_excluded_from_macro(make_predictions):
    y, p = make_predictions(6, ties=False, n=150, c=4)
    y[y == 2] = 1
    m = M.single_label_metrics(y, p, ["a", "b", "c", "d"])
    assert m["absent_classes"] == ["c"]
    pc = m["per_class"]["c"]
    assert pc["support"] == 0 and np.isnan(pc["auc"]) and np.isnan(pc["ap"]) and np.isnan(pc["sensitivity"])
    present = ["a", "b", "d"]
    assert m["auc_macro"] == pytest.approx(np.mean([m["per_class"][k]["auc"] for k in present]))
    pred = p.argmax(1)
    labels = [0, 1, 3]
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, labels=labels, average="macro"), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(recall_score(y, pred, labels=labels, average="macro"))


def test_unknown_targets_are_ignored(make_predictions):
    y, p = make_predictions(7, unknown=40)
    known = y != -1
    full = M.single_label_metrics(y, p)
    sub = M.single_label_metrics(y[known], p[known])
    assert full["n_unknown"] == 40 and full["n_labelled"] == known.sum()
    for key in ("accuracy", "balanced_accuracy", "auc_macro", "ap_macro", "f1_macro", "ece"):
        assert full[key] == sub[key]


def test_precision_of_never_predicted_class_is_zero():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
    pc = M.per_class_metrics(y, p)
    assert pc["precision"][2] == 0.0 and pc["f1"][2] == 0.0 and pc["sensitivity"][2] == 0.0


# ----------------------------------------------------------------------------------------------------
# Calibration, multi-label, ISIC 2017, input checks
# ----------------------------------------------------------------------------------------------------


def test_ece_hand_made():
    p = np.array([[0.9, 0.1], [0.75, 0.25], [0.3, 0.7], [0.38, 0.62], [0.72, 0.28]])
    y = np.array([0, 1, 1, 1, 0])
    # bins (of 15): 0.9 right; 0.75 wrong; {0.7, 0.72} both right; 0.62 right
    expected = (abs(1 - 0.9) + abs(0 - 0.75) + 2 * abs(1 - 0.71) + abs(1 - 0.62)) / 5
    assert M.expected_calibration_error(y, p) == pytest.approx(expected, abs=1e-12)
    bins = M.calibration_bins(y, p)
    assert bins["count"].sum() == 5 and bins["count"][10] == 2
    # a tie is undecided: wrong, with its top probability as confidence
    p2 = np.vstack([p, [0.5, 0.5]])
    y2 = np.append(y, 0)
    assert M.expected_calibration_error(y2, p2) == pytest.approx((expected * 5 + 0.5) / 6, abs=1e-12)
    # a perfectly calibrated set: confidence 1 and always right
    assert M.expected_calibration_error([0, 1], [[1.0, 0.0], [0.0, 1.0]]) == 0.0


def test_multilabel_auc_ignores_nan():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, (60, 3)).astype(float)
    p = rng.uniform(size=(60, 3))
    y[::5, 1] = np.nan
    y[:, 2] = 0.0  # only negatives: AUC undefined
    m = M.multilabel_metrics(y, p, ["PN", "STR", "MLC"])
    known = ~np.isnan(y[:, 1])
    assert m["per_attribute"]["STR"]["auc"] == pytest.approx(roc_auc_score(y[known, 1], p[known, 1]))
    assert m["per_attribute"]["STR"]["n_labelled"] == known.sum()
    assert m["undefined_auc"] == ["MLC"]
    assert m["auc_mean"] == pytest.approx(np.mean([m["per_attribute"][a]["auc"] for a in ("PN", "STR")]))


def test_isic2017_score_matches_official(make_predictions):
    from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore

    y, p = make_predictions(9, c=3, ties=False)
    classes = ["nevus", "melanoma", "seborrheic_keratosis"]
    ours = M.isic2017_score(y, p, classes)
    index = [f"ISIC_{i:07d}" for i in range(len(y))]
    cols = ["melanoma", "seborrheic_keratosis"]
    truth = pd.DataFrame({"melanoma": (y == 1) * 1.0, "seborrheic_keratosis": (y == 2) * 1.0}, index=index)
    pred = pd.DataFrame(p[:, 1:], columns=cols, index=index)
    weights = pd.DataFrame({"score_weight": 1.0, "validation_weight": 1.0}, index=index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = ClassificationScore(truth, pred, weights, ClassificationMetric.AUC)
    assert ours["score"] == pytest.approx(official.overall, abs=1e-9)
    assert ours["melanoma_auc"] == pytest.approx(official.per_category["auc"].iloc[0], abs=1e-9)
    # short names work too, case-insensitively
    assert M.isic2017_score(y, p, ["NV", "mel", "SK"])["score"] == pytest.approx(ours["score"])


def test_isic2017_needs_both_classes():
    with pytest.raises(ValueError, match="melanoma"):
        M.isic2017_score([0, 1], [[0.6, 0.4], [0.3, 0.7]], ["NV", "SK"])


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([0, 1], [[0.5, 0.5, 0.0]], "targets must have shape"),
        ([0, 3], [[0.5, 0.5], [0.2, 0.8]], r"class indices in \[0, 2\)"),
        ([0, -2], [[0.5, 0.5], [0.2, 0.8]], "row 1"),
        ([0, 1], [[0.5, np.nan], [0.2, 0.8]], "NaN"),
        ([0], [0.5, 0.5], r"shape \(N, C\)"),
        ([0, 1, 1], [[-3, 7], [0.2, 0.8], [0.4, 0.6]], r"\[0, 1\]; row 0 holds -3"),  # logits
        ([0, 1], [[0.5, 0.5], [-0.1, 1.1]], "row 1"),
    ],
)
def test_bad_inputs_raise(y, p, match):
    with pytest.raises(ValueError, match=match):
        M.single_label_metrics(y, p)


def test_probabilities_outside_0_1_are_refused_but_rounding_is_not():
    with pytest.raises(ValueError, match=r"row 1 holds 1.5"):
        M.multilabel_metrics([[0, 1], [1, 0]], [[0.1, 0.9], [1.5, 0.2]])
    with pytest.raises(ValueError, match="NaN"):
        M.multilabel_metrics([[0, 1], [1, 0]], [[0.1, np.inf], [0.5, 0.2]])
    f32 = np.float32(1) + np.float32(1e-7)  # a float32 softmax may overshoot by a rounding error
    assert M.accuracy([1, 0], np.array([[0.0, f32], [f32, 0.0]])) == 1.0


def test_empty_after_unknowns_gives_nan():
    m = M.single_label_metrics([-1, -1], [[0.2, 0.8], [0.6, 0.4]])
    assert m["n_labelled"] == 0 and np.isnan(m["accuracy"]) and np.isnan(m["balanced_accuracy"])
