import numpy as np
import pandas as pd
import pytest

from remixformer.data.cases import Case, CaseTable
from remixformer.data.config import DataConfig
from remixformer.data.splits import (
    assign_folds,
    check_disjoint_groups,
    fold_assignment,
    read_splits,
    split_indices,
    write_splits,
)
from remixformer.schema import MetadataSchema
from remixformer.tasks import TaskSpec


@pytest.fixture
def table():
    """300 cases of 120 patients (1-4 cases each), 3 imbalanced classes."""
    rng = np.random.default_rng(0)
    cases = []
    for p in range(120):
        for _k in range(int(rng.integers(1, 5))):
            y = int(rng.choice(3, p=[0.6, 0.3, 0.1]))
            cases.append(Case(f"c{len(cases)}", f"p{p}", {"diag": y}))
    return CaseTable("toy", cases[:300], (TaskSpec("diag", ("a", "b", "c")),), MetadataSchema([]), "C")


def _groups_of(table, idx):
    return {table.cases[i].group_id for i in idx}


def test_folds_are_grouped_stratified_and_reproducible(table):
    folds = fold_assignment(table, n_folds=5, seed=7)
    assert set(folds.tolist()) == set(range(5))
    for g in set(table.group_ids.tolist()):
        assert len(set(folds[table.group_ids == g].tolist())) == 1
    assert np.array_equal(folds, fold_assignment(table, n_folds=5, seed=7))
    assert not np.array_equal(folds, fold_assignment(table, n_folds=5, seed=8))
    labels = table.labels()
    overall = np.bincount(labels, minlength=3) / len(labels)
    for k in range(5):
        share = np.bincount(labels[folds == k], minlength=3) / (folds == k).sum()
        assert np.abs(share - overall).max() < 0.08


@pytest.mark.parametrize("fold", [0, 3])
def test_kfold_splits_partition_cases_and_never_share_a_group(table, fold):
    s = split_indices(table, protocol="kfold", n_folds=5, fold=fold, val_fraction=0.15, seed=1)
    all_idx = s["train"] + s["val"] + s["test"]
    assert sorted(all_idx) == list(range(len(table)))
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not _groups_of(table, s[a]) & _groups_of(table, s[b])
    assert s["test"] == np.flatnonzero(fold_assignment(table, 5, 1) == fold).tolist()
    assert 0.09 < len(s["val"]) / (len(s["train"]) + len(s["val"])) < 0.2
    assert s == split_indices(table, protocol="kfold", n_folds=5, fold=fold, val_fraction=0.15, seed=1)


def test_every_fold_is_test_once(table):
    tests = [split_indices(table, "kfold", 4, k, 0.0, 2)["test"] for k in range(4)]
    assert sorted(sum(tests, [])) == list(range(len(table)))


def test_check_disjoint_groups_catches_straddling(table):
    i, j = next(
        (i, i + 1) for i in range(len(table) - 1) if table.cases[i].group_id == table.cases[i + 1].group_id
    )
    g = table.cases[i].group_id
    with pytest.raises(
        ValueError, match=f"group \\(patient/lesion\\) '{g}' has cases in both train and test"
    ):
        check_disjoint_groups(table, {"train": [i], "test": [j]})
    check_disjoint_groups(table, {"train": [i, j]})  # the same group in one split is fine
    with pytest.raises(ValueError, match="case 'c5' is in both train and val"):
        check_disjoint_groups(table, {"train": [5], "val": [5]})


def test_official_split_with_carved_validation(table):
    for i, c in enumerate(table.cases):
        c.split = "test" if i % 5 == 0 else "train"
    # groups must not straddle official splits: make the test split whole patients
    test_groups = {c.group_id for c in table.cases if c.split == "test"}
    for c in table.cases:
        c.split = "test" if c.group_id in test_groups else "train"
    s = split_indices(table, protocol="auto", val_fraction=0.2, seed=0)
    assert s["test"] == [i for i, c in enumerate(table.cases) if c.split == "test"]
    assert s["val"] and not _groups_of(table, s["train"]) & _groups_of(table, s["val"])


def test_write_and_read_splits(table, tmp_path):
    s = split_indices(table, "kfold", 5, 2, 0.15, 0)
    folds = fold_assignment(table, 5, 0)
    path = write_splits(table, s, tmp_path / "run", folds=folds)
    df = pd.read_csv(path)
    assert list(df.columns) == ["case_id", "group_id", "split", "fold"] and len(df) == len(table)
    assert set(df.loc[df["split"] == "test", "fold"]) == {2}
    assert read_splits(table, path) == {k: sorted(v) for k, v in s.items()}
    cfg = DataConfig(protocol="kfold", n_folds=5, fold=2, seed=0)
    again = pd.read_csv(write_splits(table, s, tmp_path / "run2", cfg=cfg))
    assert again.equals(df)


def test_assign_folds_needs_enough_groups():
    with pytest.raises(ValueError, match="cannot make 5 grouped folds from only 3 groups"):
        assign_folds([0, 1, 0, 1], ["a", "b", "c", "a"], 5, 0)
