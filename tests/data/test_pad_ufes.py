import numpy as np
import pytest

from remixformer.config import from_dict
from remixformer.data import BadImageError, DataConfig, load_cases, load_dataset
from remixformer.data.splits import fold_assignment, split_indices


def _cfg(root, **kw):
    return from_dict(DataConfig, {"dataset": "pad_ufes20", "root": str(root), **kw})


def test_counts_groups_and_images_under_parts(pad_root):
    t = load_cases(_cfg(pad_root))
    assert len(t) == 24 and t.modalities == "CM" and not t.has_official_split
    assert t.class_counts() == {"ACK": 7, "BCC": 4, "MEL": 2, "NEV": 4, "SCC": 2, "SEK": 5, "unknown": 0}
    assert len(set(t.group_ids)) == 8  # patients, not the (repeating) lesion ids
    assert t.cases[0].clinical[0].endswith("images/imgs_part_1/PAT_0_70_0.png")
    assert t.cases[20].clinical[0].endswith("images/imgs_part_2/PAT_6_71_2.png")


def test_metadata_is_typed(pad_root):
    t = load_cases(_cfg(pad_root))
    m = t.cases[0].metadata
    assert m["smoke"] is False and m["drink"] is True and m["fitspatrick"] == 2.0 and m["age"] == 20.0
    assert m["itch"] is True and t.cases[2].metadata["itch"] is None  # "UNK" -> unknown
    assert t.cases[1].metadata["itch"] is False
    assert m["gender"] == "MALE" and m["region"] == "FACE" and isinstance(m["diameter_2"], float)
    blank = t.cases[6].metadata  # patient 2, ACK, not biopsied
    assert blank["smoke"] is None and blank["fitspatrick"] is None and blank["gender"] is None
    n_blank = sum(c.metadata["smoke"] is None for c in t.cases)
    assert n_blank == 12


def test_aliases_and_unseen_values_in_the_schema(pad_root):
    t = load_cases(_cfg(pad_root))
    sl = t.schema.field_slices()["background_father"]
    x = t.metadata_matrix()
    brazil = t.schema["background_father"].values.index("BRAZIL")
    assert x[5, sl][brazil] == 1  # BRASIL -> BRAZIL
    assert x[6, sl][-1] == 1  # CHINA -> unknown slot
    assert x[7, sl][-1] == 1  # blank -> unknown slot
    fitz = t.schema.field_slices()["fitspatrick"]
    assert t.schema["fitspatrick"].values[int(np.argmax(x[0, fitz]))] == "2"


def test_biopsed_is_excluded_unless_named(pad_root):
    t = load_cases(_cfg(pad_root))
    assert "biopsed" not in t.schema.field_names and "biopsed" not in t.cases[0].metadata
    t2 = load_cases(_cfg(pad_root, include_leaky_fields=["biopsed"]))
    assert t2.schema.field_names[-1] == "biopsed" and t2.cases[3].metadata["biopsed"] is True
    assert t2.leaky_fields_included == ["biopsed"]


def test_missing_images_error_or_skip_with_list(pad_root, caplog):
    with pytest.raises(BadImageError) as e:
        load_dataset(_cfg(pad_root))
    msg = str(e.value)
    assert "2 image file(s) of 2 case(s) are missing" in msg
    assert "case 'PAT_7_70_1' (metadata.csv line 24)" in msg and "PAT_7_71_2.png: file not found" in msg
    t = load_dataset(_cfg(pad_root, skip_bad_cases=True))
    assert len(t) == 22 and sorted(c for c, _ in t.skipped) == ["PAT_7_70_1", "PAT_7_71_2"]
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"][-1]
    assert "skipping 2 case(s)" in warning and "PAT_7_70_1, PAT_7_71_2" in warning


def test_a_metadata_only_model_needs_no_image(pad_root):
    t = load_dataset(_cfg(pad_root), modalities="M")
    assert len(t) == 24 and not t.skipped
    assert "clinical image files not checked: the model (M) does not read them" in t.notes
    with pytest.raises(BadImageError, match="2 image file"):
        load_dataset(_cfg(pad_root), modalities="CM")


def test_a_metadata_only_model_can_be_kept_on_the_cases_with_a_photo(pad_root):
    # the M model compared with C and CM models runs on their cases: those whose photo is there
    t = load_dataset(_cfg(pad_root, skip_bad_cases=True, check_images="C"), modalities="M")
    assert len(t) == 22 and sorted(c for c, _ in t.skipped) == ["PAT_7_70_1", "PAT_7_71_2"]
    with pytest.raises(ValueError, match="data.check_images: letters of C and D expected"):
        load_dataset(_cfg(pad_root, check_images="M"), modalities="M")


def test_grouped_folds_keep_patients_together(pad_root):
    t = load_cases(_cfg(pad_root))
    folds = fold_assignment(t, n_folds=4, seed=3)
    for g in set(t.group_ids):
        assert len(set(folds[t.group_ids == g])) == 1
    assert np.array_equal(folds, fold_assignment(t, n_folds=4, seed=3))
    s = split_indices(t, protocol="kfold", n_folds=4, fold=1, val_fraction=0.25, seed=3)
    assert sorted(s["train"] + s["val"] + s["test"]) == list(range(24))
    assert s["test"] == np.flatnonzero(folds == 1).tolist()
    with pytest.raises(ValueError, match="no official split"):
        split_indices(t, protocol="official")


def test_bad_label_and_blank_patient_name_the_line(pad_root):
    import pandas as pd

    meta = pad_root / "metadata.csv"
    df = pd.read_csv(meta, keep_default_na=False, dtype=str)
    df.loc[3, "diagnostic"] = "XYZ"
    df.to_csv(meta, index=False)
    with pytest.raises(ValueError, match=r"metadata\.csv line 5, column 'diagnostic': unknown value 'XYZ'"):
        load_cases(_cfg(pad_root))
    df.loc[3, "diagnostic"] = "ACK"
    df.loc[2, "smoke"] = "maybe"
    df.to_csv(meta, index=False)
    with pytest.raises(
        ValueError, match=r"line 4, column 'smoke': expected True, False or blank, got 'maybe'"
    ):
        load_cases(_cfg(pad_root))
