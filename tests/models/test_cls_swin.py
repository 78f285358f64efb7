"""CLS-Swin against timm's Swin: with the class token hidden, the patch features must be timm's."""

import pytest
import timm
import torch
from timm.models.swin_transformer import SwinTransformer

from remixformer.models.cls_swin import CLSSwinEncoder

CONFIGS = {
    # the real Swin-T architecture (random weights) at its native 224^2
    "swin_t": dict(
        patch_size=4, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, img=224
    ),
    # a small one with shifted windows in every stage that has more than one window
    "small": dict(
        patch_size=2, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4, img=64
    ),
    # windows of 3 on grids of 40, 20, 10, 5, each padded (42, 21, 12, 6) and shifted in every stage
    "padded": dict(
        patch_size=2, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=3, img=80
    ),
}


def _pair(name):
    c = dict(CONFIGS[name])
    img = c.pop("img")
    if name == "swin_t":
        ref = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=0)
    else:
        ref = SwinTransformer(img_size=img, num_classes=0, **c)
    ours = CLSSwinEncoder(ref_size=img, **c)
    result = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert all("cls" in k for k in result.missing_keys), result.missing_keys
    return ref.eval(), ours.eval(), img


@pytest.mark.parametrize("name", list(CONFIGS))
def test_patch_features_equal_timm_when_class_token_hidden(name):
    ref, ours, img = _pair(name)
    x = torch.randn(2, 3, img, img)
    with torch.no_grad():
        expected = ref.forward_features(x)  # B, h, w, C (normalised)
        _, patches, _ = ours(x, hide_cls=True)
    torch.testing.assert_close(patches, expected, rtol=1e-4, atol=1e-4)


def test_class_token_changes_patch_features_when_visible():
    ref, ours, img = _pair("small")
    x = torch.randn(1, 3, img, img)
    with torch.no_grad():
        hidden = ours(x, hide_cls=True)[1]
        visible = ours(x, hide_cls=False)[1]
    assert (hidden - visible).abs().max() > 1e-3


def test_lsm_scores_are_a_distribution_over_the_last_grid():
    _, ours, img = _pair("small")
    with torch.no_grad():
        cls, patches, scores = ours(torch.randn(2, 3, img, img), need_scores=True)
    h, w = patches.shape[1:3]
    assert scores.shape == (2, h * w)
    assert (scores >= 0).all()
    torch.testing.assert_close(scores.sum(-1), torch.ones(2))


def test_paper_windows_are_7x7_at_384_with_padding_and_equal_timm_swin_t_there():
    """The paper's "7x7 in our implementation" for G at 384^2: grids 96, 48, 24, 12 padded to multiples of 7
    as Swin pads them; with the class token hidden the features are timm's Swin-T built for 384^2 with 7x7
    windows (which pads the same way), for the same weights."""
    ref = SwinTransformer(
        img_size=384, patch_size=4, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7
    )
    ref.reset_classifier(0)
    ours = CLSSwinEncoder(window_size=7, ref_size=224, window_rule="fixed")
    result = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not result.unexpected_keys and all("cls" in k for k in result.missing_keys)
    assert [ours.stage_window(i, g) for i, g in enumerate((96, 48, 24, 12))] == [7, 7, 7, 7]
    x = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        expected = ref.eval().forward_features(x)
        _, patches, scores = ours.eval()(x, hide_cls=True, need_scores=True)
    torch.testing.assert_close(patches, expected, rtol=1e-4, atol=1e-4)
    assert scores.shape == (1, 144)  # the LSM score covers the 12x12 grid, not the padding


def test_scaled_window_rule_is_the_12x12_option():
    ours = CLSSwinEncoder(window_size=7, ref_size=224, window_rule="scaled")
    assert [ours.stage_window(i, g) for i, g in enumerate((96, 48, 24, 12))] == [12, 12, 12, 12]
    assert [ours.stage_window(i, g) for i, g in enumerate((56, 28, 14, 7))] == [7, 7, 7, 7]  # L's 224^2 crops
    with pytest.raises(ValueError, match="window_rule"):
        CLSSwinEncoder(window_rule="adaptive")


def test_paper_preset_uses_fixed_7x7_windows_and_the_option_gives_12x12():
    from remixformer import create_model

    G = create_model("remixformer_paper", "C", tasks=2).branches["C"].global_encoder
    assert G.window_rule == "fixed" and G.stage_window(3, 12) == 7
    G12 = create_model("remixformer_paper", "C", tasks=2, clinical={"window_rule": "scaled"})
    assert G12.branches["C"].global_encoder.stage_window(3, 12) == 12


def test_window_attention_has_no_dead_dropout_switches():
    from remixformer.models.cls_swin import CLSWindowAttention

    attn = CLSWindowAttention(16, 2, 4)
    assert not any(isinstance(m, torch.nn.Dropout) for m in attn.modules())
    assert not hasattr(attn, "attn_drop") and not hasattr(attn, "proj_drop")


def test_a_grid_smaller_than_the_window_is_one_window_and_the_decision_is_logged(caplog):
    from remixformer.models import cls_swin

    cls_swin._log_whole_grid_window.cache_clear()
    enc = CLSSwinEncoder(
        patch_size=2, embed_dim=8, depths=(1, 1), num_heads=(1, 1), window_size=4, ref_size=8
    )
    with caplog.at_level("INFO", logger="remixformer.models.cls_swin"):
        assert enc.stage_window(1, 2) == 2  # window 4 scaled to the 2x2 grid would be 4: one 2x2 window
    assert "smaller than the 4x4 window" in caplog.text and "stage 2" in caplog.text
