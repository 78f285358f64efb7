"""evaluate_predictions, the Derm7pt and ISIC 2017 layouts, and the report files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from remixformer.evaluation import plots
from remixformer.evaluation.predictions import Predictions
from remixformer.evaluation.report import (
    DERM7PT_CRITERIA,
    derm7pt_table_vi,
    derm7pt_table_viii,
    evaluate_predictions,
    matches_derm7pt,
    write_report,
)
from remixformer.tasks import MULTI, TaskSpec


def _probs_for(pred: np.ndarray, k: int) -> np.ndarray:
    """Probabilities whose argmax is ``pred``: 0.6 on it, the rest spread evenly."""
    p = np.full((len(pred), k), 0.4 / (k - 1))
    p[np.arange(len(pred)), pred] = 0.6
    return p


def _derm7pt() -> Predictions:
    """Ten hand-made cases. DIAG accuracy 7/10; PN 6/10 (explicit); other criteria wrong in the first
    j cases: BWV 1, DaG 2, PIG 3, RS 0, STR 5, VS 6 -> accuracies .9 .8 .7 1.0 .5 .4."""
    tasks = [TaskSpec("diag", ("BCC", "NEV", "MEL", "MISC", "SK"))]
    y = {"diag": np.array([0, 1, 1, 2, 2, 3, 4, 1, 2, 4])}
    pred = {"diag": np.array([0, 1, 2, 2, 1, 3, 4, 1, 2, 1])}
    y["pn"] = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1, 2])
    pred["pn"] = np.array([0, 1, 1, 0, 2, 2, 0, 0, 1, 1])
    wrong = {"bwv": 1, "dag": 2, "pig": 3, "rs": 0, "str": 5, "vs": 6}
    rng = np.random.default_rng(0)
    for name, (_, classes) in DERM7PT_CRITERIA.items():
        tasks.append(TaskSpec(name, classes))
        if name == "pn":
            continue
        k = len(classes)
        y[name] = rng.integers(0, k, 10)
        y[name][:k] = np.arange(k)
        pred[name] = y[name].copy()
        pred[name][: wrong[name]] = (y[name][: wrong[name]] + 1) % k
    probs = {t.name: _probs_for(pred[t.name], t.num_classes) for t in tasks}
    return Predictions([f"case{i}" for i in range(10)], tasks, probs, y)


def test_derm7pt_table_vi_hand_made():
    preds = _derm7pt()
    assert matches_derm7pt(preds.tasks)
    row = derm7pt_table_vi(preds)
    assert list(row) == ["BWV", "DaG", "PIG", "PN", "RS", "STR", "VS", "DIAG", "Avg."]
    expected = [0.9, 0.8, 0.7, 0.6, 1.0, 0.5, 0.4, 0.7]
    assert list(row.values())[:-1] == pytest.approx(expected)
    assert row["Avg."] == pytest.approx(np.mean(expected))


def test_derm7pt_table_viii_hand_made():
    t = derm7pt_table_viii(_derm7pt())
    assert list(t) == ["sensitivity", "specificity", "auc", "f1"]
    cols = list(t["sensitivity"])
    assert cols == ["BCC", "NEV", "MEL", "MISC", "SK", "Avg1", "PN-ATP", "STR-IR", "PIG-IR", "RS-PRS",
                    "DaG-IR", "BWV-PRS", "VS-IR", "Avg2"]  # fmt: skip
    # MEL: true at 3, 4, 8; predicted at 2, 3, 8 -> TP 2, FN 1, FP 1, TN 6
    assert t["sensitivity"]["MEL"] == pytest.approx(2 / 3)
    assert t["specificity"]["MEL"] == pytest.approx(6 / 7)
    assert t["f1"]["MEL"] == pytest.approx(2 / 3)
    # MEL scores: positives 0.6, 0.1, 0.6; negatives one 0.6 and six 0.1 -> (12 + 2*0.5 + 6*0.5) / 21
    assert t["auc"]["MEL"] == pytest.approx(16 / 21)
    # PN-ATP: true at 4, 5, 6, 9; predicted at 4, 5 -> sens 1/2, spec 1, F1 2/3
    assert (t["sensitivity"]["PN-ATP"], t["specificity"]["PN-ATP"]) == pytest.approx((0.5, 1.0))
    assert t["f1"]["PN-ATP"] == pytest.approx(2 / 3)
    for row in t.values():
        assert row["Avg1"] == pytest.approx(np.mean([row[c] for c in cols[:5]]))
        assert row["Avg2"] == pytest.approx(np.mean([row["MEL"], *(row[c] for c in cols[6:13])]))


def test_derm7pt_tables_in_evaluate_and_partial_diag_only():
    m = evaluate_predictions(_derm7pt())
    assert m["derm7pt"]["table_vi"]["DIAG"] == pytest.approx(0.7)
    assert m["summary"]["derm7pt.avg_accuracy"] == pytest.approx(0.7)
    diag_only = _derm7pt()
    diag_only = Predictions(diag_only.case_ids, diag_only.tasks[:1], {"diag": diag_only.probs["diag"]},
                            {"diag": diag_only.targets["diag"]})  # fmt: skip
    m = evaluate_predictions(diag_only, dataset_name="Derm7pt")
    assert "derm7pt" not in m and any("Table VI needs" in c for c in m["caveats"])
    t = derm7pt_table_viii(diag_only)
    assert np.isnan(t["f1"]["PN-ATP"]) and np.isnan(t["f1"]["Avg2"]) and not np.isnan(t["f1"]["Avg1"])


def test_evaluate_is_json_safe_and_flat_summary(make_predictions, tmp_path):
    y, p = make_predictions(0, n=80, c=3)
    y[y == 2] = 0  # absent class -> undefined AUC -> None
    y[-5:] = -1
    attrs = np.random.default_rng(1).integers(0, 2, (80, 2)).astype(float)
    attrs[:, 1] = 1.0  # AUC undefined
    preds = Predictions(
        [f"c{i // 2}" for i in range(80)],  # two samples per case
        (TaskSpec("diag", ("NV", "MEL", "SK")), TaskSpec("attrs", ("PN", "STR"), kind=MULTI)),
        {"diag": p, "attrs": np.random.default_rng(2).uniform(size=(80, 2))},
        {"diag": np.repeat(y[::2], 2), "attrs": np.repeat(attrs[::2], 2, axis=0)},
    )
    m = evaluate_predictions(preds, dataset_name="ISIC-2017")
    json.dumps(m, allow_nan=False)
    assert m["n_cases"] == 40 and m["n_samples"] == 80
    assert m["tasks"]["diag"]["per_class"]["SK"]["auc"] is None
    assert m["isic2017"]["keratosis_auc"] is None and m["isic2017"]["score"] is None
    s = m["summary"]
    assert s["accuracy"] == m["tasks"]["diag"]["accuracy"] and "sensitivity.MEL" in s
    assert s["attrs.auc.STR"] is None and s["attrs.auc_mean"] == s["attrs.auc.PN"]
    caveats = " ".join(m["caveats"])
    assert "80 samples averaged into 40 cases" in caveats and "absent from the targets" in caveats
    write_report(tmp_path, m, preds, "ISIC 2017 attributes")
    md = (tmp_path / "report.md").read_text()
    assert "| AUC |" in md and "## ISIC 2017" in md and "n/a" in md
    assert (tmp_path / "roc_attrs.png").stat().st_size > 1000 and not (
        tmp_path / "confusion_attrs.png"
    ).exists()
    assert len(Predictions.read_csv(tmp_path / "predictions.csv")) == 40


def test_write_report_files(tmp_path):
    preds = _derm7pt()
    preds.probs["diag"][0] = [0.3, 0.3, 0.2, 0.1, 0.1]  # a tie: undecided column in the confusion matrix
    m = evaluate_predictions(preds)
    notes = ["leaky fields included: management", "withheld modality: C"]
    written = write_report(tmp_path / "out", m, preds, "Derm7pt test split", notes)
    for name in ("report.md", "report.json", "predictions.csv", "roc_diag.png", "confusion_diag.png",
                 "roc_pn.png", "confusion_vs.png", "calibration_diag.png"):  # fmt: skip
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    assert all(p.stat().st_size > 1000 for n, p in written.items() if n.endswith(".png"))
    md = (tmp_path / "out" / "report.md").read_text()
    for text in (*notes, "Derm7pt test split", "| BWV | DaG | PIG | PN | RS | STR | VS | DIAG | Avg. |",
                 "PN-ATP", "undecided", "![roc_diag.png](roc_diag.png)"):  # fmt: skip
        assert text in md, text
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["notes"] == notes and report["title"] == "Derm7pt test split"
    assert report["metrics"]["derm7pt"]["table_vi"]["PN"] == pytest.approx(0.6)
    back = Predictions.read_csv(tmp_path / "out" / "predictions.csv")
    np.testing.assert_array_equal(back.probs["diag"], preds.probs["diag"])


def test_write_report_rejects_mismatched_metrics(tmp_path):
    preds = _derm7pt()
    m = evaluate_predictions(preds.select(slice(None)))
    m["tasks"].pop("vs")
    with pytest.raises(ValueError, match="metrics are for tasks"):
        write_report(tmp_path, m, preds)


def test_roc_with_reader_points_and_fold_comparison(tmp_path):
    preds = _derm7pt()
    points = [
        plots.OperatingPoint("MEL", 0.7, 0.8, group="junior"),
        plots.OperatingPoint("MEL", 0.8, 0.85, group="senior"),
        plots.OperatingPoint("BCC", 0.9, 0.9, group="senior"),
    ]
    fig = plots.plot_roc_curves(preds.targets["diag"], preds.probs["diag"], preds.diagnosis.classes,
                                operating_points=points, panels=True)  # fmt: skip
    assert plots.save_figure(fig, tmp_path / "roc.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="unknown class"):
        plots.plot_roc_curves(preds.targets["diag"], preds.probs["diag"], preds.diagnosis.classes,
                              operating_points=[plots.OperatingPoint("XYZ", 0.5, 0.5)])  # fmt: skip
    fig = plots.plot_fold_comparison({"C": [0.7, 0.72, 0.69], "CD": [0.8, 0.79, float("nan")], "CDM": [0.85]})
    assert plots.save_figure(fig, tmp_path / "modalities.png").stat().st_size > 1000
