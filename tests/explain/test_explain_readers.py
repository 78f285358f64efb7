"""Reader study (Fig. 11b): the strict reader CSV, operating points, accuracies, the command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from remixformer.cli.main import main
from remixformer.evaluation.predictions import Predictions
from remixformer.explain import ReaderFileError, compare_readers, read_reader_csv
from remixformer.tasks import TaskSpec

CLASSES = ("BCC", "MEL", "NEV")


def _predictions(n=30, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    p = rng.dirichlet(np.ones(3), n)
    p[np.arange(n), y] += 1.0  # the model is right on every case
    p /= p.sum(1, keepdims=True)
    return Predictions([f"c{i}" for i in range(n)], [TaskSpec("diag", CLASSES)], {"diag": p}, {"diag": y})


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = [
    "reader_id,group,case_id,answer",
    "r1,specialist,c0,BCC",  # right
    "r1,specialist,c1,MEL",  # right
    "r1,specialist,c2,MEL",  # wrong (NEV)
    "r1,specialist,c3,BCC",  # right
    "r2,specialist,c0,BCC",
    "r2,specialist,c1,NEV",  # wrong (MEL)
    "r3,resident,c4,MEL",  # right
    "r3,resident,c5,BCC",  # wrong (NEV)
]


def test_reader_csv_round_trip_and_comparison(tmp_path):
    preds = _predictions()
    study = read_reader_csv(_write(tmp_path / "r.csv", GOOD), CLASSES, preds.case_ids)
    assert study.readers == {"r1": "specialist", "r2": "specialist", "r3": "resident"}
    assert study.case_ids == ["c0", "c1", "c2", "c3", "c4", "c5"]
    cmp = compare_readers(preds, study)
    acc = {r["reader_id"]: r for r in cmp.reader_accuracy}
    assert acc["r1"]["accuracy"] == 0.75 and acc["r2"]["accuracy"] == 0.5 and acc["r3"]["accuracy"] == 0.5
    assert acc["r1"]["model_accuracy_same_cases"] == 1.0
    assert cmp.model["accuracy"] == 1.0 and cmp.model["n_cases"] == 6
    point = {(p["reader_id"], p["class"]): p for p in cmp.points}
    # r1 on MEL: one MEL case (c1), answered MEL -> sens 1; three others, one answered MEL -> spec 2/3
    assert point["r1", "MEL"]["sensitivity"] == 1.0
    assert point["r1", "MEL"]["specificity"] == pytest.approx(2 / 3)
    # r3 never saw a BCC case: its BCC sensitivity is undefined
    assert np.isnan(point["r3", "BCC"]["sensitivity"])
    groups = {(g["group"], g["class"]): g for g in cmp.group_points}
    spec_mel = np.mean([point["r1", "MEL"]["specificity"], point["r2", "MEL"]["specificity"]])
    assert groups["specialist", "MEL"]["specificity"] == pytest.approx(spec_mel)
    assert all(op.cls in CLASSES for op in cmp.operating_points())


def test_one_class_comparison_writes_figures_and_numbers(tmp_path):
    preds = _predictions()
    study = read_reader_csv(_write(tmp_path / "r.csv", GOOD), CLASSES, preds.case_ids)
    cmp = compare_readers(preds, study, cls="MEL", all_cases=True)
    assert cmp.model["n_cases"] == 30 and set(cmp.model["auc"]) == {"MEL"}
    assert {p["class"] for p in cmp.points} == {"MEL"}
    written = cmp.save(tmp_path / "out")
    assert {"readers_roc.png", "readers_accuracy.png", "reader_points.csv", "readers.json"} <= set(written)
    rows = list(csv.DictReader((tmp_path / "out" / "reader_accuracy.csv").open()))
    assert [r["reader_id"] for r in rows] == ["r1", "r2", "r3"]
    data = json.loads((tmp_path / "out" / "readers.json").read_text())
    assert data["class"] == "MEL" and data["model"]["accuracy"] == 1.0


@pytest.mark.parametrize(
    "lines, line, column, what",
    [
        (["reader_id,group,case_id,answer", "r1,spec,c999,BCC"], 2, "case_id", "unknown case id 'c999'"),
        (["reader_id,group,case_id,answer", "r1,spec,c0,BCC", "r1,spec,c1,melanoma"], 3, "answer",
         "'melanoma' is not a class name"),
        (["reader_id,group,case_id,answer", "r1,spec,c0,mel"], 2, "answer", "did you mean 'MEL'"),
        (["reader_id,group,case_id,answer", "r1,spec,c0,BCC", "", "r1,spec,c0,MEL"], 4, "case_id",
         "already answered case 'c0' on line 2"),
        (["reader_id,group,case_id,answer", "r1,spec,c0,BCC", "r1,resident,c1,MEL"], 3, "group",
         "group 'spec' on line 2"),
        (["reader_id,group,case_id,answer", "r1,spec,c0"], 2, None, "3 field(s), expected 4"),
        (["reader_id,group,case_id,answer", "r1, ,c0,BCC"], 2, "group", "empty value"),
        (["reader_id,group,case,answer", "r1,spec,c0,BCC"], 1, None, "missing column(s) ['case_id']"),
        (["reader_id,group,case_id,answer,note", "r1,s,c0,BCC,x"], 1, None, "unknown column(s) ['note']"),
    ],
)  # fmt: skip
def test_reader_csv_rejects_malformed_rows_naming_the_row(tmp_path, lines, line, column, what):
    path = _write(tmp_path / "readers.csv", lines)
    with pytest.raises(ReaderFileError) as e:
        read_reader_csv(path, CLASSES, [f"c{i}" for i in range(10)])
    message = str(e.value)
    assert message.startswith(f"{path}: line {line}")
    if column:
        assert f"column {column!r}" in message
    assert what in message


def test_answers_on_cases_the_predictions_lack_are_rejected_when_comparing(tmp_path):
    study = read_reader_csv(_write(tmp_path / "r.csv", [*GOOD, "r3,resident,c77,NEV"]), CLASSES)
    with pytest.raises(ReaderFileError, match="line 10, column 'case_id': unknown case id 'c77'"):
        compare_readers(_predictions(), study)


def test_reader_csv_rejects_an_empty_file_and_one_without_answers(tmp_path):
    with pytest.raises(ReaderFileError, match="empty file"):
        read_reader_csv(_write(tmp_path / "a.csv", []), CLASSES)
    with pytest.raises(ReaderFileError, match="no answers"):
        read_reader_csv(_write(tmp_path / "b.csv", ["reader_id,group,case_id,answer"]), CLASSES)


def test_analyze_readers_command(tmp_path, capsys):
    pred_csv = _predictions().to_csv(tmp_path / "predictions.csv")
    readers = _write(tmp_path / "readers.csv", GOOD)
    out = tmp_path / "out"
    args = ["analyze", "readers", "--predictions", str(pred_csv), "--readers", str(readers)]
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 readers in 2 group(s)" in text and "specialist" in text
    assert (out / "readers_roc.png").is_file() and (out / "reader_groups.csv").is_file()
    bad = _write(tmp_path / "bad.csv", [*GOOD, "r9,resident,c1,SCC"])
    assert (
        main(["analyze", "readers", "--predictions", str(pred_csv), "--readers", str(bad), "--out", str(out)])
        == 2
    )
    assert "line 10, column 'answer'" in capsys.readouterr().err


STAGED = [
    "reader_id,group,case_id,stage,answer",
    "r1,specialist,c0,C,MEL",  # wrong, then right with more to see
    "r1,specialist,c0,CM,BCC",
    "r1,specialist,c1,C,MEL",
    "r1,specialist,c1,CM,MEL",
    "r2,resident,c0,C,NEV",
    "r2,resident,c0,CM,NEV",
]


def test_reader_csv_with_a_stage_column(tmp_path):
    preds = _predictions()
    study = read_reader_csv(_write(tmp_path / "r.csv", STAGED), CLASSES, preds.case_ids)
    assert study.stages == ["C", "CM"]
    assert [a.stage for a in study.answers] == ["C", "CM", "C", "CM", "C", "CM"]
    with pytest.raises(ValueError, match=r"2 stages \['C', 'CM'\]; compare one stage at a time"):
        compare_readers(preds, study)
    c_only = compare_readers(preds, study.for_stage("C"))
    assert {r["reader_id"]: r["accuracy"] for r in c_only.reader_accuracy} == {"r1": 0.5, "r2": 0.0}
    with pytest.raises(ValueError, match=r"no answers at stage 'CDM'; the stages are \['C', 'CM'\]"):
        study.for_stage("CDM")

    from remixformer.explain.readers import compare_reader_stages

    cmp = compare_reader_stages(preds, study)
    rows = {(r["stage"], r["group"]): r for r in cmp.rows()}
    assert (
        rows["C", "specialist"]["mean_accuracy"] == 0.5 and rows["CM", "specialist"]["mean_accuracy"] == 1.0
    )
    assert rows["CM", "specialist"]["n_answers"] == 2 and rows["CM", "model"]["mean_accuracy"] == 1.0
    written = cmp.save(tmp_path / "out")
    assert {
        "reader_stages.csv",
        "readers_stages.png",
        "stage_C/readers_roc.png",
        "stage_CM/readers.json",
    } <= set(written)
    assert json.loads((tmp_path / "out" / "reader_stages.json").read_text())["stages"] == ["C", "CM"]


@pytest.mark.parametrize(
    "lines, line, column, what",
    [
        (["reader_id,group,case_id,stage,answer", "r1,s,c0,C,BCC", "r1,s,c0,C,MEL"], 3, "case_id",
         "already answered case 'c0' at stage 'C' on line 2"),
        (["reader_id,group,case_id,stage,answer", "r1,s,c0,,BCC"], 2, "stage", "empty value"),
    ],
)  # fmt: skip
def test_reader_csv_stage_errors(tmp_path, lines, line, column, what):
    path = _write(tmp_path / "readers.csv", lines)
    with pytest.raises(ReaderFileError) as e:
        read_reader_csv(path, CLASSES, [f"c{i}" for i in range(10)])
    assert str(e.value).startswith(f"{path}: line {line}, column {column!r}") and what in str(e.value)


def test_analyze_readers_command_by_stage(tmp_path, capsys):
    pred_csv = _predictions().to_csv(tmp_path / "predictions.csv")
    readers = _write(tmp_path / "readers.csv", STAGED)
    args = ["analyze", "readers", "--predictions", str(pred_csv), "--readers", str(readers)]
    assert main([*args, "--out", str(tmp_path / "all")]) == 0
    text = capsys.readouterr().out
    assert "2 stages" in text and "CM       specialist               100.0%" in text
    assert (tmp_path / "all" / "stage_CM" / "readers_roc.png").is_file()
    assert (tmp_path / "all" / "readers_stages.png").is_file()
    assert main([*args, "--stage", "C", "--out", str(tmp_path / "c")]) == 0
    assert "cases at stage C" in capsys.readouterr().out
    assert main([*args, "--stage", "D", "--out", str(tmp_path / "d")]) == 2
    assert "no answers at stage 'D'" in capsys.readouterr().err
