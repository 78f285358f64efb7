"""save_pretrained / from_pretrained in the Hugging Face Hub layout, and `remixformer export --format hf`."""

from __future__ import annotations

import json

import pytest
import torch

from remixformer import create_model, keys
from remixformer.cli.main import main
from remixformer.models import hub
from remixformer.models.checkpoint import load_model, save_model
from remixformer.schema import MetadataSchema, categorical
from remixformer.serialization import CheckpointError

SCHEMA = MetadataSchema([categorical("sex", ["female", "male"])])
FACTS = {
    "training_data": "Derm7pt, 1,011 cases, official split",
    "data_licence": "CC BY-NC 4.0",
    "metrics": {"diag_accuracy": 0.781, "diag_auc": 0.912},
    "metrics_how": "test split (395 cases), one model, no test-time augmentation",
    "limitations": ["Few acral lesions in the training data."],
}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model(
        "remixformer_tiny", "CDM", tasks={"diag": ["A", "B", "C"]}, metadata_schema=SCHEMA.to_dict()
    )
    m.checkpoint_extra = {"run": "derm7pt-fold0", "dataset": "derm7pt", "epoch": 12}
    return m.eval()


def _outputs(model):
    g = torch.Generator().manual_seed(1)
    c = model.config
    batch = {
        keys.CLINICAL: torch.randn(2, 3, c.clinical.image_size, c.clinical.image_size, generator=g),
        keys.DERMOSCOPY: torch.randn(2, 3, c.dermoscopy.image_size, c.dermoscopy.image_size, generator=g),
        keys.METADATA: torch.tensor([[1.0, 0, 0], [0, 1, 0]]),
    }
    with torch.no_grad():
        return model(batch)[keys.LOGITS]["diag"]


def test_save_then_load_a_local_folder(model, tmp_path):
    out = hub.save_pretrained(model, tmp_path / "repo", card=FACTS)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "remixformer-model" and config["config"]["modalities"] == "CDM"
    assert config["extra"]["run"] == "derm7pt-fold0"
    loaded = hub.from_pretrained(out)
    assert loaded.config == model.config and loaded.checkpoint_extra == model.checkpoint_extra
    torch.testing.assert_close(_outputs(loaded), _outputs(model), atol=0, rtol=0)
    assert load_model(out / "model.safetensors").config == model.config  # a checkpoint on its own too


def test_model_card_states_use_data_metrics_and_limitations(model, tmp_path):
    card = (hub.save_pretrained(model, tmp_path / "repo", card=FACTS) / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\nlibrary_name: remixformer\n")
    assert "**Research tool, not a medical device.**" in card
    expected = ["## Intended use", "Derm7pt, 1,011 cases", "CC BY-NC 4.0", "| diag_auc | 0.912 |"]
    expected += ["test split (395 cases)", "Few acral lesions", "not validated for clinical use"]
    for text in expected:
        assert text in card
    blank = (hub.save_pretrained(model, tmp_path / "blank") / "README.md").read_text()
    assert blank.count(hub.TO_FILL) >= 3  # data, its licence, how metrics were measured, the metrics


def test_hub_id_goes_through_snapshot_download(model, tmp_path, monkeypatch):
    import huggingface_hub

    folder = hub.save_pretrained(model, tmp_path / "cache" / "snapshot")
    calls = []

    def fake_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        calls.append((repo_id, revision, allow_patterns))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    loaded = hub.from_pretrained("someone/remixformer-tiny", revision="v1")
    assert calls == [("someone/remixformer-tiny", "v1", ["config.json", "model.safetensors", "README.md"])]
    torch.testing.assert_close(_outputs(loaded), _outputs(model), atol=0, rtol=0)


def test_bad_folders_are_refused_naming_what_is_wrong(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        hub.from_pretrained(tmp_path / "nowhere" / "x" / "y")
    folder = hub.save_pretrained(model, tmp_path / "repo")
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        hub.from_pretrained(folder)
    other = create_model("remixformer_tiny", "CD", tasks={"diag": ["A", "B", "C"]})
    folder = hub.save_pretrained(model, tmp_path / "repo2")
    config = json.loads((folder / "config.json").read_text())
    config["config"]["modalities"] = other.config.modalities
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="describe different models"):
        hub.from_pretrained(folder)
    with pytest.raises(ValueError, match="unknown key"):
        hub.save_pretrained(model, tmp_path / "repo3", card={"licence": "mit", "accuracy": 1.0})


def test_export_command_writes_a_hub_folder(model, tmp_path, capsys):
    ckpt = save_model(model, tmp_path / "best.safetensors", model.checkpoint_extra)
    card = tmp_path / "card.yaml"
    card.write_text("training_data: synthetic cases\nmetrics:\n  diag_accuracy: 0.5\n")
    out = tmp_path / "hub"
    assert (
        main(
            [
                "-q",
                "export",
                "--checkpoint",
                str(ckpt),
                "--format",
                "hf",
                "--out",
                str(out),
                "--card",
                str(card),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    assert "synthetic cases" in (out / "README.md").read_text()
    assert hub.from_pretrained(out).checkpoint_extra["epoch"] == 12
