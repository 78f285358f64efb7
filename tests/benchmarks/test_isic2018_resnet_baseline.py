"""The ResNet-18 baseline script on a tiny synthetic set: it trains, resumes without training again, and
writes its test metrics; a budget too small for one epoch is an error."""

import json

import pytest
import torch
import yaml

from remixformer.data.datasets.synthetic import generate


@pytest.fixture(scope="module")
def row_config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baseline")
    root = generate(tmp / "synthetic", n_cases=40, seed=3, clinical_size=64, dermoscopy_size=64)
    cfg = {
        "seed": 0,
        "model": {"preset": "remixformer_tiny", "modalities": "D"},
        "data": {"dataset": "synthetic", "root": str(root), "cache_images": True},
        "train": {"batch_size": 8, "lr": 0.001, "class_balance": "loss", "max_epochs": 3},
    }
    path = tmp / "row.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_baseline_trains_resumes_and_reports(load_script, row_config, tmp_path):
    script = load_script("isic2018_resnet_baseline")
    torch.set_num_threads(1)
    args = [
        "-c",
        str(row_config),
        "--quick",
        "--work-dir",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "r.json"),
    ]
    assert script.main(args) == 0
    first = json.loads((tmp_path / "r.json").read_text())
    assert first["epochs_trained"] == 2 and len(first["history"]) == 2
    assert 0.0 <= first["test"]["balanced_accuracy"] <= 1.0
    assert first["parameters_m"] == pytest.approx(11.2, abs=0.1)
    assert set(first["test"]["recall_per_class"]) == {
        "BCC",
        "NEV",
        "MEL",
        "SK",
        "MISC",
    }  # the synthetic classes
    # run again: resumed after its last epoch, nothing trained, the same test metrics
    assert script.main(args) == 0
    again = json.loads((tmp_path / "r.json").read_text())
    assert again["history"] == first["history"]
    assert again["test"] == first["test"]


def test_a_budget_too_small_for_one_epoch_is_an_error(load_script, row_config, tmp_path):
    script = load_script("isic2018_resnet_baseline")
    with pytest.raises(SystemExit, match="no epoch trained within --budget-min 0"):
        script.main(["-c", str(row_config), "--quick", "--budget-min", "0", "--work-dir", str(tmp_path)])
