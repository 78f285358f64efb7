"""Pretrained weights from files written by the tests (timm models, randomly initialised)."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from remixformer import create_model
from remixformer.models.weights import WeightLoadError


@pytest.fixture(scope="module")
def swin_file(tmp_path_factory):
    torch.manual_seed(1)
    sd = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).state_dict()
    path = tmp_path_factory.mktemp("w") / "swin_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path, sd


@pytest.fixture(scope="module")
def dino_file(tmp_path_factory):
    torch.manual_seed(2)
    sd = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).state_dict()
    path = tmp_path_factory.mktemp("w") / "dino_vits16.pth"
    torch.save(sd, path)  # a plain state dict, as DINO publishes it
    return path, sd


def test_swin_t_weights_load_into_global_and_local_encoders(swin_file):
    path, sd = swin_file
    model = create_model("remixformer_paper", "C", tasks=4, clinical={"pretrained": str(path)})
    branch = model.branches["C"]
    torch.testing.assert_close(
        branch.global_encoder.layers[2].blocks[5].attn.qkv.weight, sd["layers.2.blocks.5.attn.qkv.weight"]
    )
    torch.testing.assert_close(
        branch.local_stage.blocks[1].mlp.fc2.weight, sd["layers.3.blocks.1.mlp.fc2.weight"]
    )
    torch.testing.assert_close(branch.local_norm.weight, sd["norm.weight"])
    report = model.load_reports["clinical"]
    assert "global_encoder.cls_token" in report.new
    assert any(n.startswith("csf.") for n in report.new)
    assert any("cls_reduction" in n for n in report.new)
    assert report.dropped == ["head.fc.bias", "head.fc.weight"]
    assert "new (randomly initialised)" in report.summary()


def test_dino_weights_load_into_the_window_encoder_with_resized_positions(dino_file):
    path, sd = dino_file
    model = create_model("remixformer_paper", "D", tasks=4, dermoscopy={"pretrained": str(path)})
    vit = model.branches["D"].window_encoder.vit
    torch.testing.assert_close(vit.blocks[11].attn.proj.weight, sd["blocks.11.attn.proj.weight"])
    assert vit.pos_embed.shape == (1, 1 + 16 * 16, 384)  # 224^2 positions resized to 256^2 windows
    torch.testing.assert_close(vit.pos_embed[:, 0], sd["pos_embed"][:, 0])  # the class position is kept
    report = model.load_reports["window_encoder"]
    assert any(n.startswith("region_encoder.") for n in report.new)
    assert any(n.startswith("hrwe.msta.") for n in report.new)


def test_dino_training_checkpoint_teacher_is_unwrapped(tmp_path, dino_file):
    _, sd = dino_file
    wrapped = {
        "teacher": {f"backbone.{k}": v for k, v in sd.items()} | {"head.last_layer.weight": torch.zeros(3)}
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(wrapped, path)
    model = create_model("remixformer_paper", "D", tasks=4, hrwe=False, dermoscopy={"pretrained": str(path)})
    assert "head.last_layer.weight" in model.load_reports["window_encoder"].dropped


def test_wrong_weights_fail_with_a_clear_message(dino_file, swin_file):
    with pytest.raises(WeightLoadError, match="does not fit a Swin encoder"):
        create_model("remixformer_paper", "C", tasks=4, clinical={"pretrained": str(dino_file[0])})
    with pytest.raises(WeightLoadError, match="does not fit a ViT window encoder"):
        create_model("remixformer_paper", "D", tasks=4, dermoscopy={"pretrained": str(swin_file[0])})


def test_linear_patch_weights_into_a_convolutional_stem_name_the_switch(dino_file, swin_file):
    with pytest.raises(WeightLoadError, match=r"linear projection.*clinical\.conv_stem=false"):
        create_model(
            "remixformer_paper",
            "C",
            tasks=4,
            clinical={"pretrained": str(swin_file[0]), "conv_stem": True},
        )
    with pytest.raises(WeightLoadError, match=r"linear projection.*dermoscopy\.conv_stem=false"):
        create_model(
            "remixformer_paper",
            "D",
            tasks=4,
            dermoscopy={"pretrained": str(dino_file[0]), "conv_stem": True},
        )


def test_truncated_or_missing_file_fails_with_its_name(tmp_path, swin_file):
    data = swin_file[0].read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightLoadError, match="cut.safetensors: could not read weights"):
        create_model("remixformer_paper", "C", tasks=4, clinical={"pretrained": str(cut)})
    with pytest.raises(WeightLoadError, match="not found"):
        create_model("remixformer_paper", "C", tasks=4, clinical={"pretrained": str(tmp_path / "nope.pth")})


def test_hub_loading_names_the_fix_when_offline(monkeypatch):
    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightLoadError, match="pass the file path instead"):
        create_model(
            "remixformer_tiny", "C", tasks=4, clinical={"pretrained": "timm:swin_tiny_patch4_window7_224"}
        )


def test_region_encoder_takes_vit_s_blocks_when_asked_and_reports_what_it_loaded(dino_file):
    path, sd = dino_file
    model = create_model(
        "remixformer_paper", "D", tasks=4, msta=False, dermoscopy={"region_pretrained": str(path)}
    )
    region = model.branches["D"].region_encoder
    for i in (0, 11):
        torch.testing.assert_close(region.blocks[i].attn.qkv.weight, sd[f"blocks.{i}.attn.qkv.weight"])
        torch.testing.assert_close(region.blocks[i].mlp.fc2.bias, sd[f"blocks.{i}.mlp.fc2.bias"])
    torch.testing.assert_close(region.norm.weight, sd["norm.weight"])
    report = model.load_reports["region_encoder"]
    assert report.new == ["region_encoder.cls_token", "region_encoder.pos_embed"]
    assert len(report.loaded) == len(sd) - 4  # all but patch_embed.proj.{weight,bias}, cls_token, pos_embed
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight"} <= set(report.dropped)
    # the switch off (the default): random blocks, no report
    plain = create_model("remixformer_paper", "D", tasks=4, msta=False)
    assert "region_encoder" not in plain.load_reports
    assert not torch.equal(
        plain.branches["D"].region_encoder.blocks[0].attn.qkv.weight, region.blocks[0].attn.qkv.weight
    )


def test_region_encoder_weights_that_do_not_fit_name_the_problem(tmp_path, dino_file, swin_file):
    with pytest.raises(WeightLoadError, match="0 blocks, but the region encoder has 12"):
        create_model("remixformer_paper", "D", tasks=4, dermoscopy={"region_pretrained": str(swin_file[0])})
    _, sd = dino_file
    short = tmp_path / "six_blocks.pth"
    torch.save(
        {k: v for k, v in sd.items() if not k.startswith("blocks.") or int(k.split(".")[1]) < 6}, short
    )
    with pytest.raises(WeightLoadError, match="6 blocks"):
        create_model("remixformer_paper", "D", tasks=4, dermoscopy={"region_pretrained": str(short)})
    with pytest.raises(WeightLoadError, match="wrong shapes"):
        create_model("remixformer_tiny", "D", tasks=4, dermoscopy={"region_pretrained": str(dino_file[0])})
    # single level: no region encoder, the weights are not used
    model = create_model(
        "remixformer_tiny", "D", tasks=4, hrwe=False, dermoscopy={"region_pretrained": str(dino_file[0])}
    )
    assert "region_encoder" not in model.load_reports
