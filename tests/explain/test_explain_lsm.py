"""The LSM hit rate: where the synthetic set's lesions are, and whether the selected crops contain them."""

from pathlib import Path

import numpy as np
import pytest

from remixformer.data.config import DataConfig
from remixformer.data.datasets.synthetic import read_lesions
from remixformer.data.registry import load_dataset
from remixformer.explain.lsm import centre_in_boxes, lsm_hit_rate
from remixformer.models.checkpoint import load_model


def test_centre_in_boxes_is_half_open():
    boxes = np.array([[0, 0, 32, 32], [32, 32, 64, 64]])  # top, left, bottom, right
    assert centre_in_boxes(boxes, cx=10, cy=20).tolist() == [True, False]
    assert centre_in_boxes(boxes, cx=32, cy=32).tolist() == [False, True]  # right/bottom edges excluded
    assert centre_in_boxes(boxes, cx=31.9, cy=40).tolist() == [False, False]


def test_read_lesions_gives_every_clinical_photo_its_lesion(tiny_synth):
    table = load_dataset(DataConfig(dataset="synthetic", root=str(tiny_synth)))
    lesions = read_lesions(tiny_synth)
    photos = [str(Path(p).resolve()) for c in table.cases for p in c.images("C")]
    assert sorted(lesions) == sorted(photos)
    for cx, cy, r, side in lesions.values():
        assert side == 64 and 0 <= cx < 64 and 0 <= cy < 64 and r > 0


def test_read_lesions_names_the_missing_file(tmp_path):
    with pytest.raises(ValueError, match="latents.csv not found"):
        read_lesions(tmp_path)


def test_hit_rate_counts_crops_that_contain_the_lesion_centre(tiny_synth, tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    table = load_dataset(DataConfig(dataset="synthetic", root=str(tiny_synth)))
    lesions = read_lesions(tiny_synth)
    indices = list(range(len(table.cases)))
    n_photos = sum(len(table.cases[i].images("C")) for i in indices)
    # the tiny model's 4 crops (32^2) tile its 2 x 2 grid of a 64^2 photo: every lesion centre is covered
    res = lsm_hit_rate(model, table, indices, lesions)
    assert res["photos"] == n_photos and res["cells"] == 4 and res["crops"] == 4
    assert res["hit_rate"] == 1.0 and res["chance"] == 1.0
    # one crop: a hit exactly where the top-scoring cell is the lesion's cell
    model.branches["C"].lesion_selection.num_crops = 1
    res = lsm_hit_rate(model, table, indices, lesions)
    top1 = [r["lesion_cell_score"] == r["score_max"] for r in res["rows"]]
    assert [r["hit"] for r in res["rows"]] == top1
    assert res["chance"] == 0.25 and res["hit_rate"] == pytest.approx(np.mean(top1))


def test_hit_rate_needs_a_model_with_lsm(tiny_synth, tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    model.branches["C"].lesion_selection = None
    table = load_dataset(DataConfig(dataset="synthetic", root=str(tiny_synth)))
    with pytest.raises(ValueError, match="no clinical branch with lesion selection"):
        lsm_hit_rate(model, table, [0], read_lesions(tiny_synth))


def test_explain_on_a_synthetic_photo_reports_which_crops_contain_the_lesion(
    tiny_synth, tiny_checkpoint, tmp_path, capsys
):
    import csv
    import json

    from remixformer.cli.main import main

    lesions = read_lesions(tiny_synth)
    photo = sorted(lesions)[0]
    cx, cy, _, _ = lesions[photo]
    out = tmp_path / "out"
    argv = ["explain", "--checkpoint", str(tiny_checkpoint), "--clinical", photo, "--out", str(out)]
    assert main([*argv, "--no-templates", "--dpi", "50"]) == 0
    assert "of 4 crops contain the lesion's centre" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "clinical_boxes.csv").open()))
    box = [[float(r[k]) for k in ("top", "left", "bottom", "right")] for r in rows]
    expected = [t <= cy < b and le <= cx < ri for t, le, b, ri in box]
    assert [r["contains_lesion_centre"] == "1" for r in rows] == expected
    lesion = json.loads((out / "explanation.json").read_text())["clinical"]["lesion"]
    assert lesion["lsm_hit"] == any(expected) and lesion["crops_containing_centre"] == expected
