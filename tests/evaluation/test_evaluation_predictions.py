"""Predictions container: validation, case-level averaging, logits, and the per-case CSV."""

from __future__ import annotations

import numpy as np
import pytest

from remixformer.evaluation.predictions import Predictions, csv_header, infer_tasks
from remixformer.tasks import MULTI, TaskSpec

DIAG = TaskSpec("diag", ("BCC", "MEL", "seborrheic_keratosis"))
ATTRS = TaskSpec("attrs", ("PN", "STR"), kind=MULTI)


def _preds() -> Predictions:
    rng = np.random.default_rng(0)
    n = 6
    return Predictions(
        case_ids=["a", "b", "a", "c", "b", "a"],
        tasks=(DIAG, ATTRS),
        probs={"diag": rng.dirichlet(np.ones(3), n), "attrs": rng.uniform(size=(n, 2))},
        targets={
            "diag": np.array([1, -1, 1, 0, -1, 1]),
            "attrs": np.array([[1, np.nan], [0, 0], [1, np.nan], [np.nan, 1], [0, 0], [1, np.nan]]),
        },
    )


def test_aggregate_by_case_averages_in_first_seen_order():
    p = _preds()
    agg = p.aggregate_by_case()
    assert agg.case_ids == ["a", "b", "c"]
    np.testing.assert_allclose(agg.probs["diag"][0], p.probs["diag"][[0, 2, 5]].mean(axis=0))
    np.testing.assert_allclose(agg.probs["attrs"][1], p.probs["attrs"][[1, 4]].mean(axis=0))
    np.testing.assert_array_equal(agg.targets["diag"], [1, -1, 0])
    np.testing.assert_array_equal(agg.targets["attrs"], [[1, np.nan], [0, 0], [np.nan, 1]])
    assert agg.aggregate_by_case() is agg  # already one row per case


def test_aggregate_rejects_conflicting_targets():
    p = _preds()
    p.targets["diag"][2] = 2
    with pytest.raises(ValueError, match="case 'a'"):
        p.aggregate_by_case()


def test_csv_round_trip_is_exact(tmp_path):
    p = _preds().aggregate_by_case()
    path = p.to_csv(tmp_path / "predictions.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header == [
        "case_id",
        "diag_true",
        "diag_prob_BCC",
        "diag_prob_MEL",
        "diag_prob_seborrheic_keratosis",
        "attrs_true_PN",
        "attrs_true_STR",
        "attrs_prob_PN",
        "attrs_prob_STR",
    ]
    assert path.read_text().splitlines()[2].startswith("b,,")  # unknown diagnosis is empty
    for back in (Predictions.read_csv(path, p.tasks), Predictions.read_csv(path)):
        assert back.tasks == p.tasks
        assert back.case_ids == p.case_ids
        for t in ("diag", "attrs"):
            np.testing.assert_array_equal(back.probs[t], p.probs[t])  # bit-exact
            np.testing.assert_array_equal(back.targets[t], p.targets[t])


def test_infer_tasks_from_header():
    assert infer_tasks(csv_header((DIAG, ATTRS))) == (DIAG, ATTRS)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda rows: rows[1].__setitem__(1, "NEV"), r"row 2, column 'diag_true'"),
        (lambda rows: rows[2].__setitem__(3, "x"), r"row 3, column 'diag_prob_MEL'"),
        (lambda rows: rows[1].__setitem__(5, "2"), r"expected 0, 1 or empty"),
        (lambda rows: rows[0].__setitem__(2, "diag_prob_NEV"), r"missing \['diag_prob_BCC'\]"),
    ],
)
def test_read_csv_errors_name_row_and_column(tmp_path, edit, match):
    path = _preds().aggregate_by_case().to_csv(tmp_path / "p.csv")
    rows = [line.split(",") for line in path.read_text().splitlines()]
    edit(rows)
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    with pytest.raises(ValueError, match=match):
        Predictions.read_csv(path, (DIAG, ATTRS))


def test_from_logits_softmax_and_sigmoid():
    logits = {"diag": np.array([[0.0, 0.0, np.log(2.0)]]), "attrs": np.array([[0.0, -800.0]])}
    p = Predictions.from_logits(["x"], (DIAG, ATTRS), logits, {"diag": [2]})
    np.testing.assert_allclose(p.probs["diag"], [[0.25, 0.25, 0.5]])
    np.testing.assert_allclose(p.probs["attrs"], [[0.5, 0.0]])
    assert p.targets["diag"].tolist() == [2] and np.isnan(p.targets["attrs"]).all()


def test_concatenate_and_select():
    p = _preds()
    both = Predictions.concatenate([p.select(slice(0, 2)), p.select(slice(2, None))])
    assert both.case_ids == p.case_ids
    np.testing.assert_array_equal(both.probs["diag"], p.probs["diag"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probs": {"diag": np.ones((2, 2))}}, r"must be \(2, 3\)"),
        ({"targets": {"diag": np.array([0, 3])}}, r"targets must be in \[0, 3\)"),
        ({"targets": {"other": np.array([0, 1])}}, "unknown task 'other'"),
    ],
)
def test_validation(kwargs, match):
    base = {"case_ids": ["a", "b"], "tasks": (DIAG,), "probs": {"diag": np.full((2, 3), 1 / 3)}}
    with pytest.raises(ValueError, match=match):
        Predictions(**{**base, **kwargs})


def test_from_logits_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    logits = torch.zeros(2, 3, dtype=torch.bfloat16, requires_grad=True)
    p = Predictions.from_logits(["x", "y"], (DIAG,), {"diag": logits}, {"diag": torch.tensor([0, -1])})
    np.testing.assert_allclose(p.probs["diag"], np.full((2, 3), 1 / 3))
    assert p.targets["diag"].tolist() == [0, -1]
