"""benchmarks/inference_latency.py --quick: every backend and thread count timed, the JSON written."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.slow  # exports the tiny preset to ONNX (~1 min)
def test_quick_run_times_eager_onnxruntime_and_int8_on_one_and_two_threads(load_script, tmp_path, capsys):
    script = load_script("inference_latency")
    out = tmp_path / "latency.json"
    assert script.main(["--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    result = report["presets"]["remixformer_tiny"]
    assert sorted(result["rows"]) == [
        "eager@1", "eager@2", "onnxruntime-int8@1", "onnxruntime-int8@2", "onnxruntime@1", "onnxruntime@2"
    ]  # fmt: skip
    for row in result["rows"].values():
        assert row["one_case"]["n"] == 3 and 0 < row["one_case"]["p50_ms"] <= row["one_case"]["p95_ms"]
        assert row["batch"]["cases"] == 4 and row["batch"]["cases_per_s"] > 0
    assert result["parity_max_abs_diff"] <= 1e-4
    int8 = result["int8"]
    assert 0 < int8["parity_max_abs_diff"] < 0.05 and int8["onnx_mib"] < result["onnx_mib"]
    assert set(report["speedups"]) == {
        f"remixformer_tiny {b}@{n}: {what}" for n in (1, 2) for b in ("onnxruntime", "onnxruntime-int8")
        for what in (f"eager/{b} p50", f"{b}/eager cases/s")
    }  # fmt: skip
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and f"wrote {out}" in printed


def test_speedups_compare_each_backend_with_eager_at_the_same_threads(load_script):
    script = load_script("inference_latency")
    row = lambda p50, cps: {"one_case": {"p50_ms": p50}, "batch": {"cases_per_s": cps}}  # noqa: E731
    rows = {"eager@1": row(10.0, 4.0), "onnxruntime@1": row(5.0, 6.0)}
    rows.update({"eager@2": row(8.0, 5.0), "compile@2": row(4.0, 10.0)})
    results = {"m": {"rows": rows}}
    assert script.speedups(results) == {
        "m onnxruntime@1: eager/onnxruntime p50": 2.0,
        "m onnxruntime@1: onnxruntime/eager cases/s": 1.5,
        "m compile@2: eager/compile p50": 2.0,
        "m compile@2: compile/eager cases/s": 2.0,
    }
