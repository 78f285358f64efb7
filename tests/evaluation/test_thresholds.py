"""MILK10k's challenge metric (macro F1 with every class binarised at >= 0.5) against scikit-learn, and
the decision rule: per-class thresholds fitted on validation predictions, applied as a rescaling."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from remixformer.evaluation import metrics as M
from remixformer.evaluation.predictions import Predictions
from remixformer.evaluation.report import evaluate_predictions, render_markdown
from remixformer.evaluation.thresholds import DecisionRule, best_threshold, fit_thresholds, rescale
from remixformer.tasks import TaskSpec


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _data(n=300, c=11, seed=0, skew=2.5):
    """Imbalanced labels and softmax outputs that rank well but seldom pass 0.5 for rare classes."""
    rng = np.random.default_rng(seed)
    prior = np.exp(-skew * np.arange(c) / c)
    y = rng.choice(c, size=n, p=prior / prior.sum())
    logits = rng.normal(0, 1, (n, c)) + np.log(prior)
    logits[np.arange(n), y] += 1.5
    return y, _softmax(logits)


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_at_half_equals_sklearn_on_the_binarised_indicator_matrix(seed):
    y, p = _data(seed=seed)
    p[:5, 0] = 0.5  # exactly 0.5 counts as positive
    c = p.shape[1]
    indicator = np.eye(c, dtype=int)[y]
    binarised = (p >= 0.5).astype(int)
    present = np.flatnonzero(np.bincount(y, minlength=c) > 0)
    expected = f1_score(indicator, binarised, average="macro", labels=present, zero_division=0)
    assert M.threshold_f1_macro(y, p) == pytest.approx(expected, abs=1e-12)
    per_class = f1_score(indicator, binarised, average=None, zero_division=0)
    got = M.threshold_f1_per_class(y, p)
    assert np.allclose(np.nan_to_num(got), per_class)
    if len(present) == c:  # every class present: the plain macro average, as the challenge computes it
        assert M.threshold_f1_macro(y, p) == pytest.approx(f1_score(indicator, binarised, average="macro"))


def test_several_or_no_positives_per_row_count_as_such():
    y = np.array([0, 1, 2])
    p = np.array([[0.6, 0.55, 0.0], [0.2, 0.3, 0.5], [0.1, 0.2, 0.4]])
    # class 0: TP 1 (row 0); class 1: FP row 0, FN row 1; class 2: FP row 1, FN row 2
    assert np.allclose(M.threshold_f1_per_class(y, p), [1.0, 0.0, 0.0])
    assert M.threshold_f1_macro(y, p) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"row 0 holds 1.5"):
        M.threshold_f1_macro(y, p * 2.5)


def test_every_report_carries_the_metric_beside_bacc_and_auc():
    y, p = _data(n=120, c=4, seed=1)
    tasks = (TaskSpec("diag", ("A", "B", "C", "D")),)
    metrics = evaluate_predictions(
        Predictions([f"c{i}" for i in range(120)], tasks, {"diag": p}, {"diag": y})
    )
    assert metrics["summary"]["threshold_f1_macro"] == pytest.approx(M.threshold_f1_macro(y, p))
    md = render_markdown(metrics, "t")
    assert "| Acc | BACC | AUC | F1@0.5 |" in md


def test_best_threshold_maximises_the_class_f1_halfway_between_scores():
    y = np.array([1, 1, 0, 1, 0, 0])
    s = np.array([0.30, 0.20, 0.15, 0.10, 0.05, 0.01])
    t, f1 = best_threshold(y, s)
    # top 4 (0.30 .. 0.10): TP 3, FP 1 -> F1 6/7, better than top 2 (4/5)
    assert f1 == pytest.approx(6 / 7) and t == pytest.approx((0.10 + 0.05) / 2)
    assert best_threshold(np.zeros(3), s[:3]) is None
    # ties are never split
    t, _ = best_threshold(np.array([1, 0, 0]), np.array([0.4, 0.4, 0.1]))
    assert t == pytest.approx(0.25)


def test_rescaling_is_monotone_and_crosses_half_at_each_threshold():
    t = np.array([0.1, 0.5, 0.8])
    p = np.random.default_rng(0).random((500, 3))
    p[:3] = t  # exactly at the threshold
    p[3:6] = np.nextafter(t, 0)  # just below it
    q = rescale(p, t)
    assert ((q >= 0.5) == (p >= t)).all() and (q >= 0).all() and (q <= 1).all()
    for j in range(3):
        order = np.argsort(p[:, j])
        assert (np.diff(q[order, j]) >= 0).all()
    assert np.allclose(rescale(p, [0.5, 0.5, 0.5]), p)  # 0.5 leaves probabilities as they are
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        rescale(p, [0.0, 0.5, 0.5])


def test_thresholds_are_fitted_on_validation_and_applied_elsewhere(tmp_path):
    classes = [f"K{i}" for i in range(11)]
    y_val, p_val = _data(n=400, seed=2)
    y_test, p_test = _data(n=400, seed=3)
    rule = fit_thresholds(y_val, p_val, classes, case_ids=[f"v{i}" for i in range(400)])
    before, after = rule.validation["threshold_f1_macro_before"], rule.validation["threshold_f1_macro_after"]
    assert after > before and after == pytest.approx(M.threshold_f1_macro(y_val, rule.apply(p_val)))
    assert after == pytest.approx(M.threshold_f1_macro(y_val, p_val, rule.thresholds))
    # the fit reads the validation cases only: other test predictions give the same rule
    again = fit_thresholds(y_val, p_val, classes)
    assert again.thresholds == rule.thresholds
    assert rule.fitted_on["case_ids"] == [f"v{i}" for i in range(400)] and rule.fitted_on["n_cases"] == 400
    # on unseen cases the rule is a rescaling of their own probabilities: AUC unchanged, F1 moves
    q = rule.apply(p_test)
    assert np.allclose(M.auc_per_class(y_test, q), M.auc_per_class(y_test, p_test), equal_nan=True)
    assert M.threshold_f1_macro(y_test, q) > M.threshold_f1_macro(y_test, p_test)
    # a class absent from validation keeps 0.5 and says so
    y_part = np.where(y_val == 10, 0, y_val)
    partial = fit_thresholds(y_part, p_val, classes)
    assert partial.thresholds[10] == 0.5 and partial.fitted[10] is False and all(partial.fitted[:10])
    # stored and read back
    path = rule.save(tmp_path / "thresholds.json")
    loaded = DecisionRule.load(path)
    assert loaded.thresholds == pytest.approx(rule.thresholds) and loaded.classes == classes
    assert json.loads(path.read_text())["fitted_on"]["split"] == "val"
    (tmp_path / "bad.json").write_text(json.dumps({"classes": ["a"], "thresholds": [1.5], "fitted": [True]}))
    with pytest.raises(ValueError, match=r"bad.json: decision rule: thresholds of \['a'\]"):
        DecisionRule.load(tmp_path / "bad.json")


def test_a_report_with_the_rule_shows_before_and_after():
    classes = tuple(f"K{i}" for i in range(11))
    y_val, p_val = _data(n=300, seed=4)
    y, p = _data(n=200, seed=5)
    rule = fit_thresholds(y_val, p_val, classes)
    preds = Predictions([f"c{i}" for i in range(200)], (TaskSpec("diag", classes),), {"diag": p}, {"diag": y})
    metrics = evaluate_predictions(preds, decision_rule=rule)
    s = metrics["summary"]
    assert s["threshold_f1_macro_fitted"] == pytest.approx(M.threshold_f1_macro(y, rule.apply(p)))
    assert s["val.threshold_f1_macro_fitted"] == pytest.approx(rule.validation["threshold_f1_macro_after"])
    assert s["balanced_accuracy"] == pytest.approx(M.balanced_accuracy(y, p))  # of the raw probabilities
    md = render_markdown(metrics, "t")
    assert "## Decision rule" in md and "Thresholds fitted on the val split (300 cases) only" in md
    wrong = fit_thresholds(y_val, p_val, [f"X{i}" for i in range(11)])
    with pytest.raises(ValueError, match="the decision rule is for task 'diag' with classes"):
        evaluate_predictions(preds, decision_rule=wrong)
