"""Two CPU processes under DDP (gloo), launched with ``torch.distributed.run --standalone`` so that the
rendezvous port is a free one the OS gives: they agree on the weights and write one run directory; the
validation metrics gathered over the ranks are those of one process validating the same weights; and a
two-process run killed (SIGKILL) while rank 0 writes a training state resumes to the same weights."""

import json
import sys

import pytest
import torch
from kill_helpers import kill_at, leftover_temporary_files, run
from train_helpers import assert_same_weights, overrides, tiny_config

STATE = "last.state.safetensors"
EPOCHS = 2


def ddp_cmd(root, run_dir, *extra):
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port, chosen by the OS
        "--nproc_per_node=2",
        "-m",
        "remixformer",
        "-q",
        "train",
        *overrides(root, f"train.max_epochs={EPOCHS}", "train.devices=2"),
        "--run-dir",
        str(run_dir),
        *extra,
    ]


@pytest.fixture(scope="module")
def ddp_run(synth_root, tmp_path_factory):
    """One uninterrupted two-process run, shared by the tests of this module."""
    out = tmp_path_factory.mktemp("ddp")
    run(ddp_cmd(synth_root, out / "tiny"), out / "children.log")
    return out / "tiny"


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_agrees_on_weights_and_writes_once(ddp_run):
    summary = json.loads((ddp_run / "summary.json").read_text())
    assert summary["world_size"] == 2
    a, b = summary["weight_checksums"]
    assert a == pytest.approx(b, rel=1e-9)
    assert sorted(p.name for p in ddp_run.parent.iterdir()) == ["children.log", "tiny"]  # one run directory
    assert (ddp_run / "metrics.csv").read_text().count("\n") == 1 + EPOCHS  # header + epochs, one writer
    assert sorted(p.name for p in (ddp_run / "logs").iterdir()) == ["tensorboard"]


@pytest.mark.slow
def test_validation_metrics_gathered_over_ranks_equal_one_process_validating(ddp_run, synth_root, tmp_path):
    from remixformer.data.registry import load_dataset
    from remixformer.data.splits import read_splits
    from remixformer.engine.trainer import TrainerConfig, build_trainer
    from remixformer.models.checkpoint import load_model
    from remixformer.training.datamodule import RemixDataModule
    from remixformer.training.module import RemixFormerModule

    rows = [json.loads(line) for line in (ddp_run / "metrics.jsonl").read_text().splitlines()]
    gathered = {k: v for k, v in rows[-1].items() if k.startswith("val/") and k != "val/loss"}
    assert {"val/diag/accuracy", "val/diag/balanced_accuracy", "val/diag/auc_macro"} <= set(gathered)

    cfg = tiny_config(synth_root, tmp_path, f"train.max_epochs={EPOCHS}")
    table = load_dataset(cfg.data)
    splits = read_splits(table, ddp_run / "splits.csv")
    # the weights the last epoch was validated with (saved at its end, after its validation)
    model = load_model(ddp_run / "checkpoints" / "last.safetensors")
    trainer = build_trainer(
        tmp_path / "single", [], TrainerConfig(accelerator="cpu", devices=1, progress_bar=False), max_epochs=1
    )
    (single,) = trainer.validate(
        RemixFormerModule(model, cfg.train, cfg.seed),
        datamodule=RemixDataModule(cfg, table, splits, model.config),
        verbose=False,
    )
    for k, v in gathered.items():
        assert single[k] == pytest.approx(v, abs=1e-6), k


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_on_two_processes_to_the_same_weights(ddp_run, synth_root, tmp_path):
    log = tmp_path / "children.log"
    run_dir = tmp_path / "tiny"
    # rank 0 is about to replace epoch 1's training state; rank 1 waits for it at the barrier
    kill_at(ddp_cmd(synth_root, run_dir), f"replace:{STATE}#2", log)
    assert leftover_temporary_files(run_dir / "checkpoints")
    run(ddp_cmd(synth_root, run_dir, "--resume"), log)
    summary = json.loads((run_dir / "summary.json").read_text())
    a, b = summary["weight_checksums"]
    assert summary["world_size"] == 2 and a == pytest.approx(b, rel=1e-9)
    assert_same_weights(
        run_dir / "checkpoints" / "last.safetensors", ddp_run / "checkpoints" / "last.safetensors"
    )
    assert not leftover_temporary_files(run_dir, run_dir / "checkpoints")
    assert torch.tensor(json.loads((ddp_run / "summary.json").read_text())["weight_checksums"]).allclose(
        torch.tensor(summary["weight_checksums"]), rtol=0, atol=0
    )
