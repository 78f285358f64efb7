"""Our checkpoints: safetensors + JSON config, atomic, strict, never unpickled."""

import json

import pytest
import torch
from model_helpers import make_batch
from safetensors import safe_open

from remixformer import load_model, save_model
from remixformer.serialization import CheckpointError, load_tree, save_tree


def test_round_trip_gives_the_same_model(tiny, tmp_path):
    model = tiny("CDM", lsm=True).eval()
    path = save_model(model, tmp_path / "m.safetensors", extra={"labels": ["a", "b"]})
    again = load_model(path)
    batch = make_batch(model)
    with torch.no_grad():
        torch.testing.assert_close(model(batch)["logits"]["diag"], again(batch)["logits"]["diag"])
    assert again.config == model.config
    assert again.checkpoint_extra == {"labels": ["a", "b"]}
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["config"])["modalities"] == "CDM"
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left


def test_truncated_checkpoint_is_a_clear_error(tiny, tmp_path):
    path = save_model(tiny("C"), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="m.safetensors"):
        load_model(path)


def test_a_failed_write_keeps_the_previous_file(tiny, tmp_path, monkeypatch):
    model = tiny("C")
    path = save_model(model, tmp_path / "last.safetensors")
    before = path.read_bytes()
    import remixformer.serialization as ser

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(ser, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_training_state_tree_round_trip(tmp_path):
    tree = {
        "epoch": 3,
        "optimizer": {
            "state": {0: {"momentum_buffer": torch.ones(2)}},
            "param_groups": [{"lr": 0.1, "params": [0]}],
        },
        "best": float("inf"),
        "pair": (1, "a"),
        "none": None,
    }
    save_tree(tmp_path / "s.safetensors", tree)
    back = load_tree(tmp_path / "s.safetensors")
    assert back["optimizer"]["state"][0]["momentum_buffer"].tolist() == [1.0, 1.0]
    assert back["best"] == float("inf") and back["pair"] == (1, "a") and back["none"] is None
    assert back["optimizer"]["param_groups"] == [{"lr": 0.1, "params": [0]}]
    with pytest.raises(CheckpointError, match="without pickling"):
        save_tree(tmp_path / "x.safetensors", {"obj": object()})


def test_model_file_is_not_a_training_state(tiny, tmp_path):
    path = save_model(tiny("C"), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="not a remixformer training-state"):
        load_tree(path)
    save_tree(tmp_path / "s.safetensors", {"a": 1})
    with pytest.raises(CheckpointError, match="not a remixformer model checkpoint"):
        load_model(tmp_path / "s.safetensors")


# --- hostile or damaged headers and weights ---------------------------------------------------------
def _with_schema(tiny):
    from remixformer.schema import AGE_BINS, MetadataSchema, categorical, numeric

    schema = MetadataSchema([numeric("age", AGE_BINS), categorical("sex", ["female", "male"])])
    assert schema.dim == 12  # = META_DIM of the tiny model
    model = tiny("CDM")
    model.config.metadata_schema = schema.to_dict()
    return model


def _rewrite(src, dst, header=None, tensors=None):
    """A copy of ``src`` with header fields replaced (``header``: field -> text or a function of the
    parsed JSON) and tensors edited in place (``tensors``: a function of the state dict)."""
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    for key, value in (header or {}).items():
        meta[key] = value(json.loads(meta[key])) if callable(value) else value
    weights = load_file(str(src))
    if tensors:
        tensors(weights)
    save_file(weights, str(dst), metadata=meta)
    return dst


def _config_edit(**changes):
    def edit(cfg):
        for dotted, value in changes.items():
            section, _, key = dotted.rpartition("__")
            (cfg[section] if section else cfg)[key] = value
        return json.dumps(cfg)

    return edit


@pytest.fixture
def good(tiny, tmp_path):
    return save_model(_with_schema(tiny), tmp_path / "good.safetensors", extra={"run": "r"})


@pytest.mark.parametrize(
    "header, message",
    [
        ({"extra": "[1, 2]"}, "header field 'extra' must be a JSON object, got a list"),
        ({"extra": "{not json"}, "header field 'extra' is not valid JSON"),
        ({"config": "[]"}, "header field 'config' must be a JSON object"),
        ({"config": "nan-sense"}, "header field 'config' is not valid JSON"),
        ({"format_version": "7"}, "format version '7'"),
        ({"config": _config_edit(dermoscopy__depth=10**6)}, r"dermoscopy.depth must be .* at most 256"),
        ({"config": _config_edit(clinical__image_size=-64)}, "clinical.image_size must be a positive int"),
        (
            {"config": _config_edit(metadata_schema={"fields": [{"name": "sex", "values": ["f", "m"]}]})},
            "schema encodes 3 one-hot slots but the model reads 12",
        ),
        ({"config": _config_edit(metadata_schema={"fields": "x"})}, "metadata schema is invalid"),
    ],
)
def test_every_header_field_is_checked_naming_the_file(good, tmp_path, header, message):
    bad = _rewrite(good, tmp_path / "bad.safetensors", header=header)
    with pytest.raises(CheckpointError, match=message) as info:
        load_model(bad)
    assert "bad.safetensors" in str(info.value)


def test_nan_weights_are_refused_at_load(good, tmp_path):
    def poison(weights):
        name = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 4)
        weights[name][0] = float("nan")

    bad = _rewrite(good, tmp_path / "nan.safetensors", tensors=poison)
    with pytest.raises(CheckpointError, match=r"nan.safetensors: NaN or infinite weights in 1 tensor\(s\)"):
        load_model(bad)


def test_a_config_asking_for_huge_sizes_is_refused_before_allocating(good, tmp_path, monkeypatch):
    import remixformer.models.remixformer as rf

    real_init = rf.RemixFormer.__init__

    def only_on_meta(self, *a, **k):  # a real build here would ask for tens of GB
        assert torch.get_default_device().type == "meta", "the model was built before its sizes were checked"
        real_init(self, *a, **k)

    monkeypatch.setattr(rf.RemixFormer, "__init__", only_on_meta)
    bad = _rewrite(
        good,
        tmp_path / "huge.safetensors",
        header={
            "config": _config_edit(dermoscopy__embed_dim=16384, dermoscopy__num_heads=8, fusion__dim=16384)
        },
    )
    with pytest.raises(
        CheckpointError, match=r"huge.safetensors: weights do not fit the stored config: .* another shape"
    ):
        load_model(bad)
