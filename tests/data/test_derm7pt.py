from collections import Counter

import pandas as pd
import pytest

from remixformer.config import from_dict
from remixformer.data import DataConfig, load_dataset
from remixformer.data.splits import split_indices


def _cfg(root, **kw):
    return from_dict(DataConfig, {"dataset": "derm7pt", "root": str(root), **kw})


def test_counts_tasks_and_official_split(derm7pt_root, layouts):
    t = load_dataset(_cfg(derm7pt_root))
    assert len(t) == 30 and t.modalities == "CDM"
    assert [x.name for x in t.tasks] == ["diag", "pn", "bwv", "vs", "pig", "str", "dag", "rs"]
    assert t.tasks[0].classes == ("BCC", "NEV", "MEL", "MISC", "SK")
    assert t.class_counts() == {**Counter(layouts.DERM7PT_DIAG_GROUP * 3), "unknown": 0}
    assert Counter(c.split for c in t.cases) == {"train": 12, "val": 8, "test": 10}
    s = split_indices(t)  # auto -> official
    assert {k: len(v) for k, v in s.items()} == {"train": 12, "val": 8, "test": 10}


def test_criteria_grouping(derm7pt_root):
    t = load_dataset(_cfg(derm7pt_root))
    raw = pd.read_csv(derm7pt_root / "release_v0" / "meta" / "meta.csv")
    vs = {"absent": "ABS", "arborizing": "REG", "comma": "REG", "dotted": "IR", "linear irregular": "IR"}
    rs = {"absent": "ABS", "blue areas": "PRS", "white areas": "PRS", "combinations": "PRS"}
    pig = {"absent": "ABS", "diffuse regular": "REG", "localized irregular": "IR", "diffuse irregular": "IR"}
    for case, (_, row) in zip(t.cases, raw.iterrows()):
        assert t.task("vs").classes[case.targets["vs"]] == vs[row["vascular_structures"]]
        assert t.task("rs").classes[case.targets["rs"]] == rs[row["regression_structures"]]
        assert t.task("pig").classes[case.targets["pig"]] == pig[row["pigmentation"]]


def test_the_nine_clinical_copies_have_no_clinical_image(derm7pt_root, layouts):
    t = load_dataset(_cfg(derm7pt_root))
    copies = {str(i + 1) for rows in layouts.DERM7PT_COPIES.values() for i in rows}
    without = {c.case_id for c in t.cases if not c.clinical}
    assert len(copies) == 9 and without == copies
    assert all(len(c.dermoscopy) == 1 for c in t.cases)
    assert int(t.has_modality("C").sum()) == 21
    assert any("9 case(s) whose clinical photo is a copy" in n for n in t.notes)


def test_paths_keep_their_letter_case(derm7pt_root):
    t = load_dataset(_cfg(derm7pt_root))
    assert t.cases[1].clinical[0].endswith("Fbl/c001.JPG") and t.cases[0].clinical[0].endswith("Aal/C000.JPG")


def test_leaky_fields_excluded_by_default_and_included_by_name(derm7pt_root):
    t = load_dataset(_cfg(derm7pt_root))
    assert t.schema.field_names == ["sex", "location", "elevation"]
    assert "management" not in t.cases[0].metadata
    assert t.leaky_fields_included == [] and "warning" not in t.summary()
    t2 = load_dataset(_cfg(derm7pt_root, include_leaky_fields=["management"]))
    assert t2.schema.field_names == ["sex", "location", "elevation", "management"]
    assert t2.leaky_fields_included == ["management"]
    assert "LEAKAGE" in t2.summary()["warning"] and "management" in t2.summary()["warning"]
    with pytest.raises(ValueError, match="include_leaky_fields names \\['age'\\]"):
        load_dataset(_cfg(derm7pt_root, include_leaky_fields=["age"]))


def test_unknown_label_names_file_line_and_column(derm7pt_root):
    meta = derm7pt_root / "release_v0" / "meta" / "meta.csv"
    df = pd.read_csv(meta, keep_default_na=False)
    df.loc[4, "streaks"] = "wavy"
    df.to_csv(meta, index=False)
    with pytest.raises(
        ValueError, match=r"meta\.csv line 6, column 'streaks': unknown value 'wavy'; expected one of"
    ):
        load_dataset(_cfg(derm7pt_root))


def test_missing_column_and_bad_index_are_reported(derm7pt_root):
    meta_dir = derm7pt_root / "release_v0" / "meta"
    original = pd.read_csv(meta_dir / "test_indexes.csv")
    val_row = int(pd.read_csv(meta_dir / "valid_indexes.csv")["indexes"][0])
    pd.DataFrame({"indexes": [*original["indexes"][:1], 99]}).to_csv(
        meta_dir / "test_indexes.csv", index=False
    )
    with pytest.raises(ValueError, match=r"test_indexes\.csv line 3, column 'indexes': row 99 is outside"):
        load_dataset(_cfg(derm7pt_root))
    pd.DataFrame({"indexes": [val_row]}).to_csv(meta_dir / "test_indexes.csv", index=False)
    with pytest.raises(
        ValueError, match=rf"test_indexes\.csv line 2, column 'indexes': row {val_row} is already in"
    ):
        load_dataset(_cfg(derm7pt_root))
    df = pd.read_csv(meta_dir / "meta.csv").drop(columns=["derm"])
    df.to_csv(meta_dir / "meta.csv", index=False)
    with pytest.raises(ValueError, match=r"meta\.csv: missing column\(s\) \['derm'\]"):
        load_dataset(_cfg(derm7pt_root))


def test_root_may_be_release_folder_and_wrong_root_is_explained(derm7pt_root, tmp_path):
    assert len(load_dataset(_cfg(derm7pt_root / "release_v0"))) == 30
    with pytest.raises(ValueError, match="no meta/meta.csv under"):
        load_dataset(_cfg(tmp_path))
