"""Two real CPU processes (gloo) in which one rank's batch lacks a modality that the other rank's batch
has: the dermoscopy branch gets no gradient on one rank in that step. Plain DDP fails there ("Expected
to have finished reduction in the prior iteration", or waits); the strategy the trainer chooses must
train through it. ``train.devices='2'`` (a string) is a form the old choice read as one device."""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest
from kill_helpers import _tail, child_env
from train_helpers import overrides

from remixformer.data.datasets.synthetic import generate

TIMEOUT_S = 300


@pytest.fixture(scope="module")
def one_dermoscopy_root(tmp_path_factory):
    """A tiny synthetic set whose training split has exactly one case with a dermoscopy image, and an
    even number of training cases (no padding: that case is read once per epoch, by one rank)."""
    root = generate(
        tmp_path_factory.mktemp("data") / "synthetic",
        n_cases=16,
        seed=5,
        clinical_size=64,
        dermoscopy_size=64,
    )
    path = root / "manifest.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    train = [r for r in rows if r["split"] == "train"]
    if len(train) % 2:
        rows.remove(train.pop())
    for r in train[1:]:
        r["dermoscopy"] = ""
    assert train[0]["dermoscopy"] and len(train) >= 6
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return root


def run_two_processes(root, run_dir, *extra: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 remixformer train``; the whole process group is killed
    if it has not finished in TIMEOUT_S (plain DDP may wait forever for a gradient)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "remixformer",
        "-q",
        "train",
        *overrides(
            root,
            "train.max_epochs=2",
            "train.devices='2'",
            "train.batch_size=2",
            "data.remix=false",  # no image borrowed: the cases without dermoscopy stay without it
            *extra,
        ),
        "--run-dir",
        str(run_dir),
    ]
    log = run_dir.parent / f"{run_dir.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, _tail(log))


@pytest.mark.slow
def test_two_processes_train_when_one_ranks_batch_lacks_a_modality(one_dermoscopy_root, tmp_path):
    done = run_two_processes(one_dermoscopy_root, tmp_path / "run")
    assert done.returncode == 0, done.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_trained"] == 2
    a, b = summary["weight_checksums"]
    assert a == pytest.approx(b, rel=1e-9)
