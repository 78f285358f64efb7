import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from remixformer.config import from_dict
from remixformer.data import DataConfig, load_cases, load_dataset
from remixformer.data.splits import fold_assignment, split_indices


def _cfg(name, root, **kw):
    return from_dict(DataConfig, {"dataset": name, "root": str(root), **kw})


def test_isic2017_official_split_metadata_and_superpixel_attributes(isic2017_root):
    t = load_dataset(_cfg("isic2017", isic2017_root))
    assert len(t) == 12 and t.modalities == "DM"
    assert Counter(c.split for c in t.cases) == {"train": 6, "val": 3, "test": 3}
    assert t.class_counts() == {"melanoma": 4, "seborrheic_keratosis": 4, "nevus": 4, "unknown": 0}
    assert [x.name for x in t.tasks] == ["diag", "attributes"] and t.tasks[1].kind == "multi"
    assert t.tasks[1].classes == ("pigment_network", "negative_network", "streaks", "milia_like_cyst")
    a = t.targets_array("attributes")
    assert a[:4].tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]]
    assert np.isnan(a[4:]).all()
    assert not any("superpixels" in c.dermoscopy[0] for c in t.cases)
    assert t.cases[1].metadata == {"age": "unknown", "sex": "female"}
    sl = t.schema.field_slices()["age"]
    assert t.metadata_matrix()[1, sl][-1] == 1  # "unknown" -> unknown slot
    assert load_cases(_cfg("isic2017", isic2017_root, attributes=False)).tasks[-1].name == "diag"


def test_isic2018_ham_training_official_validation_test_and_masks(isic2018_root):
    t = load_dataset(_cfg("isic2018", isic2018_root))
    assert Counter(c.split for c in t.cases) == {"train": 12, "val": 3, "test": 4}
    train = [i for i, c in enumerate(t.cases) if c.split == "train"]
    assert t.class_counts(indices=train) == {
        "MEL": 3,
        "NV": 2,
        "BCC": 1,
        "AKIEC": 1,
        "BKL": 1,
        "DF": 1,
        "VASC": 1,
        "unknown": 2,
    }
    ham = [c for c in t.cases if c.source.startswith("HAM10000")]
    assert len(ham) == 10 and len({c.group_id for c in ham}) == 7  # 3 rows repeat a lesion
    assert t.schema.field_names == ["age", "sex", "localization"]  # dx_type leaks the label
    assert t.cases[0].metadata == {"age": 45.0, "sex": "male", "localization": "back"}
    a = t.targets_array("attributes")
    attrs = t.tasks[1].classes
    assert a[t.index_of("ISIC_0024306")].tolist() == [float(x == "pigment_network") for x in attrs]
    extra = t.cases[t.index_of("ISIC_0000000")]
    assert extra.targets["diag"] == -1 and extra.split == "train"
    assert a[t.index_of("ISIC_0000000")].tolist() == [float(x in ("globules", "streaks")) for x in attrs]
    assert np.isnan(a[t.index_of("ISIC_0034321")]).all()
    val = [c for c in t.cases if c.split == "val"]
    assert [c.targets["diag"] for c in val] == [1, 0, 4] and all(c.metadata == {} for c in val)
    t2 = load_cases(_cfg("isic2018", isic2018_root, include_leaky_fields=["dx_type"], attributes=False))
    assert (
        t2.schema.field_names[-1] == "dx_type" and len(t2) == 17 and t2.leaky_fields_included == ["dx_type"]
    )


def test_isic2019_counts_downsampled_ids_and_lesion_groups(isic2019_root):
    t = load_dataset(_cfg("isic2019", isic2019_root))
    assert len(t) == 12 and not t.has_official_split
    assert t.class_counts() == {
        "MEL": 3,
        "NV": 4,
        "BCC": 1,
        "AK": 1,
        "BKL": 1,
        "DF": 1,
        "VASC": 0,
        "SCC": 1,
        "unknown": 0,
    }
    down = [c for c in t.cases if c.case_id.endswith("_downsampled")]
    assert len(down) == 3 and all(c.dermoscopy[0].endswith("_downsampled.jpg") for c in down)
    assert all(c.group_id == c.case_id for c in down)  # no lesion_id: grouped by image
    groups = Counter(t.group_ids.tolist())
    assert groups["IL_1"] == 3 and groups["IL_2"] == 2 and len(groups) == 9
    assert t.cases[1].metadata == {"age_approx": None, "anatom_site_general": "head/neck", "sex": "female"}
    folds = fold_assignment(t, n_folds=3, seed=0)
    for g in groups:
        assert len(set(folds[t.group_ids == g])) == 1
    with pytest.raises(ValueError, match="no official split"):
        split_indices(t, protocol="official")


def test_isic2019_row_that_is_not_one_hot(isic2019_root):
    gt = isic2019_root / "ISIC_2019_Training_GroundTruth.csv"
    df = pd.read_csv(gt)
    df.loc[2, "MEL"] = 1
    df.to_csv(gt, index=False)
    with pytest.raises(ValueError, match=r"GroundTruth\.csv line 4: expected exactly one 1 among"):
        load_cases(_cfg("isic2019", isic2019_root))


def test_isic2019_missing_metadata_file_falls_back_to_images(isic2019_root):
    (isic2019_root / "ISIC_2019_Training_Metadata.csv").unlink()
    t = load_cases(_cfg("isic2019", isic2019_root))
    assert t.modalities == "D" and t.schema.dim == 0 and len(set(t.group_ids)) == 12
    assert any("Metadata.csv not found" in n for n in t.notes)


def test_missing_ground_truth_is_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ValueError,
        match="isic2019: no training ground truth under .* named like .ISIC_2019_Training_GroundTruth",
    ):
        load_cases(_cfg("isic2019", tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"isic2018: no training labels \(HAM10000 metadata\)"):
        load_cases(_cfg("isic2018", tmp_path / "empty"))


def test_float_ground_truth_values(isic2018_root):
    df = pd.read_csv(isic2018_root / "ISIC2018_Task3_Test_GroundTruth.csv")
    assert df["MEL"].dtype == float and math.isclose(df.iloc[:, 1:].to_numpy().sum(), 4.0)


def test_dermoscopy_as_clinical_feeds_every_dermoscopy_image_to_the_clinical_branch(isic2018_root, pad_root):
    plain = load_cases(_cfg("isic2018", isic2018_root))
    moved = load_cases(_cfg("isic2018", isic2018_root, dermoscopy_as_clinical=True))
    assert (plain.modalities, moved.modalities) == ("DM", "CM")
    assert [c.clinical for c in moved.cases] == [c.dermoscopy for c in plain.cases]
    assert all(c.dermoscopy == [] and c.clinical for c in moved.cases)
    assert [c.targets["diag"] for c in moved.cases] == [c.targets["diag"] for c in plain.cases]
    assert any("dermoscopy_as_clinical" in n for n in moved.notes)
    # a photo-only model's images are the dermoscopy files, checked as such
    assert (
        len(load_dataset(_cfg("isic2018", isic2018_root, dermoscopy_as_clinical=True), modalities="C")) == 19
    )
    with pytest.raises(ValueError, match=r"pad_ufes20: data.dermoscopy_as_clinical .* no dermoscopy images"):
        load_cases(_cfg("pad_ufes20", pad_root, dermoscopy_as_clinical=True))
