"""CLS-WMSA's window attention hands 4-D tensors to ``scaled_dot_product_attention`` (so that fused CUDA
kernels may run it) and computes what the 5-D call it replaces computed."""

import pytest
import torch
import torch.nn.functional as F

from remixformer.models import cls_swin
from remixformer.models.cls_swin import CLSWindowAttention, window_attention


def old_window_attention(q, k, v, bias):
    """The call before: 5-D tensors (B, nW, h, n, d), which only the math kernel accepts."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


@pytest.mark.parametrize("nw_bias", [1, 4])  # a position bias alone, or with a shift mask per window
@pytest.mark.parametrize("with_cls", [True, False])
def test_window_attention_equals_the_5d_call(nw_bias, with_cls):
    torch.manual_seed(0)
    B, nW, h, n, d = 3, 4, 2, 16, 8
    m = n + 1 if with_cls else n
    q = torch.randn(B, nW, h, n, d)
    k, v = torch.randn(B, nW, h, m, d), torch.randn(B, nW, h, m, d)
    bias = torch.randn(1, nw_bias, h, n, m)
    if nw_bias > 1:
        bias = bias + torch.where(torch.rand(1, nW, 1, n, m) < 0.3, -100.0, 0.0)
    got = window_attention(q, k, v, bias)
    assert got.shape == (B, nW, h, n, d)
    torch.testing.assert_close(got, old_window_attention(q, k, v, bias), rtol=0, atol=1e-5)


def test_window_attention_hands_4d_tensors_to_sdpa(monkeypatch):
    shapes = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        shapes.append((q.dim(), k.dim(), v.dim(), None if attn_mask is None else attn_mask.dim()))
        return real(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(cls_swin.F, "scaled_dot_product_attention", spy)
    attn = CLSWindowAttention(dim=16, num_heads=2, window_size=4)
    attn(torch.randn(2, 1, 16), torch.randn(2, 8, 8, 16), window=4, shift=2)
    assert shapes and all(s[:3] == (4, 4, 4) and s[3] in (None, 4) for s in shapes)


@pytest.mark.parametrize(("shift", "hide_cls"), [(0, False), (2, False), (2, True)])
def test_cls_window_attention_equals_the_5d_path(monkeypatch, shift, hide_cls):
    torch.manual_seed(1)
    attn = CLSWindowAttention(dim=32, num_heads=4, window_size=4)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    cls, x = torch.randn(2, 1, 32), torch.randn(2, 10, 10, 32)  # 10 is not a multiple of 4: padding too
    new = attn(cls, x, window=4, shift=shift, hide_cls=hide_cls)
    monkeypatch.setattr(cls_swin, "window_attention", old_window_attention)
    old = attn(cls, x, window=4, shift=shift, hide_cls=hide_cls)
    for a, b in zip(new[:2], old[:2]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_a_bias_per_image_is_refused():
    q = torch.randn(2, 1, 1, 4, 8)
    with pytest.raises(ValueError, match="batch dimension 1"):
        window_attention(q, q, q, torch.zeros(2, 1, 1, 4, 4))
