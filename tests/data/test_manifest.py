import json
import math

import numpy as np
import pandas as pd
import pytest

from remixformer.config import from_dict
from remixformer.data import DataConfig, load_dataset
from remixformer.data.splits import split_indices


def _cfg(root, **kw):
    return from_dict(DataConfig, {"dataset": "manifest", "root": str(root), **kw})


def test_cases_images_tasks_and_split_column(manifest_root):
    t = load_dataset(_cfg(manifest_root))
    assert len(t) == 8 and t.modalities == "CDM"
    assert [x.name for x in t.tasks] == ["diag", "pn", "attrs"] and t.tasks[2].kind == "multi"
    m2 = t.cases[2]
    assert [p.split("/")[-1] for p in m2.clinical] == ["c2a.png", "c2b.png"]
    assert m2.clinical[0].startswith(str(manifest_root))  # relative to the manifest's folder
    assert t.cases[3].clinical == [] and t.cases[4].dermoscopy == []
    assert t.class_counts() == {"BCC": 2, "MEL": 2, "NEV": 3, "unknown": 1}
    assert t.cases[2].targets["pn"] == -1
    assert t.targets_array("attrs")[1].tolist() == [1, 0, 1] and t.targets_array("attrs")[2].tolist() == [
        0,
        0,
        0,
    ]
    assert np.isnan(t.targets_array("attrs")[3]).all()
    s = split_indices(t)  # the split column wins
    assert s == {"train": [0, 1, 2], "val": [3, 4], "test": [5, 6, 7]}
    assert t.group_ids.tolist() == ["p0", "p0", "p1", "p2", "p3", "p4", "p4", "p5"]


def test_metadata_through_the_schema(manifest_root):
    t = load_dataset(_cfg(manifest_root))
    assert t.schema.field_names == ["sex", "age", "itch"]  # biopsy is marked leaky
    assert t.leaky_fields_available == ["biopsy"]
    x = t.metadata_matrix()
    sl = t.schema.field_slices()
    assert x[1, sl["sex"]].tolist() == [1, 0, 0]  # "male" matches "Male"
    assert x[3, sl["sex"]].tolist() == [0, 0, 1]  # "Other" is not in the schema -> unknown
    assert x[5, sl["sex"]].tolist() == [0, 0, 1]  # blank -> unknown
    assert x[0, sl["age"]].tolist() == [1, 0, 0, 0] and x[1, sl["age"]].tolist() == [0, 0, 1, 0]
    t2 = load_dataset(_cfg(manifest_root, include_leaky_fields=["biopsy"]))
    assert t2.schema.field_names[-1] == "biopsy" and t2.schema.dim == x.shape[1] + 3


def test_patient_in_two_splits_is_rejected(tmp_path, layouts):
    rows = [list(r) for r in layouts.MANIFEST_ROWS]
    rows[1][11] = "test"  # p0 now in train and test
    root = layouts.write_manifest(tmp_path / "m", rows=[tuple(r) for r in rows])
    with pytest.raises(
        ValueError,
        match=r"patient 'p0' is in split 'train' \(manifest.csv line 2\) and in split "
        r"'test' \(manifest.csv line 3\)",
    ):
        load_dataset(_cfg(root))


@pytest.mark.parametrize(
    ("column", "row", "value", "msg"),
    [
        (
            "diagnosis",
            2,
            "SCC",
            r"line 4, column 'diagnosis': unknown value 'SCC' for task 'diag'; expected one of",
        ),
        ("attrs", 0, "dots;spots", r"line 2, column 'attrs': unknown attribute\(s\) \['spots'\]"),
        ("split", 3, "holdout", r"line 5, column 'split': unknown value 'holdout'"),
        ("case_id", 4, "m0", r"case_id 'm0' repeats on lines \[2, 6\]"),
        ("split", 6, "", r"column 'split' is blank on line\(s\) \[8\]"),
    ],
)
def test_layout_errors_name_line_and_column(tmp_path, layouts, column, row, value, msg):
    root = layouts.write_manifest(tmp_path / "m")
    df = pd.read_csv(root / "manifest.csv", keep_default_na=False, dtype=str)
    df.loc[row, column] = value
    df.to_csv(root / "manifest.csv", index=False)
    with pytest.raises(ValueError, match=msg):
        load_dataset(_cfg(root))


def test_missing_metadata_column_and_bad_schema(tmp_path, layouts):
    root = layouts.write_manifest(tmp_path / "m")
    df = pd.read_csv(root / "manifest.csv", keep_default_na=False, dtype=str).drop(columns=["age"])
    df.to_csv(root / "manifest.csv", index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['age'\] for the metadata field"):
        load_dataset(_cfg(root))
    (root / "schema.json").write_text(json.dumps({"fields": [{"name": "age", "kind": "numeric"}]}))
    with pytest.raises(ValueError, match=r"schema\.json: fields\[0\] \('age'\): .*needs 'bins'"):
        load_dataset(_cfg(root))
    (root / "schema.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"schema\.json: not valid JSON"):
        load_dataset(_cfg(root))


def test_without_split_column_kfold_groups_patients(tmp_path, layouts):
    rows = [r[:11] + ("",) for r in layouts.MANIFEST_ROWS]
    root = layouts.write_manifest(tmp_path / "m", rows=rows)
    df = pd.read_csv(root / "manifest.csv", keep_default_na=False, dtype=str).drop(columns=["split"])
    df.to_csv(root / "manifest.csv", index=False)
    t = load_dataset(_cfg(root))
    assert not t.has_official_split
    s = split_indices(t, protocol="kfold", n_folds=2, fold=0, val_fraction=0.0, seed=1)
    train_groups = {t.cases[i].group_id for i in s["train"]}
    assert not train_groups & {t.cases[i].group_id for i in s["test"]}


def test_class_order_inferred_without_declared_tasks(tmp_path, layouts):
    schema = {k: v for k, v in layouts.MANIFEST_SCHEMA.items() if k != "tasks"}
    root = layouts.write_manifest(tmp_path / "m", schema=schema)
    t = load_dataset(_cfg(root))
    assert [x.name for x in t.tasks] == ["diag"] and t.tasks[0].classes == ("BCC", "MEL", "NEV")


def test_yaml_schema_and_explicit_paths(tmp_path, layouts):
    import yaml

    root = layouts.write_manifest(tmp_path / "m")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(layouts.MANIFEST_SCHEMA))
    t = load_dataset(
        _cfg(tmp_path / "elsewhere", manifest=str(root / "manifest.csv"), schema=str(tmp_path / "s.yaml"))
    )
    assert len(t) == 8 and math.isclose(t.metadata_matrix().sum(), 8 * 3)
