"""The README's main job, at a size that runs in seconds: every file it promises, and a rerun that
reuses the trained models instead of training again."""

import json
import shutil

import pytest

from remixformer.demo import run_demo

SMALL = {"cases": 60, "epochs": 1, "seed": 0, "test_cases": 20}


@pytest.mark.slow
def test_demo_writes_the_table_the_figure_and_reuses_trained_models(tmp_path):
    lines: list[str] = []
    res = run_demo(tmp_path, modalities=("CDM", "M"), report=lines.append, **SMALL)

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
    res2 = run_demo(tmp_path, modalities=("CDM", "M"), report=again.append, **SMALL)
    assert sum("already trained" in line for line in again) == 2
    assert res2["metrics"] == res["metrics"]
    assert res["test_cases"] == 20 and res["test_cases_compared"] > 20  # the extra cases are compared

    # a rerun with another recipe or another set never reuses what is there
    with pytest.raises(ValueError, match=r"trained with another recipe .*train\.max_epochs"):
        run_demo(tmp_path, modalities=("CDM",), report=again.append, **{**SMALL, "epochs": 2})
    with pytest.raises(ValueError, match="holds a synthetic set with"):
        run_demo(tmp_path, modalities=("M",), report=again.append, **{**SMALL, "test_cases": 30})

    # ... while a demo folder that moved is still reused
    moved = tmp_path.with_name(tmp_path.name + "_moved")
    shutil.copytree(tmp_path, moved)
    third: list[str] = []
    run_demo(moved, modalities=("CDM", "M"), report=third.append, **SMALL)
    assert sum("already trained" in line for line in third) == 2
