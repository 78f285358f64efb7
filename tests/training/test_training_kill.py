"""Training and cross-validation killed with SIGKILL (real processes, ``kill -9``) at chosen moments:
while each checkpoint file is being written (its temporary file empty, or complete just before
``os.replace``), in the middle of an epoch, while a fold's summary is written. Every kill is followed
by the command a user would type next, and the end result is the uninterrupted run's, to the bit."""

import json

import pandas as pd
import pytest
from kill_helpers import kill_at, leftover_temporary_files, remixformer_cmd, run
from train_helpers import assert_same_weights, overrides, tiny_config

from remixformer.training.run import train

STATE = "last.state.safetensors"


def same_metrics(a, b):
    """metrics.csv of two runs, without the timing columns."""
    fa, fb = (pd.read_csv(d / "metrics.csv").drop(columns=["epoch_time_s"]) for d in (a, b))
    pd.testing.assert_frame_equal(fa, fb)


@pytest.mark.slow
def test_a_training_run_killed_at_any_moment_ends_as_the_uninterrupted_one(synth_root, tmp_path):
    log = tmp_path / "children.log"
    args = ["train", *overrides(synth_root, "train.max_epochs=3"), "--run-dir"]
    ref, killed = tmp_path / "reference", tmp_path / "killed"
    run(remixformer_cmd(*args, str(ref)), log)
    start = remixformer_cmd(*args, str(killed))
    resume = [*start, "--resume"]
    ckpt = killed / "checkpoints"

    # 1. killed while epoch 0's training state is written, its temporary file still empty
    kill_at(start, f"write:{STATE}", log)
    assert not (ckpt / STATE).exists() and (ckpt / "best.safetensors").exists()
    (empty,) = leftover_temporary_files(ckpt)
    assert empty.stat().st_size == 0
    # 2. --resume had said "no training state" and stopped: it starts the run again from the beginning
    #    and cleans the leftover; killed just before epoch 0's best model replaces its temporary file
    kill_at(resume, "replace:best.safetensors", log)
    (partial,) = leftover_temporary_files(ckpt)
    assert partial != empty and partial.name.startswith(".best.safetensors.") and partial.stat().st_size
    # 3. a start without --resume had said "already holds a run": it starts again as well; killed just
    #    before epoch 0's complete training state replaces its temporary file
    kill_at(start, f"replace:{STATE}", log)
    assert not (ckpt / STATE).exists()
    (partial,) = leftover_temporary_files(ckpt)
    assert partial.name.startswith(f".{STATE}.") and partial.stat().st_size > 0
    # 4. from the beginning once more; killed in the middle of epoch 1 (epoch 0's state is complete)
    kill_at(resume, "batch:1:1", log)
    assert (ckpt / STATE).is_file() and not leftover_temporary_files(ckpt)
    # 5. continued from epoch 0's state; killed while epoch 1's last model is written
    kill_at(resume, "replace:last.safetensors", log)
    # 6. a run with a complete training state is never started over
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        train(tiny_config(synth_root, tmp_path, "train.max_epochs=3"), killed)
    # 7. continued to the end
    run(resume, log)

    assert_same_weights(killed / "checkpoints" / "last.safetensors", ref / "checkpoints" / "last.safetensors")
    assert_same_weights(killed / "checkpoints" / "best.safetensors", ref / "checkpoints" / "best.safetensors")
    same_metrics(killed, ref)
    assert pd.read_csv(killed / "metrics.csv")["epoch"].tolist() == [0, 1, 2]
    a, b = (json.loads((d / "summary.json").read_text()) for d in (killed, ref))
    assert a["eval"] == b["eval"] and a["best_epoch"] == b["best_epoch"]
    assert not leftover_temporary_files(killed, ckpt)


@pytest.mark.slow
def test_cross_validation_killed_in_its_folds_finishes_as_the_uninterrupted_one(synth_root, tmp_path):
    log = tmp_path / "children.log"
    args = ["cv", *overrides(synth_root, "train.max_epochs=2"), "--folds", "2", "--run-dir"]
    ref, killed = tmp_path / "reference", tmp_path / "killed"
    run(remixformer_cmd(*args, str(ref)), log)
    cv = remixformer_cmd(*args, str(killed))

    # 1. killed while fold 0's summary (the mark of a finished fold) is written
    kill_at(cv, "replace:summary.json", log)
    assert not (killed / "fold_0" / "summary.json").exists()
    # 2. fold 0 is finished from its final training state; fold 1 is killed while its first training
    #    state is written: the fold that used to be stuck ("no training state" / "already holds a run")
    kill_at(cv, f"replace:{STATE}", log)
    assert (killed / "fold_0" / "summary.json").is_file()
    assert not (killed / "fold_1" / "checkpoints" / STATE).exists()
    # 3. fold 1 starts again from the beginning; killed in the middle of its epoch 1
    kill_at(cv, "batch:1:1", log)
    assert (killed / "fold_1" / "checkpoints" / STATE).is_file()
    # 4. to the end
    run(cv, log)

    a, b = (json.loads((d / "cv_results.json").read_text()) for d in (killed, ref))
    assert [f["metrics"] for f in a["folds"]] == [f["metrics"] for f in b["folds"]]
    assert (killed / "cv_summary.md").read_text() == (ref / "cv_summary.md").read_text()
    for k in (0, 1):
        fold, fold_ref = killed / f"fold_{k}", ref / f"fold_{k}"
        assert_same_weights(
            fold / "checkpoints" / "last.safetensors", fold_ref / "checkpoints" / "last.safetensors"
        )
        same_metrics(fold, fold_ref)
        assert not leftover_temporary_files(fold, fold / "checkpoints")
