"""The README's main job, at a size that runs in seconds: every file it promises, and a rerun that
reuses the trained models instead of training again."""

import json

import pytest

from remixformer.demo import run_demo


@pytest.mark.slow
def test_demo_writes_the_table_the_figure_and_reuses_trained_models(tmp_path):
    lines: list[str] = []
    res = run_demo(tmp_path, cases=60, epochs=1, seed=0, modalities=("CDM", "M"), report=lines.append)

    assert set(res["metrics"]) == {"CDM", "M"}
    table = (tmp_path / "table.md").read_text()
    assert "| Ours-CDM |" in table and "| Ours-M |" in table and "Always answering" in table
    floor = res["majority_class"]
    assert 0.0 < floor["accuracy"] < 1.0
    assert (tmp_path / "figures" / "modalities.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metrics"]["CDM"]["accuracy"] == res["metrics"]["CDM"]["accuracy"]
    for mods in ("cdm", "m"):
        assert (tmp_path / "runs" / f"small_{mods}" / "checkpoints" / "best.safetensors").is_file()
    assert any("training the small model on CDM" in line for line in lines)

    again: list[str] = []
    res2 = run_demo(tmp_path, cases=60, epochs=1, seed=0, modalities=("CDM", "M"), report=again.append)
    assert sum("already trained" in line for line in again) == 2
    assert res2["metrics"] == res["metrics"]
