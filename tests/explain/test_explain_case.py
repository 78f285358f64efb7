"""One case explained through a checkpoint: maps on the original images, figures, numbers, the command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from remixformer.cli.main import main
from remixformer.explain import explain_case


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    from remixformer.serving.predictor import Predictor

    return Predictor.from_checkpoint(tiny_checkpoint)


def _image(h, w, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


def test_explain_case_brings_the_maps_to_the_original_images(predictor, tmp_path):
    photo, derm = _image(90, 120, 0), _image(80, 100, 1)
    exp = explain_case(predictor, clinical=photo, dermoscopy=derm, metadata={"sex": "male", "age": 61})
    assert exp.clinical_size == (90, 120) and exp.dermoscopy_size == (80, 100)
    assert exp.clinical.pixel_scores(exp.clinical_size).sum() == pytest.approx(1.0, abs=1e-6)
    boxes = exp.clinical.boxes_in(exp.clinical_size)
    assert boxes.shape == (4, 4)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 90).all() and (boxes[:, 3] <= 120).all()
    assert exp.dermoscopy.combined_pixels(exp.dermoscopy_size, preserve_sum=True).sum() == pytest.approx(
        1.0, abs=1e-5
    )
    written = exp.save(tmp_path, max_side=256, dpi=50)
    assert {
        "clinical_lsm.png",
        "clinical_lsm_grid.csv",
        "clinical_boxes.csv",
        "dermoscopy_attention.png",
        "dermoscopy_region.csv",
        "dermoscopy_patches.csv",
        "explanation.json",
        "prediction.json",
    } <= set(written)
    for png in ("clinical_lsm.png", "dermoscopy_attention.png"):
        with Image.open(tmp_path / png) as im:
            assert im.format == "PNG" and im.width > 300
    rows = list(csv.DictReader((tmp_path / "clinical_boxes.csv").open()))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    assert np.allclose([[float(r[k]) for k in ("top", "left", "bottom", "right")] for r in rows], boxes)
    grid = list(csv.DictReader((tmp_path / "clinical_lsm_grid.csv").open()))
    assert sum(float(r["score"]) for r in grid) == pytest.approx(1.0, abs=1e-6)
    patches = list(csv.DictReader((tmp_path / "dermoscopy_patches.csv").open()))
    assert len(patches) == 8 * 8
    assert sum(float(r["region_x_window"]) for r in patches) == pytest.approx(1.0, abs=1e-5)
    data = json.loads((tmp_path / "explanation.json").read_text())
    assert data["clinical"]["image_size"] == [90, 120]
    assert data["dermoscopy"]["window_grid"] == [2, 2]
    assert json.loads((tmp_path / "prediction.json").read_text())["diagnosis"] == exp.prediction.diagnosis


def test_a_missing_modality_skips_its_figure_with_a_note(predictor, tmp_path, caplog):
    caplog.set_level("INFO")
    exp = explain_case(predictor, clinical=_image(64, 64, 2), metadata={"sex": "female"})
    assert exp.dermoscopy is None and exp.clinical is not None
    assert "no dermoscopy image" in caplog.text
    written = exp.save(tmp_path, dpi=50)
    assert "clinical_lsm.png" in written and "dermoscopy_attention.png" not in written
    assert any(
        "no dermoscopy image" in n for n in json.loads((tmp_path / "prediction.json").read_text())["notes"]
    )


def test_a_large_photo_is_shrunk_for_display_but_boxes_stay_in_original_pixels(predictor):
    from remixformer.explain.figures import plot_clinical

    exp = explain_case(predictor, clinical=_image(1500, 2000, 3))
    fig = plot_clinical(exp.clinical_image, exp.clinical, max_side=200)
    ax = fig.axes[0]
    assert ax.get_xlim() == (0, 2000) and ax.get_ylim() == (1500, 0)
    assert ax.images[0].get_array().shape[:2] == (150, 200)
    assert len(ax.patches) == 4  # the crop boxes
    assert len(fig.axes) == 5  # three panels and two colour bars


def test_explain_command_writes_the_figures(tiny_checkpoint, tmp_path, capsys):
    photo, derm = tmp_path / "photo.jpg", tmp_path / "derm.png"
    _image(70, 90, 4).save(photo)
    _image(64, 64, 5).save(derm)
    out = tmp_path / "out"
    rc = main(
        [
            "explain",
            "--checkpoint",
            str(tiny_checkpoint),
            "--clinical",
            str(photo),
            "--dermoscopy",
            str(derm),
            "--meta",
            "sex=male",
            "age=40",
            "--out",
            str(out),
            "--no-templates",
            "--dpi",
            "50",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "diagnosis:" in text and "clinical_lsm.png" in text
    assert (out / "clinical_lsm.png").is_file() and (out / "dermoscopy_attention.png").is_file()


def test_explain_command_rejects_bad_metadata(tiny_checkpoint, tmp_path, capsys):
    rc = main(["explain", "--checkpoint", str(tiny_checkpoint), "--meta", "sex", "--out", str(tmp_path)])
    assert rc == 2 and "FIELD=VALUE" in capsys.readouterr().err
    rc = main(
        ["explain", "--checkpoint", str(tiny_checkpoint), "--meta", "colour=red", "--out", str(tmp_path)]
    )
    assert rc == 2 and "colour" in capsys.readouterr().err
