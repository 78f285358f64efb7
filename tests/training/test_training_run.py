"""A whole run on a tiny synthetic set: the run directory, when a run starts again or continues, refusal
to clobber. Runs killed with SIGKILL are in test_training_kill.py."""

import json

import pandas as pd
import pytest
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


def test_a_run_stopped_before_its_first_training_state_starts_again_and_leftovers_go(tmp_path, caplog):
    """The decision itself (the killed processes are in test_training_kill.py)."""
    from remixformer.engine.rundir import prepare_run_dir

    run, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoints"
    with pytest.raises(ValueError, match="no training state .* start the run without --resume"):
        prepare_run_dir(run, "last.state.safetensors", resume=True)  # nothing there
    ckpt.mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 1\n")
    (ckpt / "best.safetensors").write_bytes(b"epoch 0")  # written before the state, whose write was killed
    (ckpt / ".last.state.safetensors.k1ll3d.tmp").write_bytes(b"")
    (run / ".summary.json.x.tmp").write_bytes(b"{")
    (ckpt / "notes.tmp").write_text("not ours")  # not a temporary file of an atomic write
    caplog.set_level("INFO")
    for resume in (True, False):
        assert prepare_run_dir(run, "last.state.safetensors", resume=resume) is False
    assert "stopped before its first training state was complete" in caplog.text
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.safetensors", "notes.tmp"]
    assert not (run / ".summary.json.x.tmp").exists()
    (ckpt / "last.state.safetensors").write_bytes(b"state")
    assert prepare_run_dir(run, "last.state.safetensors", resume=True) is True
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        prepare_run_dir(run, "last.state.safetensors", resume=False)
    (ckpt / "last.state.safetensors").unlink()
    (run / "summary.json").write_text("{}")
    with pytest.raises(ValueError, match="finished run"):
        prepare_run_dir(run, "last.state.safetensors", resume=False)


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


@pytest.mark.parametrize("eval_device", [None, "cpu"])
def test_the_final_evaluation_runs_on_the_device_the_run_trained_on(
    synth_root, tmp_path, monkeypatch, eval_device
):
    import torch

    import remixformer.training.run as run

    seen = []
    # pretend the run trained on a GPU; the evaluation itself is recorded, not run
    monkeypatch.setattr(run, "trainer_device", lambda trainer: torch.device("cuda", 0))
    monkeypatch.setattr(run, "evaluate_run", lambda *a, device="cpu", **k: seen.append(device) or {})
    cfg = tiny_config(synth_root, tmp_path, "train.max_epochs=1", "train.limit_train_batches=1")
    train(cfg, tmp_path / "run", eval_device=eval_device)
    assert seen == [torch.device("cuda", 0) if eval_device is None else torch.device("cpu")]


def test_trained_device_is_the_strategys_root_device(tmp_path):
    import torch

    from remixformer.engine.devices import trainer_device
    from remixformer.engine.trainer import TrainerConfig, build_trainer

    built = build_trainer(tmp_path, [], TrainerConfig(accelerator="cpu", devices=1), max_epochs=1)
    assert trainer_device(built) == torch.device("cpu")

    class OnGpu:
        class strategy:
            root_device = torch.device("cuda", 1)

    assert trainer_device(OnGpu()) == torch.device("cuda", 1)
