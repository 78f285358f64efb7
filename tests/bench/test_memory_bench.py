"""The memory benchmark's machinery: the saved-bytes count is exact, the memory check skips and marks,
a dead child is marked and the run goes on, the report is written. Measurements live in the benchmark,
not here: nothing below asserts a time or a memory figure of a model."""

import json

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from remixformer.bench.memory import (
    MODELS,
    BenchSettings,
    GiB,
    Row,
    SavedTensorCounter,
    check_targets,
    format_report,
    predict_peak,
    run_benchmark,
    write_json,
)


def test_counter_counts_distinct_storages_exactly():
    a = torch.randn(256, requires_grad=True)  # 1 KiB
    w = torch.nn.Parameter(torch.randn(256))  # 1 KiB, model state
    with SavedTensorCounter(state=[w]) as counter:
        b = a.sin()  # saves a
        d = a * a  # saves a twice: counted once
        e = b[:10].cos()  # saves a view of b: b's whole storage counts
        f = (d * w).sum()  # saves d and w
        torch.randn(1000, requires_grad=True).exp()  # saved, then dropped with its graph: not counted
    assert counter.bytes == 4 * 1024  # a, b, d, w
    assert counter.state_bytes == 1024  # w
    assert counter.storages == 4
    assert counter.packed >= 6
    (e.sum() + f).backward()  # the hooks hand the tensors back unchanged: gradients are right
    expected = 2 * a.detach() * w.detach()
    expected[:10] -= a.detach()[:10].sin().sin() * a.detach()[:10].cos()
    torch.testing.assert_close(a.grad, expected)


def test_counter_sees_checkpoint_inputs_not_recomputed_activations():
    lin = torch.nn.Linear(64, 64)
    x = torch.randn(8, 64, requires_grad=True)  # 2 KiB
    with SavedTensorCounter(state=lin.parameters()) as counter:
        y = checkpoint(lambda t: lin(t).relu().square().sum(), x, use_reentrant=False)
    assert counter.bytes == x.nbytes  # inside the region everything is recomputed in backward
    with SavedTensorCounter(state=lin.parameters()) as plain:
        z = lin(x).relu().square().sum()
    assert plain.bytes > counter.bytes + lin.weight.nbytes  # x, the weight, relu output, its square input
    y.backward()
    z.backward()


@pytest.mark.parametrize("modalities", ["C", "D"])
def test_counting_does_not_change_the_step(modalities):
    from remixformer.models import create_model

    model = create_model("remixformer_tiny", modalities, tasks=3).train()  # HRWE checkpoints its chunks
    s = model.config.clinical.image_size if modalities == "C" else model.config.dermoscopy.image_size
    batch = {"clinical" if modalities == "C" else "dermoscopy": torch.randn(2, 3, s, s)}
    grads = []
    for count in (False, True):
        torch.manual_seed(1)
        model.zero_grad()
        with SavedTensorCounter(model.parameters()) if count else torch.enable_grad():
            loss = model(batch)["logits"]["diag"].logsumexp(-1).sum()
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_hrwe_cuts_the_same_windows_chunk_by_chunk():
    from remixformer.models import create_model

    hrwe = create_model("remixformer_tiny", "D", tasks=2, dermoscopy={"image_size": 96}).branches["D"].hrwe
    img = torch.randn(2, 3, 96, 96)
    windows, grid = hrwe.windows(img)
    assert grid == (3, 3)
    for start, stop in ((0, 2), (2, 11), (11, 18)):  # chunks that cross rows and images
        torch.testing.assert_close(hrwe.window_chunk(img, start, stop), windows[start:stop], rtol=0, atol=0)


def _row(model, size, batch, base, peak, status="ok"):
    return Row(model, MODELS[model].label, size, batch, status, base_rss_bytes=base, peak_rss_bytes=peak)


def test_prediction_scales_the_growth_of_a_measured_row():
    done = [_row("vit_s16", 512, 1, 1 * GiB, 2 * GiB)]
    predicted, how = predict_peak("vit_s16", 512, 2, "paper", done)
    assert predicted == 3 * GiB and "batch-1" in how
    predicted, _ = predict_peak("vit_s16", 2048, 1, "paper", done)
    assert predicted == 17 * GiB  # 16 times the pixels
    # Ours-C holds its global copy and crops whatever the photo's size: the photo's size does not matter
    done = [_row("ours_c", 512, 1, 1 * GiB, 2 * GiB)]
    assert predict_peak("ours_c", 2048, 1, "paper", done)[0] == 2 * GiB
    assert predict_peak("ours_d", 512, 1, "paper", [])[1] == "prior"


def test_a_row_that_would_not_fit_is_skipped_and_marked(tmp_path):
    settings = BenchSettings(
        sizes=(64,),
        batches=(1, 2),
        models=("ours_d",),
        scale="tiny",
        memory_limit_bytes=2**20,
        margin_bytes=0,
    )
    report = run_benchmark(settings)  # nothing fits in 1 MiB: no child is started
    assert [r["status"] for r in report["rows"]] == ["skipped", "skipped"]
    assert all("would need ~" in r["note"] and "--memory-limit" in r["note"] for r in report["rows"])
    assert "skipped: would need" in format_report(report)
    path = write_json(report, tmp_path / "out" / "memory.json")
    assert json.loads(path.read_text())["rows"][0]["status"] == "skipped"


def test_a_dead_child_is_marked_failed_and_the_run_goes_on():
    settings = BenchSettings(sizes=(64,), batches=(1, 2), models=("vit_s16",), scale="tiny")
    settings.watchdog_floor_bytes = 2**62  # the watchdog kills every child at once
    report = run_benchmark(settings)
    assert [r["status"] for r in report["rows"]] == ["failed", "failed"]
    assert all("killed" in r["note"] for r in report["rows"])


def test_a_row_runs_in_a_child_and_the_report_is_written(tmp_path):
    settings = BenchSettings(sizes=(64,), batches=(1,), models=("vit_s16",), scale="tiny", steps=1)
    report = run_benchmark(settings)
    (row,) = report["rows"]
    assert row["status"] == "ok", row["note"]
    assert row["saved_bytes"] > row["saved_state_bytes"] > 0
    assert row["peak_rss_bytes"] >= row["base_rss_bytes"] > 0
    assert row["step_s"] > 0 and len(row["step_times_s"]) == 1
    assert [t["status"] for t in report["targets"]] == ["n/a"] * 3  # no 2048^2 row
    out = json.loads(write_json(report, tmp_path / "memory.json").read_text())
    assert out["rows"] == report["rows"] and out["settings"]["sizes"] == [64]


def test_targets_pass_and_fail_on_the_ratios_of_one_run():
    def ok(model, saved, step):
        return Row(model, MODELS[model].label, 2048, 1, saved_bytes=saved, step_s=step)

    rows = [
        ok("vit_s16", 1000, 100.0),
        ok("ours_d", 40, 30.0),
        ok("swin_t", 500, 1.0),
        ok("ours_c", 500, 1.0),
    ]
    status = {t["name"]: t["status"] for t in check_targets(rows, 2048, 1)}
    assert status == {"d_saved": "PASS", "d_time": "FAIL", "c_saved": "FAIL"}


def test_bad_settings_raise_value_error():
    with pytest.raises(ValueError, match="unknown benchmark model"):
        run_benchmark(BenchSettings(models=("resnet",)))
