"""DINO pretraining killed with SIGKILL (real processes) while each of its files is written and in the
middle of an epoch; the command a user would type next finishes it as if nothing had happened."""

import json

import pytest
import torch
from kill_helpers import kill_at, leftover_temporary_files, remixformer_cmd, run
from safetensors.torch import load_file

STATE = "last.state.safetensors"
EXPORT = "teacher_backbone.safetensors"
TINY_OVERRIDES = [  # conftest.TINY as command-line overrides
    "backbone.preset=remixformer_tiny",
    "backbone.pretrained=null",
    "head.out_dim=64",
    "head.hidden_dim=32",
    "head.bottleneck_dim=16",
    "windows.resize_size=64",
    "windows.native_fraction=0.0",
    "crops.n_local=2",
    "optim.batch_size=8",
    "optim.epochs=2",
    "optim.warmup_epochs=0",
    "dino.warmup_teacher_temp_epochs=1",
    "trainer.progress_bar=false",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.log_every_n_steps=1",
]


@pytest.mark.slow
def test_pretraining_killed_at_any_moment_ends_as_the_uninterrupted_one(image_dir, tmp_path):
    log = tmp_path / "children.log"
    ref, killed = tmp_path / "reference", tmp_path / "killed"

    def cmd(run_dir, *extra):
        return remixformer_cmd("pretrain", *TINY_OVERRIDES, "--run-dir", str(run_dir), *extra)

    run(cmd(ref, "--images", str(image_dir)), log)
    start = cmd(killed, "--images", str(image_dir))
    resume = cmd(killed, "--resume")  # the images need not be named again
    ckpt = killed / "checkpoints"

    # 1. killed just before epoch 0's training state replaces its (complete) temporary file
    kill_at(start, f"replace:{STATE}", log)
    assert not (ckpt / STATE).exists() and (killed / EXPORT).is_file()
    (partial,) = leftover_temporary_files(ckpt)
    assert partial.name.startswith(f".{STATE}.") and partial.stat().st_size > 0
    # 2. --resume starts the run again from the beginning (it used to say "no training state"); killed
    #    while epoch 0's state is written, its temporary file still empty
    kill_at(resume, f"write:{STATE}", log)
    (empty,) = leftover_temporary_files(ckpt)
    assert empty.stat().st_size == 0
    # 3. a start without --resume starts it again too (it used to say "already holds a run"); killed
    #    while epoch 1's export is written (epoch 0's state is complete)
    kill_at(start, f"replace:{EXPORT}#2", log)
    assert (ckpt / STATE).is_file() and not leftover_temporary_files(ckpt)
    # 4. continued from epoch 0's state; killed in the middle of epoch 1
    kill_at(resume, "batch:1:2", log)
    # 5. to the end
    run(resume, log)

    a, b = (json.loads((d / "summary.json").read_text()) for d in (killed, ref))
    assert a["global_step"] == b["global_step"] == 12 and a["loss"] == b["loss"]
    wa, wb = load_file(str(killed / EXPORT)), load_file(str(ref / EXPORT))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = [
        [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (killed, ref)
    ]
    for r in (*rows[0], *rows[1]):
        r.pop("epoch_time_s")
    assert rows[0] == rows[1] and [r["epoch"] for r in rows[0]] == [0, 1]
    assert not leftover_temporary_files(killed, ckpt)
