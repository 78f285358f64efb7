"""benchmarks/pad_pen_marks.py on a hand-made two-fold run: exact counts and probabilities."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

MARKS = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "pad_ufes20_pen_marks.csv"


@pytest.fixture(scope="module")
def pen(load_script):
    return load_script("pad_pen_marks")


def _write_fold(run: Path, k: int, rows: list[tuple[str, str, list[float]]]) -> None:
    d = run / f"fold_{k}" / "eval" / "test"
    d.mkdir(parents=True)
    classes = ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"]
    df = pd.DataFrame(
        [
            {"case_id": c, "diag_true": t, **{f"diag_prob_{n}": p for n, p in zip(classes, probs)}}
            for c, t, probs in rows
        ]
    )
    df.to_csv(d / "predictions.csv", index=False)


def test_shortcut_check_counts_and_probabilities(pen, tmp_path):
    marks = tmp_path / "marks.csv"
    pd.DataFrame(
        {
            "img_id": ["a.png", "b.png", "c.png", "d.png", "e.png"],
            "pen_mark": [1, 0, 1, 0, 1],
            "diagnostic": ["NEV", "NEV", "BCC", "ACK", "SEK"],
        }
    ).to_csv(marks, index=False)
    run = tmp_path / "pad_C"
    # a: marked NEV, P(biopsied) 0.7, wrong; b: unmarked NEV, 0.2, right; c: marked BCC, right
    _write_fold(run, 0, [("a", "NEV", [0, 0.5, 0.1, 0.3, 0.1, 0]), ("b", "NEV", [0.1, 0.1, 0, 0.7, 0.1, 0])])
    _write_fold(run, 1, [("c", "BCC", [0, 0.9, 0, 0.1, 0, 0]), ("d", "ACK", [0.6, 0.2, 0, 0, 0.2, 0])])
    # e (listed) has no prediction: left out of the join
    m = pen.load_marks(marks)
    shares = pen.class_shares(m)
    assert shares["NEV"] == {"photos": 2, "marked": 1, "share": 0.5}
    r = pen.shortcut_check(pen.out_of_fold_predictions(run), m)
    assert r["listed_photos_with_prediction"] == 4
    assert (r["n_marked"], r["n_unmarked"]) == (2, 2)
    assert r["accuracy_marked"] == pytest.approx(0.5)
    assert r["accuracy_unmarked"] == pytest.approx(1.0)
    assert r["p_biopsied_on_ACK_NEV_SEK_marked"] == pytest.approx(0.7)
    assert r["p_biopsied_on_ACK_NEV_SEK_unmarked"] == pytest.approx((0.2 + 0.4) / 2)


def test_a_case_in_two_test_folds_is_refused(pen, tmp_path):
    run = tmp_path / "run"
    _write_fold(run, 0, [("a", "NEV", [0, 0, 0, 1, 0, 0])])
    _write_fold(run, 1, [("a", "NEV", [0, 0, 0, 1, 0, 0])])
    with pytest.raises(SystemExit, match="two test folds"):
        pen.out_of_fold_predictions(run)


def test_the_repository_list_is_well_formed(pen):
    m = pen.load_marks(MARKS)
    assert len(m) == 169 and int(m["pen_mark"].sum()) == 39
    assert set(m["pen_mark"]) == {0, 1} and not m.index.duplicated().any()
