"""benchmarks/int8_accuracy.py on a tiny checkpoint of a tiny synthetic set: the three backends predict the
same test cases, the float graph agrees with eager, the JSON is written."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.slow  # exports the tiny preset to ONNX (~1 min)
def test_eager_float_and_int8_graphs_are_scored_on_the_checkpoints_test_split(
    load_script, tiny_checkpoint, tmp_path, capsys
):
    script = load_script("int8_accuracy")
    out = tmp_path / "int8.json"
    assert script.main([str(tiny_checkpoint), "--threads", "1", "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    rows = result["rows"]
    assert list(rows) == ["eager", "onnxruntime", "onnxruntime-int8"]
    assert len({r["cases"] for r in rows.values()}) == 1 and rows["eager"]["cases"] > 0
    assert rows["onnxruntime"]["max_abs_prob_diff"] <= 1e-4 and rows["onnxruntime"]["top_class_changed"] == 0
    assert rows["onnxruntime"]["balanced_accuracy"] == rows["eager"]["balanced_accuracy"]
    assert 0 < rows["onnxruntime-int8"]["max_abs_prob_diff"] < 0.05
    assert result["onnx_mib"]["int8"] < result["onnx_mib"]["float"]
    assert "onnxruntime-int8" in capsys.readouterr().out
