"""Fold statistics (mean ± std tables, paired t-test) and the ``remixformer compare`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import ttest_rel

from remixformer.cli.main import main
from remixformer.evaluation import stats

F1_A = [0.646, 0.652, 0.638, 0.655, 0.640]
F1_B = [0.660, 0.668, 0.649, 0.661, 0.659]


def _folds(f1, acc=None):
    acc = acc or [v + 0.15 for v in f1]
    return [{"f1_macro": f, "accuracy": a, "auc_macro": 0.95} for f, a in zip(f1, acc)]


def _write_cv(path, folds, indices=None):
    path.mkdir(parents=True, exist_ok=True)
    indices = indices if indices is not None else range(len(folds))
    entries = [{"fold": i, "run_dir": f"fold_{i}", "metrics": m} for i, m in zip(indices, folds)]
    (path / "cv_results.json").write_text(json.dumps({"config": {}, "folds": entries}))
    return path


def test_paired_ttest_matches_scipy():
    t, p = stats.paired_ttest(_folds(F1_A), _folds(F1_B), "f1_macro")
    ref = ttest_rel(F1_A, F1_B)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue), abs=1e-12)
    assert t < 0  # A is lower
    assert stats.paired_ttest(F1_B, F1_A) == pytest.approx((-t, p))  # plain numbers


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (F1_A, F1_B[:4], "same number of folds"),
        (F1_A[:1], F1_B[:1], "at least 2 folds"),
        ([0.5, None], [0.5, 0.6], "undefined"),
    ],
)
def test_paired_ttest_errors(a, b, match):
    with pytest.raises(ValueError, match=match):
        stats.paired_ttest(a, b)


def test_paired_ttest_missing_metric():
    with pytest.raises(ValueError, match="no metric 'precision_macro'"):
        stats.paired_ttest(_folds(F1_A), _folds(F1_B), "precision_macro")


def test_mean_std_and_formatting():
    mean, std, n = stats.mean_std([0.70, 0.75, 0.73, float("nan"), None])
    assert n == 3 and mean == pytest.approx(np.mean([0.70, 0.75, 0.73]))
    assert std == pytest.approx(np.std([0.70, 0.75, 0.73], ddof=1))
    assert stats.format_mean_std(0.726, 0.025) == "72.6±2.5"
    assert stats.format_mean_std(float("nan"), float("nan")) == "n/a"
    assert stats.format_mean_std(0.5, float("nan")) == "50.0"
    assert [stats.format_p_value(p) for p in (0.0172, 0.0001, 5.2e-05)] == ["0.0172", "0.0001", "5.2e-05"]


def test_cv_table_like_the_paper():
    table = stats.cv_table(
        {"Swin-T": _folds(F1_A), "Swin-T+LSM": _folds(F1_B)},
        ["accuracy", "auc_macro", "f1_macro"],
        reference="Swin-T",
    )
    lines = table.strip().splitlines()
    assert lines[0] == "| Method | Acc | AUC | F1 | p-value |"
    mean, std, _ = stats.mean_std(F1_A)
    assert lines[2].startswith(f"| Swin-T | {stats.format_mean_std(mean + 0.15, std)} | 95.0±0.0 |")
    assert lines[2].endswith("| Ref. |")
    assert lines[3].endswith(f"| {stats.format_p_value(ttest_rel(F1_B, F1_A).pvalue)} |")
    # one run as a plain list; a metric undefined in a fold says how many folds it averages
    folds = _folds(F1_A)
    folds[0]["auc_macro"] = None
    assert "95.0±0.0 (4/5)" in stats.cv_table(folds, ["auc_macro"])


def test_load_cv_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cv_results.json"):
        stats.load_cv_results(tmp_path)
    (tmp_path / "cv_results.json").write_text('{"folds": [{"fold": 0, "metrics": {"f1_macro": "high"}}]}')
    with pytest.raises(ValueError, match="fold 0, metric 'f1_macro'"):
        stats.load_cv_results(tmp_path)
    (tmp_path / "cv_results.json").write_text(
        '{"folds": [{"fold": 0, "metrics": {}}, {"fold": 0, "metrics": {}}]}'
    )
    with pytest.raises(ValueError, match="fold 0 appears twice"):
        stats.load_cv_results(tmp_path)


# ----------------------------------------------------------------------------------------------------
# remixformer compare
# ----------------------------------------------------------------------------------------------------


def test_compare_cli_table_and_json(tmp_path, capsys):
    a = _write_cv(tmp_path / "ref", _folds(F1_A))
    b = _write_cv(tmp_path / "new", list(reversed(_folds(F1_B))), indices=[4, 3, 2, 1, 0])  # paired by index
    assert main(["compare", str(a), str(b), "--metric", "f1_macro", "accuracy"]) == 0
    out = capsys.readouterr().out
    ref = ttest_rel(F1_B, F1_A)
    assert "f1_macro" in out and "accuracy" in out and stats.format_p_value(ref.pvalue) in out
    mean_a, std_a, _ = stats.mean_std(F1_A)
    assert stats.format_mean_std(mean_a, std_a) in out
    assert main(["compare", str(a), str(b / "cv_results.json"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    r = result["metrics"]["f1_macro"]
    assert (r["t"], r["p"]) == pytest.approx((ref.statistic, ref.pvalue), abs=1e-12)
    assert r["diff_mean"] == pytest.approx(np.mean(np.subtract(F1_B, F1_A)))
    assert result["folds"] == [0, 1, 2, 3, 4]


def test_compare_cli_errors_exit_2(tmp_path, capsys):
    a = _write_cv(tmp_path / "ref", _folds(F1_A))
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    b = _write_cv(tmp_path / "four", _folds(F1_B)[:4])
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "folds do not pair" in err and "[0, 1, 2, 3]" in err
    c = _write_cv(tmp_path / "other", _folds(F1_B))
    assert main(["compare", str(a), str(c), "--metric", "precision_macro"]) == 2
    assert "no metric 'precision_macro'" in capsys.readouterr().err
