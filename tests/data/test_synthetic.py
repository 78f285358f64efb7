import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from remixformer.cli.main import main
from remixformer.config import from_dict
from remixformer.data import DataConfig, load_dataset
from remixformer.data.datasets import synthetic
from remixformer.data.splits import split_indices, splits_from_config


def _digest(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return synthetic.generate(
        tmp_path_factory.mktemp("syn") / "set", n_cases=24, seed=3, clinical_size=96, dermoscopy_size=96
    )


def test_identical_for_a_seed_whatever_the_workers(syn, tmp_path):
    again = synthetic.generate(
        tmp_path / "again", n_cases=24, seed=3, clinical_size=96, dermoscopy_size=96, workers=2
    )
    assert _digest(again) == _digest(syn)
    other = synthetic.generate(tmp_path / "other", n_cases=24, seed=4, clinical_size=96, dermoscopy_size=96)
    assert _digest(other)["manifest.csv"] != _digest(syn)["manifest.csv"]


def test_layout_and_loading(syn):
    assert {p.name for p in syn.iterdir()} == {
        "manifest.csv",
        "schema.json",
        "latents.csv",
        "synthetic.json",
        "clinical",
        "dermoscopy",
    }
    t = load_dataset(
        from_dict(
            DataConfig, {"dataset": "synthetic", "root": str(syn), "synthetic_cases": 24, "synthetic_seed": 3}
        )
    )
    assert len(t) == 24 and t.modalities == "CDM" and t.name == "synthetic"
    assert [x.name for x in t.tasks] == ["diag", "pn", "bwv", "vs", "pig", "str", "dag", "rs"]
    assert t.tasks[0].classes == ("BCC", "NEV", "MEL", "MISC", "SK")
    assert t.schema.field_names == ["age", "sex", "location", "elevation", "changed"]
    assert t.has_official_split
    s = split_indices(t)
    assert sum(map(len, s.values())) == 24
    with Image.open(t.cases[0].clinical[0]) as im:
        assert im.size == (96, 96) and im.mode == "RGB"


def test_patients_share_split_age_and_sex(syn):
    df = pd.read_csv(syn / "manifest.csv", keep_default_na=False, dtype=str)
    for _, g in df.groupby("patient_id"):
        assert g["split"].nunique() == 1 and g["age"].nunique() == 1 and g["sex"].nunique() == 1


def test_missing_modalities_and_several_photos_occur():
    rng = np.random.default_rng(0)
    lat = synthetic.sample_latents(rng, 4000)
    assert 0.05 < (~lat.has_clinical).mean() < 0.11 and 0.04 < (~lat.has_dermoscopy).mean() < 0.11
    assert not (~lat.has_clinical & ~lat.has_dermoscopy).any()
    assert 0.05 < lat.blank.mean() < 0.11


def test_clinical_micro_pattern_vanishes_at_half_resolution():
    rng = np.random.default_rng(0)
    for pattern in range(3):
        tex = synthetic._micro_texture(rng, (64, 64), pattern)
        blocks = tex.reshape(32, 2, 32, 2).mean(axis=(1, 3))
        assert np.abs(blocks).max() < 1e-6  # a 2x2 average erases it exactly
        if synthetic.PATTERNS[pattern] != "smooth":
            assert tex.std() > 0.5


def test_dermoscopy_structures_vanish_at_quarter_resolution():
    rng = np.random.default_rng(1)
    layer = np.zeros((128, 128, 3), dtype=np.float32)
    layer[::5, :, :] = -60.0  # a network of 1-px lines
    layer[:, ::5, :] = -60.0
    hp = synthetic._highpass(layer, synthetic.HIGHPASS_CUTOFF)
    small = np.asarray(Image.fromarray(hp[:, :, 0]).resize((32, 32), Image.BILINEAR))
    assert hp.std() > 10 and small.std() < 0.1 * hp.std()
    img = synthetic.render_dermoscopy(rng, 128, np.array([2, 1, 1, 1, 1, 1, 1]))
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8


def test_bayes_accuracy_needs_all_three_modalities():
    r = synthetic.bayes_accuracy(n=20000, seed=0)
    cdm = r["CDM"]["accuracy"]
    for single in ("C", "D", "M"):
        assert r[single]["accuracy"] < cdm - 0.15
    assert r["CD"]["accuracy"] < cdm and r["prior"]["accuracy"] < r["M"]["accuracy"]


def test_refuses_to_overwrite_and_checks_arguments(syn, tmp_path):
    with pytest.raises(ValueError, match="exists and is not empty"):
        synthetic.generate(syn, n_cases=24, seed=3)
    with pytest.raises(ValueError, match="at least 10"):
        synthetic.generate(tmp_path / "x", n_cases=3)


def test_load_generates_into_an_empty_root(tmp_path):
    root = tmp_path / "auto"
    t = load_dataset(
        from_dict(DataConfig, {"dataset": "synthetic", "root": str(root), "synthetic_cases": 12})
    )
    assert len(t) == 12 and (root / "synthetic.json").is_file()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no synthetic.json"):
        load_dataset(from_dict(DataConfig, {"dataset": "synthetic", "root": str(tmp_path / "busy")}))


def test_synth_command(tmp_path, capsys):
    code = main(
        [
            "-q",
            "synth",
            "--out",
            str(tmp_path / "s"),
            "--cases",
            "12",
            "--seed",
            "1",
            "--clinical-size",
            "64",
            "--dermoscopy-size",
            "64",
            "--workers",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "wrote 12 cases to" in out and (tmp_path / "s" / "manifest.csv").is_file()


def test_lesion_colour_follows_its_latents():
    """Version 3: the lesion's colour carries the class at the lesion's scale (darker, redder)."""
    rng = np.random.default_rng(0)
    base = synthetic.lesion_colour(rng, 0.0, 0.0)
    dark = synthetic.lesion_colour(rng, 0.0, 2.0)
    red = synthetic.lesion_colour(rng, 1.5, 0.0)
    grey = synthetic.lesion_colour(rng, -2.0, 0.0)
    assert dark.sum() < base.sum() - 100  # 32 % darker
    assert red[0] - red[1] > base[0] - base[1] + 40  # redder
    assert np.ptp(grey) < 0.6 * np.ptp(base)  # a negative redness turns it greyer
    # the photo shows that colour inside the lesion (the latents and the drawing agree)
    colour = np.array([90.0, 40.0, 35.0], dtype=np.float32)
    img, (cx, cy, r) = synthetic.render_clinical(rng, 128, 0, colour)
    yy, xx = np.mgrid[0:128, 0:128]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 < (0.5 * r) ** 2
    assert np.abs(img[inside].mean(axis=0) - colour).max() < 25
    assert 30 * 0.5 <= r <= 42 * 0.5 and r <= cx <= 128 - r and r <= cy <= 128 - r


def test_latents_and_version_are_written(syn):
    lat = pd.read_csv(syn / "latents.csv", keep_default_na=False)
    assert {"clinical_pattern", "redness", "darkness", "lesions"} <= set(lat.columns)
    import json

    assert json.loads((syn / "synthetic.json").read_text())["version"] == synthetic.VERSION == 3


def test_a_set_of_another_version_loads_with_a_warning(syn, tmp_path, caplog):
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(syn, old)
    info = json.loads((old / "synthetic.json").read_text())
    (old / "synthetic.json").write_text(json.dumps({**info, "version": 2}))
    cfg = {"dataset": "synthetic", "root": str(old), "synthetic_cases": 24, "synthetic_seed": 3}
    with caplog.at_level("WARNING"):
        t = load_dataset(from_dict(DataConfig, cfg))
    assert len(t) == 24 and "'version': 2" in caplog.text and "using it as it is" in caplog.text


def test_data_tasks_keeps_the_named_tasks(syn):
    cfg = {"dataset": "synthetic", "root": str(syn), "synthetic_cases": 24, "synthetic_seed": 3}
    full = load_dataset(from_dict(DataConfig, cfg))
    assert [t.name for t in full.tasks] == ["diag", *synthetic.ATTRIBUTE_TASKS]
    only = load_dataset(from_dict(DataConfig, {**cfg, "tasks": ["diag"]}))
    assert [t.name for t in only.tasks] == ["diag"] and all(set(c.targets) == {"diag"} for c in only.cases)
    assert np.array_equal(only.labels(), full.labels())
    two = load_dataset(from_dict(DataConfig, {**cfg, "tasks": ["pn"]}))  # diag is always kept
    assert [t.name for t in two.tasks] == ["diag", "pn"]
    with pytest.raises(ValueError, match=r"no task \['veil'\]; its tasks are \['diag', 'pn'"):
        load_dataset(from_dict(DataConfig, {**cfg, "tasks": ["diag", "veil"]}))
    with pytest.raises(ValueError, match="names a task twice"):
        from_dict(DataConfig, {**cfg, "tasks": ["pn", "pn"]})


def test_extra_test_cases_are_new_patients_in_the_test_split_and_change_nothing_else(syn, tmp_path):
    import json

    big = synthetic.generate(
        tmp_path / "big", n_cases=24, seed=3, clinical_size=96, dermoscopy_size=96, test_cases=14
    )
    base = pd.read_csv(syn / "manifest.csv", keep_default_na=False, dtype=str)
    both = pd.read_csv(big / "manifest.csv", keep_default_na=False, dtype=str)
    assert len(both) == 38
    pd.testing.assert_frame_equal(both.iloc[:24], base)  # the first 24 cases, split included, unchanged
    extra = both.iloc[24:]
    assert set(extra["split"]) == {"test"} and extra["case_id"].is_unique
    assert not set(extra["patient_id"]) & set(base["patient_id"])
    assert extra["diagnosis"].nunique() > 1  # drawn from the generator, not copies
    digest, base_digest = _digest(big), _digest(syn)
    assert all(digest[k] == v for k, v in base_digest.items() if k.startswith(("clinical/", "dermoscopy/")))
    info = json.loads((big / "synthetic.json").read_text())
    assert (info["n_cases"], info["test_cases"]) == (24, 14)
    cfg = {"dataset": "synthetic", "root": str(big), "synthetic_cases": 24, "synthetic_seed": 3}
    table_cfg = from_dict(DataConfig, {**cfg, "synthetic_test_cases": 14})
    table = load_dataset(table_cfg)
    assert len(splits_from_config(table, table_cfg)["test"]) == (base["split"] == "test").sum() + 14
    with pytest.raises(ValueError, match="test_cases must be >= 0"):
        synthetic.generate(tmp_path / "neg", n_cases=24, test_cases=-1)
