"""Backbone choices of the dermoscopy branch (Table XII): timm Swin-T / Swin-B as the window encoder or the
single-level encoder, ViT-B/16 single level; strict loading of timm weights."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from remixformer import create_model
from remixformer.models.weights import WeightLoadError

SWIN_T = "swin_tiny_patch4_window7_224"


def _swin_hrwe(**kw):
    dermoscopy = {"backbone": SWIN_T, "msta": False, "region_dim": 384, "image_size": 512} | kw
    return create_model("remixformer_paper", "D", tasks=3, dermoscopy=dermoscopy)


@pytest.fixture(scope="module")
def swin_file(tmp_path_factory):
    torch.manual_seed(3)
    sd = timm.create_model(SWIN_T, pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("w") / "swin_t.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path, sd


def test_swin_t_hrwe_has_the_tables_size_and_answers_without_a_window_map():
    model = _swin_hrwe().eval()
    assert abs(model.num_parameters("branches.D") / 1e6 - 49.1) < 0.1  # Table XII 'Swin-T + HRWE'
    with torch.no_grad():
        out = model({"dermoscopy": torch.randn(1, 3, 512, 512)}, explain=True)
    assert out["logits"]["diag"].shape == (1, 3) and torch.isfinite(out["logits"]["diag"]).all()
    assert out["explain"]["region_attention"].shape == (1, 2, 2)
    assert "window_attention" not in out["explain"]  # a Swin has no class-token attention


def test_swin_hrwe_trains_every_parameter_with_checkpointed_windows():
    model = _swin_hrwe(window_size=64, image_size=128, window_chunk_size=2).train()
    out = model({"dermoscopy": torch.randn(2, 3, 128, 128)})
    out["logits"]["diag"].square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_single_level_swin_and_vit_b_have_timms_sizes():
    with torch.device("meta"):
        swin_b = create_model(
            "remixformer_paper",
            "D",
            tasks=3,
            hrwe=False,
            dermoscopy={"backbone": "swin_base_patch4_window7_224", "single_level_size": 384},
        )
        vit_b = create_model(
            "remixformer_paper",
            "D",
            tasks=3,
            hrwe=False,
            dermoscopy={"single_level_size": 384, "embed_dim": 768, "num_heads": 12},
        )
        ref = timm.create_model("swin_base_patch4_window7_224", num_classes=0)
    assert swin_b.num_parameters("branches.D") == sum(p.numel() for p in ref.parameters())
    assert abs(vit_b.num_parameters("branches.D") / 1e6 - 86.1) < 0.05  # Table XII 'ViT-B/16'
    assert vit_b.branches["D"].out_dim == 768 and swin_b.branches["D"].out_dim == 1024


def test_timm_swin_weights_load_strictly_into_the_window_and_single_level_encoders(swin_file):
    path, sd = swin_file
    model = create_model(
        "remixformer_paper",
        "D",
        tasks=3,
        dermoscopy={
            "backbone": SWIN_T,
            "msta": False,
            "region_dim": 384,
            "image_size": 512,
            "pretrained": str(path),
        },
    )
    swin = model.branches["D"].window_encoder.swin
    torch.testing.assert_close(
        swin.layers[2].blocks[5].attn.qkv.weight, sd["layers.2.blocks.5.attn.qkv.weight"]
    )
    report = model.load_reports["window_encoder"]
    assert report.dropped == ["head.fc.bias", "head.fc.weight"]
    assert any(n.startswith("region_encoder.") for n in report.new) and "window_proj.weight" in report.new
    single = create_model(
        "remixformer_paper",
        "D",
        tasks=3,
        hrwe=False,
        dermoscopy={"backbone": SWIN_T, "single_level_size": 384, "pretrained": str(path)},
    )
    torch.testing.assert_close(single.branches["D"].single_level.swin.norm.weight, sd["norm.weight"])
    with pytest.raises(WeightLoadError, match="does not fit a Swin encoder"):
        create_model(
            "remixformer_paper",
            "D",
            tasks=3,
            hrwe=False,
            dermoscopy={
                "backbone": "swin_base_patch4_window7_224",
                "single_level_size": 384,
                "pretrained": str(path),
            },
        )


@pytest.mark.parametrize(
    ("dermoscopy", "match"),
    [
        ({"backbone": SWIN_T}, "MSTA is defined on the ViT"),
        ({"backbone": SWIN_T, "msta": False, "conv_stem": True}, "own patch embedding"),
        ({"backbone": SWIN_T, "msta": False, "window_size": 48, "image_size": 96}, "multiple of 32"),
        ({"backbone": "resnet50"}, "backbone"),
    ],
)
def test_bad_backbone_settings_are_value_errors(dermoscopy, match):
    with pytest.raises(ValueError, match=match):
        create_model("remixformer_paper", "D", tasks=3, dermoscopy=dermoscopy)


# --- clinical branch: one timm ViT as G and L (Table X's ViT rows) -----------------------------------

VIT_S = "vit_small_patch16_224"
SMALL_PHOTO = {"backbone": VIT_S, "image_size": 448, "global_size": 224, "crop_size": 112}


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    torch.manual_seed(4)
    sd = timm.create_model(VIT_S, pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("w") / "vit_s.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path, sd


def test_clinical_vit_trains_every_parameter_and_explains_its_lsm():
    model = create_model("remixformer_paper", "C", tasks=3, clinical=SMALL_PHOTO).train()
    out = model({"clinical": torch.randn(2, 3, 448, 448)})
    out["logits"]["diag"].square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    with torch.no_grad():
        maps = model.eval()({"clinical": torch.randn(1, 3, 448, 448)}, explain=True)["explain"]
    assert maps["lsm_scores"].shape == (1, 14, 14)  # 224 / 16
    torch.testing.assert_close(maps["lsm_scores"].sum(), torch.tensor(1.0))
    assert maps["lsm_boxes"].shape == (1, 4, 4)


def test_clinical_vit_global_attention_learns_through_the_estimator():
    model = create_model("remixformer_paper", "C", tasks=3, csf=False, clinical=SMALL_PHOTO).train()
    branch = model.branches["C"]
    out = branch(torch.randn(2, 3, 448, 448))
    out.embedding[:, branch.token_dim :].square().sum().backward()  # the local half: l_cls only
    qkv = branch.global_encoder.vit.blocks[-1].attn.qkv.weight
    assert qkv.grad is not None and qkv.grad.abs().sum() > 0


def test_clinical_vit_sizes_and_strict_loading(vit_file):
    path, sd = vit_file
    with torch.device("meta"):
        vit_b = create_model(
            "remixformer_paper", "C", tasks=3, lsm=False, clinical={"backbone": "vit_base_patch16_224"}
        )
    assert abs(vit_b.num_parameters("branches.C") / 1e6 - 86.1) < 0.05  # Table X 'ViT-B/16' (384^2 positions)
    model = create_model(
        "remixformer_paper", "C", tasks=3, clinical={"backbone": VIT_S, "pretrained": str(path)}
    )
    vit = model.branches["C"].global_encoder.vit
    torch.testing.assert_close(vit.blocks[7].mlp.fc1.weight, sd["blocks.7.mlp.fc1.weight"])
    assert vit.pos_embed.shape == (1, 1 + 24 * 24, 384)  # 14x14 positions resized to G's 24x24 grid
    report = model.load_reports["clinical"]
    assert all(n.startswith("csf.") for n in report.new) and report.new
    assert report.dropped == ["head.bias", "head.weight"]
    with pytest.raises(WeightLoadError, match="does not fit the clinical ViT"):
        create_model(
            "remixformer_paper",
            "C",
            tasks=3,
            clinical={"backbone": "vit_base_patch16_224", "pretrained": str(path)},
        )


def test_clinical_vit_geometry_errors():
    with pytest.raises(ValueError, match="multiple of 16"):
        create_model("remixformer_paper", "C", tasks=3, clinical={"backbone": VIT_S, "crop_size": 200})
    with pytest.raises(ValueError, match="own patch embedding"):
        create_model("remixformer_paper", "C", tasks=3, clinical={"backbone": VIT_S, "conv_stem": True})


def test_checkpoints_of_the_new_backbones_round_trip(tmp_path):
    from remixformer import load_model, save_model

    torch.manual_seed(5)
    model = create_model(
        "remixformer_paper",
        "CD",
        tasks=3,
        clinical=SMALL_PHOTO,
        dermoscopy={
            "backbone": SWIN_T,
            "msta": False,
            "region_dim": 384,
            "image_size": 256,
            "region_depth": 1,
        },
    ).eval()
    path = save_model(model, tmp_path / "m.safetensors")
    again = load_model(path)
    assert again.config == model.config
    batch = {"clinical": torch.randn(1, 3, 448, 448), "dermoscopy": torch.randn(1, 3, 256, 256)}
    with torch.no_grad():
        torch.testing.assert_close(model(batch)["logits"]["diag"], again(batch)["logits"]["diag"])
