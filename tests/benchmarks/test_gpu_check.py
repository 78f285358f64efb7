"""benchmarks/gpu_check.py --dry-run: every row runs on the CPU (tiny preset) and the JSON has the shape a
GPU run will have; rows that fail or run out of time are recorded, not fatal."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

PRECISIONS = ("fp32", "16-mixed", "bf16-mixed")
TRAIN = {f"train/b2/{p}/ckpt_{c}" for p in PRECISIONS for c in ("off", "on")}
TIMM = {f"timm_parts/b2/{p}" for p in PRECISIONS}
INFER = {f"infer/b{b}/{p}" for b in (1, 2) for p in ("fp32", "bf16")}


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_dry_run_runs_every_row_on_the_cpu_and_writes_the_json(load_script, tmp_path, capsys):
    script = load_script("gpu_check")
    out = tmp_path / "gpu_check.json"
    assert script.main(["--dry-run", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["benchmark"] == "gpu_check" and report["dry_run"] is True
    env = report["environment"]
    assert env["device"] == "cpu" and env["gpu"] is None
    assert env["torch"] == torch.__version__ and env["timm"] and env["lightning"] and "cuda" in env
    assert report["settings"]["preset"] == "remixformer_tiny" and report["settings"]["budget_s"] == 480

    rows = report["rows"]
    assert set(rows) == {"sdpa", "loader", "ddp", *TRAIN, *TIMM, *INFER}
    assert list(rows) == script.row_keys(script.settings_for(script.parse_args(["--dry-run"])))
    for key, row in rows.items():
        if key == "ddp":
            assert row["status"] == "skipped" and "2+ GPUs" in row["reason"]
        else:
            assert row["status"] == "ok", (key, row)
            assert row["seconds"] >= 0
    for key in TRAIN | TIMM:
        row = rows[key]
        assert row["batch"] == 2 and row["precision"] == key.split("/")[2]
        assert positive(row["step_s"]) and positive(row["cases_per_s"]) and positive(row["loss"])
        assert len(row["step_times_s"]) == 2 and all(positive(t) for t in row["step_times_s"])
        assert row["peak_gib"] is None and row["syncs_per_step"] is None and row["sync_sites"] is None
    for key in TRAIN:
        assert rows[key]["grad_checkpointing"] is key.endswith("ckpt_on")
    assert rows["timm_parts/b2/fp32"]["windows_per_case"] == 4  # tiny preset: 64^2 image, 32^2 windows
    for key in INFER:
        row = rows[key]
        assert positive(row["median_ms"]) and positive(row["cases_per_s"]) and row["peak_gib"] is None
        assert row["median_ms"] <= row["p95_ms"] and row["repeats"] == 2
    loader = rows["loader"]
    assert loader["num_workers"] == min(8, os.cpu_count() or 1) and loader["cases"] == 8
    assert positive(loader["cases_per_s"]) and positive(loader["cases_per_s_overall"])
    assert (loader["clinical_size"], loader["dermoscopy_size"]) == (64, 64)
    sdpa = rows["sdpa"]
    assert set(sdpa["kernels"]) == {"float32", "float16", "bfloat16"}
    assert "MATH" in sdpa["usable_forward_and_backward"]["float32"]
    assert sdpa["kernels"]["float32"]["MATH"] == {"forward": "ok", "backward": "ok"}

    ratios = report["ratios_cdm_to_timm_parts"]
    assert set(ratios) == TRAIN and all(positive(r) for r in ratios.values())
    printed = capsys.readouterr().out
    assert "train/b2/bf16-mixed/ckpt_on" in printed and f"wrote {out}" in printed


def test_a_spent_budget_skips_the_remaining_rows(load_script, tmp_path):
    script = load_script("gpu_check")
    out = tmp_path / "skipped.json"
    assert script.main(["--dry-run", "--budget-s", "0", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 16
    assert all(r == {"status": "skipped", "reason": "time budget of 0 s spent"} for r in rows.values())


def test_a_row_that_fails_is_recorded_and_the_run_goes_on(load_script):
    script = load_script("gpu_check")
    s = script.settings_for(script.parse_args(["--dry-run"]))
    runner = script.Runner(s)

    def out_of_memory():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    row = runner.run("train/b64/fp32/ckpt_off", out_of_memory)
    assert row["status"] == "error" and row["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert runner.run("next", lambda: {"x": 1})["status"] == "ok"
    assert set(runner.rows) == {"train/b64/fp32/ckpt_off", "next"}


def test_ratios_pair_each_cdm_row_with_the_timm_parts_row_of_its_batch_and_precision(load_script):
    script = load_script("gpu_check")
    rows = {
        "train/b8/fp32/ckpt_off": {"status": "ok", "step_s": 3.0},
        "train/b8/fp32/ckpt_on": {"status": "ok", "step_s": 4.5},
        "train/b8/bf16-mixed/ckpt_off": {"status": "ok", "step_s": 1.0},  # its timm row failed
        "train/b64/fp32/ckpt_off": {"status": "error", "error": "OutOfMemoryError"},
        "timm_parts/b8/fp32": {"status": "ok", "step_s": 1.5},
        "timm_parts/b8/bf16-mixed": {"status": "error", "error": "x"},
        "timm_parts/b64/fp32": {"status": "ok", "step_s": 2.0},
    }
    assert script.ratios(rows) == {"train/b8/fp32/ckpt_off": 2.0, "train/b8/fp32/ckpt_on": 3.0}


@pytest.mark.slow  # two CPU processes with gloo (~15-20 s on two busy cores)
def test_ddp_smoke_runs_two_ranks_whose_weights_agree(load_script):
    script = load_script("gpu_check")
    s = script.settings_for(script.parse_args(["--dry-run", "--ddp-on-cpu"]))
    row = script.Runner(s).run("ddp", lambda: script.ddp_row(s, script.Runner(s)))
    assert row["status"] == "ok", row
    assert row["world_size"] == 2 and row["backend"] == "gloo" and row["weights_agree"] is True
    assert len(row["step_times_s"]) == 2 and positive(row["step_s"])
