"""Student/teacher meta-architecture: backbones identical to T_phi1 of each preset, EMA, no teacher
gradient, DINO's clipping, starting weights, and exports that load strictly into the dermoscopy branch."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from remixformer import create_model
from remixformer.config import resolve
from remixformer.models.dermoscopy import WindowEncoder
from remixformer.models.registry import resolve_config
from remixformer.models.weights import WeightLoadError
from remixformer.pretrain.config import resolve_sizes
from remixformer.pretrain.export import export_backbone, read_export_info
from remixformer.pretrain.heads import DINOHead
from remixformer.pretrain.meta_arch import DINOMetaArch, build_backbone
from remixformer.training.config import RunConfig

SMALL_HEAD = {"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8}


@pytest.mark.parametrize("preset", ["remixformer_paper", "remixformer_small", "remixformer_tiny"])
def test_backbone_is_the_presets_window_encoder(preset, tiny_cfg):
    cfg = tiny_cfg(backbone={"preset": preset}, windows={"resize_size": None})
    d = resolve_config(preset, modalities="D").dermoscopy
    ref = WindowEncoder(
        d.window_size,
        d.patch_size,
        d.embed_dim,
        d.depth,
        d.num_heads,
        d.mlp_ratio,
        0.0,
        conv_stem=d.conv_stem,
    ).vit
    ours = build_backbone(cfg)
    a, b = ours.state_dict(), ref.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    sizes = resolve_sizes(cfg)
    if preset == "remixformer_paper":  # ViT-S/16, 256^2 windows of 1024^2 (2048^2), 96^2 local views
        assert ours.embed_dim == 384 and len(ours.blocks) == 12
        w, c = sizes.windows, sizes.crops
        assert (w.window_size, w.resize_size, w.large_resize_size, c.global_size, c.local_size) == (
            256,
            1024,
            2048,
            256,
            96,
        )


def test_head_output_and_weight_normalised_last_layer():
    head = DINOHead(16, out_dim=10, hidden_dim=12, bottleneck_dim=4, nlayers=3, norm_last_layer=True)
    x = torch.randn(5, 16)
    out = head(x)
    assert out.shape == (5, 10) and out.abs().max() <= 1.0 + 1e-5  # cosines with unit prototypes
    assert not head.last_layer.scale.requires_grad
    assert DINOHead(16, 10, nlayers=1, norm_last_layer=False).last_layer.scale.requires_grad


def test_teacher_gets_no_gradient_and_ema_is_exact(tiny_cfg):
    meta = DINOMetaArch(tiny_cfg(head=SMALL_HEAD))
    for p_t, p_s in zip(meta.teacher.parameters(), meta.student.parameters()):
        assert torch.equal(p_t, p_s) and not p_t.requires_grad
    g, loc = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 16, 16)  # 2 global / 2 local views of 2 windows
    out = meta(g, loc, teacher_temp=0.04)
    out["loss"].backward()
    assert all(p.grad is None for p in meta.teacher.parameters())
    assert all(p.grad is not None for p in meta.student.parameters() if p.requires_grad)
    opt = torch.optim.AdamW(meta.param_groups(), lr=0.1)
    teacher_before = [p.clone() for p in meta.teacher.parameters()]
    opt.step()
    for t0, t in zip(teacher_before, meta.teacher.parameters()):
        assert torch.equal(t0, t)  # the optimiser does not touch the teacher
    meta.update_teacher(0.9)
    for t0, t, s in zip(teacher_before, meta.teacher.parameters(), meta.student.parameters()):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s)


def test_param_groups_and_clipping(tiny_cfg):
    meta = DINOMetaArch(tiny_cfg(head=SMALL_HEAD))
    decay, no_decay = meta.param_groups()
    assert decay["apply_wd"] and not no_decay["apply_wd"] and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in meta.student.named_parameters()}
    assert all(p.ndim <= 1 or names[id(p)].endswith(("cls_token", "pos_embed")) for p in no_decay["params"])
    assert all(p.ndim >= 2 for p in decay["params"])
    for p in meta.student.parameters():
        p.grad = torch.full_like(p, 10.0)
    norms = meta.clip_gradients(3.0)
    assert norms.max() > 3.0
    assert all(p.grad.norm() <= 3.0 + 1e-4 for p in meta.student.parameters())
    meta.cancel_last_layer_gradients()
    assert all(p.grad is None for p in meta.student.head.last_layer.parameters())


def test_starting_weights_from_a_dino_file_with_resized_positions(tmp_path, tiny_cfg):
    torch.manual_seed(3)
    sd = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).state_dict()
    sd["head.weight"] = torch.zeros(2, 384)  # a head to drop
    path = tmp_path / "dino_vits16.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    meta = DINOMetaArch(tiny_cfg(backbone={"preset": "remixformer_paper"}, head=SMALL_HEAD))
    note = meta.load_init_weights(str(path))
    assert "dropped 1 head tensors" in note
    for module in (meta.student.backbone, meta.teacher.backbone):
        torch.testing.assert_close(module.blocks[11].mlp.fc2.weight, sd["blocks.11.mlp.fc2.weight"])
        assert module.pos_embed.shape == (1, 1 + 16 * 16, 384)  # 14x14 resized to 16x16 (256^2 windows)
    with pytest.raises(WeightLoadError, match="not found"):
        meta.load_init_weights(str(tmp_path / "missing.safetensors"))
    small = DINOMetaArch(tiny_cfg(head=SMALL_HEAD))
    with pytest.raises(WeightLoadError, match="does not fit the backbone"):
        small.load_init_weights(str(path))


def test_unavailable_hub_weights_fall_back_to_scratch(tiny_cfg, caplog):
    meta = DINOMetaArch(tiny_cfg(head=SMALL_HEAD))
    with caplog.at_level("WARNING"):
        note = meta.load_init_weights("timm:no_such_model_for_remixformer_tests")
    assert "from scratch" in note and "starts from scratch" in caplog.text
    assert "from scratch" in meta.load_init_weights(None)


@pytest.mark.parametrize("preset", ["remixformer_paper", "remixformer_small"])
def test_export_loads_strictly_into_the_dermoscopy_branch(preset, tiny_cfg, tmp_path):
    cfg = tiny_cfg(backbone={"preset": preset})
    backbone = build_backbone(cfg, 0.0)
    path = export_backbone(backbone, tmp_path / "teacher_backbone.safetensors", cfg, epoch=3)
    info = read_export_info(path)
    assert info["preset"] == preset and info["epoch"] == 3 and "model.dermoscopy.pretrained" in info["use"]
    model = create_model(preset, "D", tasks=2, dermoscopy={"pretrained": str(path)})
    vit = model.branches["D"].window_encoder.vit
    for k, v in backbone.state_dict().items():
        assert torch.equal(vit.state_dict()[k], v), k
    assert len(model.load_reports["window_encoder"].loaded) == len(backbone.state_dict())
    # a supervised run config names the file (training.run.build_model_for passes these fields on)
    run = resolve(RunConfig, [], [f"model.preset={preset}", f"model.dermoscopy.pretrained={path}"])
    again = create_model(
        run.model.preset,
        "D",
        tasks=2,
        dermoscopy=run.model.dermoscopy,
    )
    torch.testing.assert_close(again.branches["D"].window_encoder.vit.pos_embed, backbone.pos_embed)
