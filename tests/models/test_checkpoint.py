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
