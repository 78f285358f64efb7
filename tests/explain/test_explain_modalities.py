"""Accuracy by modality subset (Fig. 11a, Table XIV) from cv and evaluate outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from remixformer.cli.main import main
from remixformer.explain import load_modality_results


def _cv(path, modalities, accuracies):
    path.mkdir(parents=True)
    folds = [
        {"fold": k, "run_dir": f"fold_{k}", "metrics": {"accuracy": a}} for k, a in enumerate(accuracies)
    ]
    (path / "cv_results.json").write_text(
        json.dumps({"config": {"model": {"modalities": modalities}}, "folds": folds})
    )
    return path


def _report(path, modalities, accuracy, withheld=""):
    path.mkdir(parents=True)
    notes = ["data set: synthetic; split: test", f"model modalities: {modalities}"]
    if withheld:
        notes.append(f"withheld modality: {withheld} (the model answered without it)")
    data = {"title": "x", "notes": notes, "metrics": {"summary": {"accuracy": accuracy, "f1_macro": None}}}
    (path / "report.json").write_text(json.dumps(data))
    return path


def test_labels_are_read_from_cv_runs_and_reports_and_seeds_are_pooled(tmp_path):
    inputs = [
        _cv(tmp_path / "run_c", "C", [0.6, 0.62, 0.58]),
        _cv(tmp_path / "run_cdm", "CDM", [0.8, 0.82, 0.84]),
        _report(tmp_path / "seed0_cd", "CD", 0.7),
        _report(tmp_path / "seed1_cd", "CD", 0.72) / "report.json",
        _report(tmp_path / "cdm_without_d", "CDM", 0.75, withheld="D"),
    ]
    cmp = load_modality_results(inputs)
    assert cmp.values == {"C": [0.6, 0.62, 0.58], "CDM": [0.8, 0.82, 0.84], "CD": [0.7, 0.72], "CM": [0.75]}
    s = cmp.summary()
    assert s["CDM"]["mean"] == pytest.approx(0.82) and s["CDM"]["n"] == 3
    assert any("withheld" in n for n in cmp.notes)
    written = cmp.save(tmp_path / "out", reference="CDM")  # C is paired with CDM; CD and CM are not
    assert set(written) == {"modalities.png", "modalities.csv", "modalities.json", "modalities.md"}
    rows = list(csv.DictReader((tmp_path / "out" / "modalities.csv").open()))
    assert len(rows) == 9 and rows[0]["label"] == "C"
    assert "±" in (tmp_path / "out" / "modalities.md").read_text()


def test_labels_come_from_the_report_fields_when_it_has_them(tmp_path):
    path = _report(tmp_path / "new", "CDM", 0.7, withheld="D")
    data = json.loads((path / "report.json").read_text())
    # the fields win over the notes (here made to disagree; a report of this release says both alike)
    data |= {"modalities": "CD", "withheld": "c", "notes": ["model modalities: M"]}
    (path / "report.json").write_text(json.dumps(data))
    none_withheld = _report(tmp_path / "plain", "CDM", 0.8)
    data = json.loads((none_withheld / "report.json").read_text()) | {"modalities": "DM", "withheld": ""}
    (none_withheld / "report.json").write_text(json.dumps(data))
    assert load_modality_results([path, none_withheld]).values == {"D": [0.7], "DM": [0.8]}


def test_given_labels_and_an_undefined_metric(tmp_path):
    a, b = _report(tmp_path / "a", "CDM", 0.8), _report(tmp_path / "b", "CDM", 0.9)
    cmp = load_modality_results([a, b], labels=["full", "full"], metric="f1_macro")
    assert list(cmp.values) == ["full"] and all(np.isnan(cmp.values["full"]))
    assert any("undefined" in n for n in cmp.notes)
    with pytest.raises(ValueError, match="one label per input"):
        load_modality_results([a, b], labels=["x"])
    with pytest.raises(ValueError, match="no metric 'auc'"):
        load_modality_results([a], metric="auc")
    with pytest.raises(FileNotFoundError, match="neither"):
        (tmp_path / "empty").mkdir()
        load_modality_results([tmp_path / "empty"])


def test_analyze_modalities_command(tmp_path, capsys):
    c = _cv(tmp_path / "c", "C", [0.6, 0.66])
    cdm = _cv(tmp_path / "cdm", "CDM", [0.8, 0.85])
    out = tmp_path / "out"
    rc = main(
        [
            "analyze",
            "modalities",
            str(c),
            str(cdm),
            "--labels",
            "C",
            "CDM",
            "--reference",
            "CDM",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "| C |" in text and "CDM" in text
    assert (out / "modalities.png").is_file()
    assert "p-value" in (out / "modalities.md").read_text()
    assert main(["analyze", "modalities", str(c), "--reference", "X", "--out", str(out)]) == 2
