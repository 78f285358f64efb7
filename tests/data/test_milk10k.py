"""MILK10k: the loader on a tiny copy of the official layout (tests/milk10k_layout.py), lesion-grouped
splits, the answer fields of the Supplement, the benchmark, and a metadata-only model without images."""

import csv

import numpy as np
import pytest
from milk10k_layout import BENCHMARK_IDS, CLASSES, TRAIN_IDS, isic_ids, label_of, monet_scores, write_milk10k

from remixformer.cli.main import main
from remixformer.config import from_dict
from remixformer.data import BadImageError, DataConfig, load_cases, load_dataset
from remixformer.data.check import check_dataset
from remixformer.data.datasets import milk10k
from remixformer.data.splits import check_disjoint_groups, fold_assignment, split_indices


def _cfg(root, **kw):
    return from_dict(DataConfig, {"dataset": "milk10k", "root": str(root), **kw})


@pytest.fixture
def milk_root(tmp_path):
    return write_milk10k(tmp_path / "milk10k")


def test_one_case_per_lesion_with_its_clinical_and_dermoscopy_image(tmp_path):
    root = write_milk10k(tmp_path / "m", images=True)
    t = load_dataset(_cfg(root))
    assert len(t) == 44 and t.modalities == "CDM" and t.tasks[0].classes == CLASSES
    assert t.case_ids == TRAIN_IDS and list(t.group_ids) == TRAIN_IDS
    assert t.class_counts() == {**{c: 4 for c in CLASSES}, "unknown": 0}
    assert not t.has_official_split
    for c in t.cases:  # odd lesions list their dermoscopic row first: the type decides, not the order
        ids = isic_ids(c.case_id)
        assert c.clinical == [
            str(root / "MILK10k_Training_Input" / c.case_id / f"{ids['clinical: close-up']}.jpg")
        ]
        assert c.dermoscopy == [
            str(root / "MILK10k_Training_Input" / c.case_id / f"{ids['dermoscopic']}.jpg")
        ]
        assert c.targets["diag"] == label_of(c.case_id)
    assert "88 of 88 images referenced by MILK10k_Training_Metadata.csv were found" in t.notes[0]


def test_images_also_one_folder_deeper_as_the_archive_unpacks(tmp_path):
    root = write_milk10k(tmp_path / "m", images=True, nested=True)
    t = load_dataset(_cfg(root))
    deeper = root / "MILK10k_Training_Input" / "MILK10k_Training_Input"
    assert t.cases[0].clinical[0].startswith(str(deeper))
    bench = load_dataset(from_dict(DataConfig, {"dataset": "milk10k_benchmark", "root": str(root)}))
    assert bench.cases[0].dermoscopy[0].startswith(str(root / "MILK10k_Test_Input" / "MILK10k_Test_Input"))


def test_metadata_fields_and_monet_switch(milk_root):
    t = load_cases(_cfg(milk_root))
    names = t.schema.field_names
    assert names[:6] == [
        "age_approx",
        "sex",
        "skin_tone_class",
        "site",
        "clinical_image_manipulation",
        "dermoscopic_image_manipulation",
    ]
    assert len(names) == 6 + 14 and t.schema.dim == 126
    assert names[6] == "clinical_MONET_ulceration_crust" and names[-1].startswith("dermoscopic_MONET_skin")
    m = t.cases[1].metadata  # IL_T01: its dermoscopic row comes first in the file
    assert m["age_approx"] == 25.0 and m["sex"] == "male" and m["skin_tone_class"] == 1.0
    assert m["site"] == "trunk"
    assert m["dermoscopic_MONET_hair"] == monet_scores("IL_T01", "dermoscopic")[1]
    assert m["clinical_MONET_hair"] == monet_scores("IL_T01", "clinical: close-up")[1]
    assert t.cases[5].metadata["clinical_image_manipulation"] == "altered"
    assert t.cases[5].metadata["dermoscopic_image_manipulation"] == "instrument only"
    blank = t.cases[4].metadata
    assert blank["age_approx"] is None and blank["site"] is None
    # every value is inside the schema (blanks aside), and MONET scores are interpolated, not binned
    x = t.metadata_matrix()
    assert np.allclose(x.sum(1), len(names))
    sl = t.schema.field_slices()["clinical_MONET_hair"]
    score = monet_scores("IL_T00", "clinical: close-up")[1]
    assert np.isclose(x[0, sl][:5] @ np.array(milk10k.MONET_KNOTS), score)
    without = load_cases(_cfg(milk_root, monet=False))
    assert without.schema.field_names == names[:6] and without.schema.dim == 42
    assert "MONET" not in " ".join(without.cases[0].metadata)
    assert "MONET concept scores left out of the metadata (data.monet=false)" in without.notes


def test_supplement_fields_are_answers_never_inputs(milk_root):
    t = load_cases(_cfg(milk_root))
    assert set(t.answer_fields) == {"diagnosis_full", "diagnosis_confirm_type", "invasion_thickness_interval"}
    assert not set(t.answer_fields) & set(t.schema.field_names)
    assert "11 values, 11 of them within a single class" in t.answer_fields["diagnosis_full"]
    assert "Cramér's V 1.00" in t.answer_fields["diagnosis_confirm_type"]  # NV alone is not histopathology
    assert "lesions by class: MEL 4" in t.answer_fields["invasion_thickness_interval"]
    assert t.summary()["answer_fields"] == t.answer_fields
    report = check_dataset(_cfg(milk_root), verify_images=False)
    answers = [s for s in report.leakage if "are answers" in s]
    assert len(answers) == 1 and "never includable" in answers[0] and "diagnosis_confirm_type" in answers[0]
    with pytest.raises(ValueError, match="the Supplement's fields are the answer"):
        load_cases(_cfg(milk_root, include_leaky_fields=["diagnosis_confirm_type"]))
    plain = load_cases(_cfg(write_milk10k(milk_root.parent / "plain", supplement=False)))
    assert not plain.answer_fields and any("Supplement.csv not found" in n for n in plain.notes)


def test_folds_and_splits_are_grouped_by_lesion_and_stratified(milk_root):
    t = load_cases(_cfg(milk_root))
    folds = fold_assignment(t, n_folds=4, seed=0)
    labels = t.labels()
    for k in range(4):  # 4 lesions per class, 4 folds: one of each class in every fold
        assert sorted(labels[folds == k].tolist()) == list(range(11))
    s = split_indices(t, protocol="kfold", n_folds=4, fold=2, val_fraction=0.34, seed=0)
    assert sorted(s["train"] + s["val"] + s["test"]) == list(range(44))
    assert s["test"] == np.flatnonzero(folds == 2).tolist()
    assert sorted(labels[s["val"]].tolist()) == list(range(11))  # the carve-out is stratified too
    check_disjoint_groups(t, s)
    # both images of a lesion live in its one case: no image is on two sides
    side = {
        p: name for name, idx in s.items() for i in idx for p in t.cases[i].clinical + t.cases[i].dermoscopy
    }
    assert len(side) == 88


def test_benchmark_has_inputs_and_no_labels(milk_root):
    b = load_cases(from_dict(DataConfig, {"dataset": "milk10k_benchmark", "root": str(milk_root)}))
    assert b.case_ids == BENCHMARK_IDS and b.name == "milk10k_benchmark"
    assert (b.labels() == -1).all() and b.has_official_split and {c.split for c in b.cases} == {"test"}
    assert b.schema == load_cases(_cfg(milk_root)).schema  # the model trained on milk10k reads it
    s = split_indices(b)
    assert s == {"train": [], "val": [], "test": [0, 1, 2, 3]}


def test_a_metadata_only_model_needs_no_image_and_image_models_name_what_is_missing(milk_root):
    t = load_dataset(_cfg(milk_root), modalities="M")
    assert len(t) == 44 and any("a metadata-only model (M) needs none" in n for n in t.notes)
    assert "clinical and dermoscopy image files not checked: the model (M) does not read them" in t.notes
    with pytest.raises(BadImageError) as e:
        load_dataset(_cfg(milk_root), modalities="CDM")
    msg = str(e.value)
    assert "88 image file(s) of 44 case(s) are missing" in msg
    first = isic_ids("IL_T00")["clinical: close-up"]
    assert "case 'IL_T00' (MILK10k_Training_Metadata.csv lines 2 and 3): " in msg and first in msg


def test_data_check_prints_counts_answers_and_missing_images(milk_root, capsys):
    code = main(["-q", "data", "check", "--dataset", "milk10k", "--root", str(milk_root), "--n-folds", "4"])
    out = capsys.readouterr().out
    assert code == 1  # the images are not there
    assert "data set milk10k: 44 cases, modalities CDM" in out and "metadata: 126 one-hot slots" in out
    assert "4-fold, stratified by diagnosis, grouped (44 groups of 44 cases)" in out
    assert "age_approx: 1 blank" in out and "site: 1 blank" in out
    assert "are answers, excluded from the inputs and never includable" in out
    assert "88 image file(s) of 44 case(s) missing" in out and "modalities M, needs none of them" in out


def _rewrite(path, edit):
    rows = list(csv.reader(path.open()))
    edit(rows)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        (
            "MILK10k_Training_Metadata.csv",
            lambda rows: rows[3].__setitem__(1, "clinical: overview"),
            r"MILK10k_Training_Metadata.csv line 4, column 'image_type': unknown value 'clinical: overview'",
        ),
        (
            "MILK10k_Training_Metadata.csv",
            lambda rows: rows[2].__setitem__(1, rows[1][1]),
            r"line 3, column 'image_type': lesion 'IL_T00' already has a 'clinical: close-up' image "
            r"\(line 2\)",
        ),
        (
            "MILK10k_Training_GroundTruth.csv",
            lambda rows: rows[5].__setitem__(3, "1.0"),
            r"MILK10k_Training_GroundTruth.csv line 6: expected exactly one 1 among",
        ),
        (
            "MILK10k_Training_GroundTruth.csv",
            lambda rows: rows.append(["IL_X99", *(["1.0"] + ["0.0"] * 10)]),
            r"GroundTruth.csv line 46, column 'lesion_id': lesion 'IL_X99' has no image in "
            r"MILK10k_Training_Metadata.csv",
        ),
        (
            "MILK10k_Training_Metadata.csv",
            lambda rows: rows[2].__setitem__(14, "high"),
            r"Metadata.csv line 3, column 'MONET_pigmented': expected a number or blank, got 'high'",
        ),
        (
            "MILK10k_Training_Metadata.csv",
            lambda rows: [r.pop(5) for r in rows],
            r"missing column\(s\) \['image_manipulation'\]",
        ),
    ],
)
def test_layout_errors_name_the_file_line_and_column(milk_root, file, edit, message):
    _rewrite(milk_root / file, edit)
    with pytest.raises(ValueError, match=message):
        load_cases(_cfg(milk_root))


def test_a_score_outside_its_range_is_reported_by_data_check(milk_root):
    _rewrite(milk_root / "MILK10k_Training_Metadata.csv", lambda rows: rows[1].__setitem__(10, "1.7"))
    report = check_dataset(_cfg(milk_root), verify_images=False)
    assert report.unseen == {"clinical_MONET_ulceration_crust": {"1.7": 1}} and not report.ok
    assert report.unseen_where["clinical_MONET_ulceration_crust"]["1.7"] == [
        "MILK10k_Training_Metadata.csv lines 2 and 3"
    ]
