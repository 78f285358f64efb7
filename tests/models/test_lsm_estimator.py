"""The LSM estimator S_v / stopgrad(S_v) reaches the gradient of every token it scales (issue 13)."""

import pytest
import torch


def _csf_gradients(branch, seed=0):
    """Gradient norms of a random projection of CSF's outputs with respect to the LSM estimator's weights,
    separately through the local class token (w_cls), through the local patch tokens as the branch feeds
    them to CSF (w_patch), and through patch tokens scaled before CSF's LayerNorm (w_scaled)."""
    torch.manual_seed(seed)
    cfg = branch.cfg
    images = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    small = torch.nn.functional.interpolate(images, size=(cfg.global_size,) * 2, mode="bilinear")
    g_cls, g_grid, scores = branch.global_encoder(small, need_scores=True)
    sel = branch.lesion_selection(scores, g_grid.shape[1:3], images)
    l_cls_k, l_patch_k = branch.local_encoder(sel.crops.flatten(0, 1))
    w_cls, w_patch, w_scaled = (torch.ones_like(sel.weights, requires_grad=True) for _ in range(3))
    l_cls, _, _ = branch.aggregate_crops(l_cls_k, l_patch_k, w_cls)
    _, l_patch, patch_weight = branch.aggregate_crops(l_cls_k, l_patch_k, w_patch)
    g, l_out = branch.csf(g_cls, g_grid.flatten(1, 2), l_cls, l_patch, patch_weight)
    scaled = l_patch * w_scaled.repeat_interleave(l_patch_k.shape[1], dim=1)[..., None]
    g_scaled, _ = branch.csf.global_from_local(g_cls, scaled)
    r_g, r_l = torch.randn_like(g), torch.randn_like(l_out)
    ((g * r_g).sum() + (l_out * r_l).sum() + (g_scaled * r_g).sum()).backward()
    return w_cls.grad.norm().item(), w_patch.grad.norm().item(), w_scaled.grad.norm().item()


@pytest.mark.parametrize("seed", [0, 1])
def test_the_estimator_reaches_the_gradient_of_the_local_patch_tokens(tiny, seed):
    branch = tiny("C").train().branches["C"]
    via_cls, via_patches, via_scaled_tokens = _csf_gradients(branch, seed)
    assert 0.1 < via_patches / via_cls < 10  # the patch path carries a gradient of the class path's order
    # scaling the tokens themselves (before CSF's LayerNorm) would carry almost none: the norm cancels it
    assert via_scaled_tokens < 1e-3 * via_cls


def test_token_weights_are_the_estimator_on_the_local_patches_and_one_elsewhere(tiny):
    branch = tiny("C").train().branches["C"]
    out = branch(torch.randn(2, 3, 64, 64))
    assert out.token_weights.shape == out.tokens.shape[:2]
    torch.testing.assert_close(out.token_weights.detach(), torch.ones_like(out.token_weights))
    cfg = branch.cfg
    patches = cfg.num_crops * (cfg.crop_size // (cfg.patch_size * 8)) ** 2  # L's tokens come last
    qkv = branch.global_encoder.layers[-1].blocks[-1].attn.qkv.weight
    (on_patches,) = torch.autograd.grad(out.token_weights[:, -patches:].sum(), qkv, retain_graph=True)
    assert on_patches.abs().sum() > 0  # S_v / stopgrad(S_v): value 1, gradient to the LSM score
    on_rest = torch.autograd.grad(out.token_weights[:, :-patches].sum(), qkv, allow_unused=True)[0]
    assert on_rest is None or on_rest.abs().sum() == 0
