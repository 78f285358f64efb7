"""The Python API: Predictor on paths, bytes, PIL images and arrays, partial inputs, explanations, TTA,
and the overlays made from the explanation maps."""

import io

import numpy as np
import pytest
from PIL import Image
from serving_helpers import TASKS, rgb_array

from remixformer.data.images import BadImageError, ImageTooLargeError
from remixformer.serving import Predictor
from remixformer.serving.overlays import draw_boxes, heat_overlay, make_overlays


def test_describe_lists_what_a_client_needs(predictor):
    d = predictor.describe()
    assert d["modalities"] == {"C": "clinical", "D": "dermoscopy", "M": "metadata"}
    assert d["diagnosis_classes"] == TASKS["diag"]
    assert [t["name"] for t in d["tasks"]] == ["diag", "pn"]
    assert d["input_sizes"] == {"clinical": 64, "dermoscopy": 64}
    fields = {f["name"]: f for f in d["metadata_fields"]}
    assert fields["sex"]["values"] == ["female", "male"]
    assert fields["age"]["kind"] == "numeric" and fields["age"]["values"][0] == "<20"
    assert fields["changed"]["values"] == ["False", "True"]
    ck = d["checkpoint"]
    assert ck["file"] == "tiny_CDM.safetensors" and len(ck["sha256"]) == 64
    assert ck["preset"] == "remixformer_tiny"


def test_every_input_form_gives_the_same_answer(predictor, tmp_path, png):
    data = png(90, 70, seed=3)
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    answers = [
        predictor.predict(dermoscopy=x, metadata={"sex": "male"})
        for x in (str(path), path, data, Image.open(path), arr, arr.astype(np.float32) / 255.0)
    ]
    ref = answers[0].probabilities["diag"]
    for a in answers[1:]:
        assert a.probabilities["diag"] == pytest.approx(ref, abs=1e-5)
    assert answers[0].modalities_used == "DM"


@pytest.mark.parametrize(
    "inputs, used",
    [
        ({"clinical": True}, "C"),
        ({"dermoscopy": True}, "D"),
        ({"metadata": {"age": 47, "location": "trunk"}}, "M"),
        ({"clinical": True, "dermoscopy": True}, "CD"),
        ({"clinical": True, "dermoscopy": True, "metadata": {"changed": "yes"}}, "CDM"),
    ],
)
def test_any_subset_of_the_modalities(predictor, inputs, used):
    kw = {k: (rgb_array(seed=1) if v is True else v) for k, v in inputs.items()}
    r = predictor.predict(**kw, top_k=2)
    assert r.modalities_used == used
    assert set(r.probabilities) == {"diag", "pn"}
    assert sum(r.probabilities["diag"].values()) == pytest.approx(1.0, abs=1e-5)
    assert sum(r.probabilities["pn"].values()) == pytest.approx(1.0, abs=1e-5)
    assert len(r.top_k) == 2 and r.diagnosis == r.top_k[0][0]
    assert r.top_k[0][1] >= r.top_k[1][1]
    assert r.explanation == {}


def test_blank_metadata_is_no_metadata(predictor):
    r = predictor.predict(dermoscopy=rgb_array(), metadata={"sex": "", "age": None})
    assert r.modalities_used == "D"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "no input"),
        ({"metadata": {"sex": ""}}, "no input"),
        ({"metadata": {"colour": "red"}}, "unknown field"),
        ({"metadata": {"sex": "other"}}, "'sex': value 'other' is not allowed"),
        ({"metadata": {"age": "old"}}, "'age'"),
        ({"dermoscopy": b"not an image"}, "dermoscopy image"),
        ({"clinical": "/nonexistent/photo.jpg"}, "file not found"),
        ({"clinical": np.zeros((4, 4, 2), np.uint8)}, "expected an (H, W, 3)"),
        ({"clinical": 42}, "expected a file path"),
    ],
)
def test_bad_input_is_a_value_error_that_says_what(predictor, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        predictor.predict(**kwargs)


def test_a_modality_the_model_was_not_trained_with(make_checkpoint):
    p = Predictor.from_checkpoint(make_checkpoint("D"))
    assert p.modalities == "D" and p.metadata_fields() == []
    with pytest.raises(ValueError, match="trained without clinical"):
        p.predict(clinical=rgb_array(), dermoscopy=rgb_array())
    with pytest.raises(ValueError, match="trained without metadata"):
        p.predict(dermoscopy=rgb_array(), metadata={"sex": "male"})
    assert p.predict(dermoscopy=rgb_array()).modalities_used == "D"


def test_pixel_limit(make_checkpoint):
    p = Predictor.from_checkpoint(make_checkpoint("CDM"), max_image_pixels=1000)
    with pytest.raises(BadImageError, match="exceeds the limit"):
        p.predict(clinical=_png(40, 40))
    with pytest.raises(BadImageError, match="exceeds the limit"):
        p.predict(clinical=rgb_array(40, 40))


@pytest.mark.parametrize("form", ["bytes", "pil", "array"])
def test_tall_thin_images_are_refused_before_resizing_whatever_the_form(predictor, form, monkeypatch):
    import remixformer.data.transforms as T

    def no_resize(*a, **k):
        raise AssertionError("a refused image reached the resize")

    monkeypatch.setattr(T, "to_model_tensor", no_resize)
    tall = Image.new("RGB", (1, 2_000_000))  # within the pixel limit: 2 M pixels, a PNG of a few KB
    image = {"bytes": lambda: _png(1, 2_000_000), "pil": lambda: tall, "array": lambda: np.asarray(tall)}
    with pytest.raises(ImageTooLargeError, match=r"1x2000000 is 2,000,000 times longer than wide"):
        predictor.predict(dermoscopy=image[form]())
    wide = Image.new("RGB", (21, 1))
    with pytest.raises(ImageTooLargeError, match="up to 20:1"):
        predictor.predict(clinical=wide)


def _png(w, h):
    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def test_flip_tta_averages_with_the_mirrored_image(make_checkpoint):
    img = rgb_array(64, 64, seed=5)
    plain = Predictor.from_checkpoint(make_checkpoint("CDM"))
    tta = Predictor.from_checkpoint(make_checkpoint("CDM"), tta_flip=True)
    p0 = np.array(list(plain.predict(dermoscopy=img).probabilities["diag"].values()))
    p1 = np.array(list(plain.predict(dermoscopy=img[:, ::-1].copy()).probabilities["diag"].values()))
    both = np.array(list(tta.predict(dermoscopy=img).probabilities["diag"].values()))
    assert not np.allclose(p0, p1)  # an untrained model is not flip-invariant
    # TTA averages logits, so its probabilities lie between those of the two views
    lo, hi = np.minimum(p0, p1) - 1e-6, np.maximum(p0, p1) + 1e-6
    assert ((both >= lo) & (both <= hi)).all()
    assert tta.describe()["tta_flip"] is True


def test_explanation_maps_and_overlays(predictor):
    clinical, derm = rgb_array(100, 80, seed=1), rgb_array(64, 64, seed=2)
    r = predictor.predict(clinical=clinical, dermoscopy=derm, explain=True)
    ex = r.explanation
    assert {"lsm_scores", "lsm_boxes", "region_attention", "window_attention"} <= set(ex)
    assert ex["lsm_scores"].sum() == pytest.approx(1.0, abs=1e-4)
    overlays = make_overlays(
        ex, predictor.input_sizes, clinical=Image.fromarray(clinical), dermoscopy=Image.fromarray(derm)
    )
    assert [o.name for o in overlays] == ["lsm", "region", "window"]
    for o in overlays:
        img = Image.open(io.BytesIO(o.png))
        assert img.format == "PNG" and img.size == (64, 64)
        assert o.data_url().startswith("data:image/png;base64,")
    # a case without dermoscopy has no dermoscopy maps (absent, or NaN in a mixed batch): no overlay
    r = predictor.predict(clinical=clinical, explain=True)
    assert np.isnan(r.explanation.get("region_attention", np.nan)).all()
    nan_maps = {**r.explanation, "region_attention": np.full((2, 2), np.nan)}
    assert [
        o.name for o in make_overlays(nan_maps, predictor.input_sizes, dermoscopy=Image.fromarray(derm))
    ] == []
    overlays = make_overlays(r.explanation, predictor.input_sizes, clinical=Image.fromarray(clinical))
    assert [o.name for o in overlays] == ["lsm"]


def test_overlay_drawing():
    base = Image.new("RGB", (32, 32), (128, 128, 128))
    grid = np.zeros((4, 4), np.float32)
    grid[0, 0] = 1.0
    heat = np.asarray(heat_overlay(base, grid)).astype(int)
    assert heat.shape == (32, 32, 3)
    assert abs(heat[0, 0] - heat[31, 31]).sum() > 50  # the hot corner differs from the cold one
    boxed = np.asarray(draw_boxes(base, np.array([[0, 0, 16, 16], [-1, -1, -1, -1]]), scale=1.0))
    assert (boxed[0, 8] == (0, 255, 128)).all()  # the top edge of the first box
    assert (boxed[24, 24] == (128, 128, 128)).all()  # the missing box is not drawn
    flat = heat_overlay(base, np.full((2, 2), np.nan))
    assert flat.size == (32, 32)


def test_the_cli_offers_the_predictors_backends():
    from remixformer.cli.common import BACKENDS
    from remixformer.serving import predictor

    assert BACKENDS == predictor.BACKENDS
