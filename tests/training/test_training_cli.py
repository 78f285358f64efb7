"""The commands around training: train, cv (resumable per fold), evaluate with a modality withheld.
Two CPU processes under DDP: test_training_ddp.py; killed runs: test_training_kill.py."""

import json

from train_helpers import tiny_config

from remixformer.cli.main import main
from remixformer.training.cv import cross_validate

BASE = [
    "model.preset=remixformer_tiny",
    "data.dataset=synthetic",
    "data.cache_images=true",
    "train.batch_size=8",
    "train.optimizer=adamw",
    "train.lr=0.003",
    "train.progress_bar=false",
    "train.accelerator=cpu",
]


def test_cv_runs_every_fold_writes_the_table_and_skips_finished_folds(synth_root, tmp_path, caplog):
    cfg = tiny_config(synth_root, tmp_path, "train.max_epochs=1")
    out = cross_validate(cfg, folds=2)
    run = tmp_path / "tiny"
    results = json.loads((run / "cv_results.json").read_text())
    assert [f["fold"] for f in results["folds"]] == [0, 1]
    assert all("accuracy" in f["metrics"] for f in results["folds"])
    assert all(f["best_score"] is not None and f["train_time_s"] > 0 for f in results["folds"])
    assert "±" in (run / "cv_summary.md").read_text() and "±" in out["table"]
    test_ids = [
        set(
            l.split(",")[0]
            for l in (run / f"fold_{k}" / "splits.csv").read_text().splitlines()
            if l.endswith(",test,")
        )
        for k in (0, 1)
    ]
    assert not (test_ids[0] & test_ids[1])  # the test folds are disjoint
    caplog.set_level("INFO")
    cross_validate(cfg, folds=2)  # everything done: nothing retrained
    assert "fold 1/2 already done" in caplog.text and "fold 2/2 already done" in caplog.text


def test_train_then_evaluate_with_a_modality_withheld(synth_root, tmp_path, capsys):
    rc = main(
        [
            "train",
            *BASE,
            "name=cli",
            f"output_dir={tmp_path}",
            f"data.root={synth_root}",
            "train.max_epochs=1",
            "model.modalities=CDM",
        ]
    )
    assert rc == 0
    assert "best: epoch 1/1 (val/diag/" in capsys.readouterr().out
    ckpt = tmp_path / "cli" / "checkpoints" / "best.safetensors"
    out = tmp_path / "eval_noC"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--withhold", "C", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert any("withheld modality: C" in n for n in report["notes"])
    assert report["modalities"] == "CDM" and report["withheld"] == "C"  # fields, for programs
    assert main(["evaluate", "--checkpoint", str(ckpt), "--withhold", "X", "--out", str(out)]) == 2


def test_unknown_config_key_is_a_clear_error(capsys):
    assert main(["train", "train.no_such_key=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err
