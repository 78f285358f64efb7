"""Pretraining the clinical CLS-Swin encoder, and pretraining on a data set's training cases only."""

import json

import pytest
import torch

from remixformer import create_model
from remixformer.config import from_dict
from remixformer.data.datasets.synthetic import generate
from remixformer.data.registry import load_dataset
from remixformer.data.splits import splits_from_config
from remixformer.models.cls_swin import CLSSwinEncoder
from remixformer.models.weights import WeightLoadError
from remixformer.pretrain.config import PretrainConfig, resolve_sizes
from remixformer.pretrain.export import read_export_info
from remixformer.pretrain.meta_arch import DINOMetaArch
from remixformer.pretrain.run import pretrain

CLINICAL = {"backbone": {"preset": "remixformer_tiny", "encoder": "clinical_encoder", "pretrained": None}}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(
        tmp_path_factory.mktemp("syn") / "synthetic", n_cases=30, seed=5, clinical_size=64, dermoscopy_size=64
    )


@pytest.fixture
def clinical_cfg(synth, tiny_cfg):
    return lambda *overrides: tiny_cfg(
        "backbone.encoder=clinical_encoder",
        "data.dataset=synthetic",
        f"data.root={synth}",
        "data.protocol=kfold",
        "data.n_folds=3",
        "data.fold=1",
        "data.synthetic_cases=30",
        "data.synthetic_seed=5",
        *overrides,
    )


def test_sizes_follow_the_clinical_preset_and_are_checked():
    cfg = resolve_sizes(from_dict(PretrainConfig, CLINICAL))
    # remixformer_tiny's clinical section: photo 64, global view 32, LSM crops 16
    assert cfg.windows.window_size == cfg.windows.resize_size == 64
    assert (cfg.crops.global_size, cfg.crops.local_size) == (32, 16)
    bad = from_dict(PretrainConfig, {**CLINICAL, "crops": {"local_size": 12}})
    with pytest.raises(ValueError, match=r"crops.local_size \(12\) must be a multiple of 16"):
        resolve_sizes(bad)


def test_backbone_is_the_presets_cls_swin_and_its_class_token_feeds_the_head():
    meta = DINOMetaArch(resolve_sizes(from_dict(PretrainConfig, CLINICAL)))
    assert isinstance(meta.student.backbone, CLSSwinEncoder)
    ref = create_model("remixformer_tiny", "C", tasks=2).branches["C"].global_encoder
    assert {k: v.shape for k, v in meta.student.backbone.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    out = meta(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 16, 16), teacher_temp=0.04)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    no_decay = {id(p) for g in meta.param_groups() if not g["apply_wd"] for p in g["params"]}
    bias_tables = [p for n, p in meta.student.named_parameters() if "relative_position_bias_table" in n]
    assert bias_tables and all(id(p) in no_decay for p in bias_tables)


def test_test_split_is_refused():
    with pytest.raises(ValueError, match="data_splits may name train and val only"):
        from_dict(PretrainConfig, {**CLINICAL, "data_splits": ["train", "test"]})


def test_clinical_pretraining_on_training_cases_exports_weights_the_branch_loads(clinical_cfg, tmp_path):
    summary = pretrain(clinical_cfg("optim.epochs=1"), tmp_path / "run")
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    source = data["source"]
    assert source["dataset"] == "synthetic" and source["fold"] == 1 and source["modality"] == "C"
    # only the photos of the training and validation cases of fold 1; none of its test cases
    table = load_dataset(clinical_cfg().data)
    parts = splits_from_config(table, clinical_cfg().data)
    test_photos = {p for i in parts["test"] for p in table.cases[i].images("C")}
    used = {line.split(",")[0] for line in (tmp_path / "run" / "windows.csv").read_text().splitlines()[1:]}
    assert used and not any(u in str(p) or str(p).endswith(u) for u in used for p in test_photos)
    assert source["images"] == len(used)

    export = summary["export"]
    info = read_export_info(export)
    assert info["architecture"]["class"].endswith("CLSSwinEncoder")
    assert info["pretrained_on"]["test_cases_excluded"] == len(parts["test"])
    model = create_model("remixformer_tiny", "C", tasks=3, clinical={"pretrained": export})
    report = model.load_reports["clinical"]
    assert not [n for n in report.new if n.startswith("global_encoder.")]  # every tensor of G came from it
    branch = model.branches["C"]
    torch.testing.assert_close(
        branch.local_stage.blocks[0].attn.qkv.weight,
        branch.global_encoder.layers[-1].blocks[0].attn.qkv.weight,
    )
    # a window-encoder export is not clinical weights
    with pytest.raises(WeightLoadError):
        create_model("remixformer_small", "C", tasks=3, clinical={"pretrained": export})


def test_pretraining_can_continue_from_a_clinical_export(clinical_cfg, tmp_path):
    first = pretrain(clinical_cfg("optim.epochs=1"), tmp_path / "a")
    cfg = clinical_cfg("optim.epochs=1", f"backbone.pretrained={first['export']}")
    second = pretrain(cfg, tmp_path / "b")
    assert second["init"] == f"backbone from {first['export']}"


def test_a_trained_models_clinical_encoder_exports_and_another_model_starts_from_it(tmp_path, capsys):
    """`remixformer export --format clinical-encoder`: G of a C model (e.g. trained on dermoscopy images,
    data.dermoscopy_as_clinical) in the clinical-encoder format; a CM model loads it into G and L."""
    from remixformer.cli.main import main
    from remixformer.models.checkpoint import save_model

    torch.manual_seed(0)
    source = create_model("remixformer_tiny", "C", tasks={"diag": ["A", "B", "C"]})
    with torch.no_grad():  # weights no fresh model has
        for p in source.branches["C"].global_encoder.parameters():
            p.add_(torch.randn_like(p))
    ckpt = save_model(source, tmp_path / "c.safetensors")
    out = tmp_path / "G.safetensors"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "clinical-encoder", "--out", str(out)]) == 0
    assert "model.clinical.pretrained" in capsys.readouterr().out
    info = read_export_info(out)
    assert info["preset"] == "remixformer_tiny" and info["from_checkpoint"] == str(ckpt)
    assert info["architecture"]["class"].endswith("CLSSwinEncoder")

    target = create_model("remixformer_tiny", "CM", metadata_dim=4, clinical={"pretrained": str(out)})
    G_src = source.branches["C"].global_encoder.state_dict()
    G_dst = target.branches["C"].global_encoder.state_dict()
    assert G_src.keys() == G_dst.keys() and all(torch.equal(G_src[k], G_dst[k]) for k in G_src)
    last = len(source.branches["C"].global_encoder.layers) - 1
    L = target.branches["C"].local_stage.state_dict()
    assert all(torch.equal(v, G_src[f"layers.{last}.{k}"]) for k, v in L.items())

    d_ckpt = save_model(
        create_model("remixformer_tiny", "D", tasks={"diag": ["A", "B", "C"]}), tmp_path / "d.safetensors"
    )
    assert main(["export", "--checkpoint", str(d_ckpt), "--format", "clinical-encoder", "--out", str(out)])
    assert "d.safetensors: the model has no clinical branch (modalities D)" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--format", "clinical-encoder", "--out", "G.pt"])
    assert "expected a file name ending in .safetensors" in capsys.readouterr().err
