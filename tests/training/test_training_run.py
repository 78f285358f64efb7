"""A whole run on a tiny synthetic set: the run directory, resume after a kill, refusal to clobber."""

import json

import lightning as L
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from train_helpers import tiny_config

from remixformer.models.checkpoint import load_model
from remixformer.training.run import train


def _weights(run_dir):
    return load_file(str(run_dir / "checkpoints" / "last.safetensors"))


def test_run_directory_holds_everything(synth_root, tmp_path):
    cfg = tiny_config(synth_root, tmp_path)
    summary = train(cfg)
    run = tmp_path / "tiny"
    for name in (
        "config.yaml",
        "data.json",
        "splits.csv",
        "metrics.csv",
        "train.log",
        "summary.json",
        "checkpoints/best.safetensors",
        "checkpoints/last.safetensors",
        "checkpoints/last.state.safetensors",
        "eval/test/report.md",
        "eval/test/predictions.csv",
        "eval/test/report.json",
    ):
        assert (run / name).is_file(), name
    assert any((run / "logs" / "tensorboard").iterdir())
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1]
    assert {"train/loss", "val/loss", "val/diag/balanced_accuracy", "lr"} <= set(metrics.columns)
    splits = pd.read_csv(run / "splits.csv")
    groups = splits.groupby("group_id")["split"].nunique()
    assert (groups == 1).all()  # no patient in two splits
    model = load_model(run / "checkpoints" / "best.safetensors")
    assert model.tasks[0].classes == tuple(json.loads((run / "data.json").read_text())["tasks"][0]["classes"])
    assert model.config.metadata_schema is not None
    assert summary["eval"]["accuracy"] is not None and 0 <= summary["eval"]["accuracy"] <= 1
    report = (run / "eval" / "test" / "report.md").read_text()
    assert "protocol" in report


class _Kill(L.Callback):
    """Dies in the middle of an epoch, as a killed process would."""

    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == self.at:
            raise SystemExit("killed")


def test_resume_after_a_kill_reaches_the_same_result(synth_root, tmp_path, monkeypatch):
    cfg = tiny_config(synth_root, tmp_path / "a", "train.max_epochs=3")
    train(cfg)
    reference = _weights(tmp_path / "a" / "tiny")

    from remixformer.training import trainer as trainer_mod

    original = trainer_mod.build_trainer

    def with_kill(run_dir, callbacks, **kw):
        return original(run_dir, [*callbacks, _Kill(epoch=2, batch=1)], **kw)

    monkeypatch.setattr(trainer_mod, "build_trainer", with_kill)
    cfg_b = tiny_config(synth_root, tmp_path / "b", "train.max_epochs=3")
    with pytest.raises(SystemExit):
        train(cfg_b)
    monkeypatch.setattr(trainer_mod, "build_trainer", original)
    run_b = tmp_path / "b" / "tiny"
    assert (run_b / "checkpoints" / "last.state.safetensors").is_file()
    assert not (run_b / "summary.json").exists()
    train(cfg_b, resume=True)
    resumed = _weights(run_b)
    assert resumed.keys() == reference.keys()
    for k in reference:
        torch.testing.assert_close(resumed[k], reference[k], rtol=1e-5, atol=1e-6, msg=k)
    rows = pd.read_csv(run_b / "metrics.csv")
    assert rows["epoch"].tolist() == [0, 1, 2]


def test_existing_run_is_not_overwritten_and_resume_checks_the_config(synth_root, tmp_path):
    cfg = tiny_config(synth_root, tmp_path, "train.max_epochs=1")
    train(cfg)
    with pytest.raises(ValueError, match="already holds a run"):
        train(cfg)
    changed = tiny_config(synth_root, tmp_path, "train.max_epochs=1", "train.lr=0.1")
    with pytest.raises(ValueError, match=r"train\.lr"):
        train(changed, resume=True)
    with pytest.raises(ValueError, match="no training state"):
        train(tiny_config(synth_root, tmp_path / "other"), resume=True)


def test_model_modalities_must_exist_in_the_data(synth_root, tmp_path):
    from remixformer.config import resolve
    from remixformer.data.config import DataConfig
    from remixformer.data.registry import load_dataset
    from remixformer.training.run import build_model_for

    table = load_dataset(resolve(DataConfig, [], ["dataset=synthetic", f"root={synth_root}"]))
    cfg = tiny_config(synth_root, tmp_path, "model.modalities=CD")
    assert build_model_for(cfg, table).modalities == "CD"
    table.modalities = "CM"
    with pytest.raises(ValueError, match="provides only"):
        build_model_for(cfg, table)
