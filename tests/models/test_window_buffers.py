"""Shifted-window masks and relative-position indices are made once per shape and device, equal the
computation they replace, and survive a first use under inference mode."""

import pytest
import torch
from timm.models.swin_transformer import get_relative_position_index

from remixformer.layers import windows
from remixformer.layers.windows import (
    clear_window_caches,
    relative_position_bias,
    shifted_window_mask,
    window_partition,
)
from remixformer.models.cls_swin import CLSWindowAttention


def old_shift_mask(H, W, window, shift):
    """The mask as every forward pass built it before (the original Swin's construction)."""
    img = torch.zeros((1, H, W, 1))
    cnt = 0
    for h in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for w in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[:, h, w, :] = cnt
            cnt += 1
    win = window_partition(img, window).squeeze(-1)
    mask = win.unsqueeze(1) - win.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


@pytest.fixture
def counted(monkeypatch):
    """Calls of the two builders, from a clean cache."""
    calls = {"mask": [], "index": []}
    build_mask, build_index = windows.build_shift_mask, windows.build_relative_index

    def mask(*args):
        calls["mask"].append(args)
        return build_mask(*args)

    def index(window):
        calls["index"].append(window)
        return build_index(window)

    monkeypatch.setattr(windows, "build_shift_mask", mask)
    monkeypatch.setattr(windows, "build_relative_index", index)
    clear_window_caches()
    yield calls
    clear_window_caches()


@pytest.mark.parametrize(
    ("H", "W", "window", "shift"), [(8, 8, 4, 2), (14, 14, 7, 3), (12, 8, 4, 2), (6, 6, 3, 1)]
)
def test_the_cached_mask_equals_the_old_computation(H, W, window, shift):
    clear_window_caches()
    mask = shifted_window_mask(H, W, window, shift, "cpu", torch.float32)
    assert torch.equal(mask, old_shift_mask(H, W, window, shift))
    half = shifted_window_mask(H, W, window, shift, torch.device("cpu"), torch.float16)
    assert half.dtype == torch.float16 and torch.equal(half.float(), mask)
    assert shifted_window_mask(H, W, window, 0, "cpu", torch.float32) is None


def test_the_cached_bias_equals_the_old_gather():
    torch.manual_seed(0)
    table = torch.randn((2 * 4 - 1) ** 2, 3)
    index = get_relative_position_index(4, 4)
    old = table[index.view(-1)].view(16, 16, 3).permute(2, 0, 1)
    assert torch.equal(relative_position_bias(table, 4, 4), old)


def test_repeated_forwards_of_one_shape_build_once(counted):
    torch.manual_seed(0)
    attn = CLSWindowAttention(dim=16, num_heads=2, window_size=4)
    cls, x = torch.randn(2, 1, 16), torch.randn(2, 8, 8, 16)
    first = attn(cls, x, window=4, shift=2)
    for _ in range(3):
        again = attn(cls, x, window=4, shift=2)
    assert counted["mask"] == [(8, 8, 4, 2)] and counted["index"] == [4]
    torch.testing.assert_close(again[1], first[1], rtol=0, atol=0)
    attn(cls, torch.randn(2, 12, 12, 16), window=4, shift=2)  # another grid: its own mask, the same index
    assert counted["mask"] == [(8, 8, 4, 2), (12, 12, 4, 2)] and counted["index"] == [4]


def test_buffers_first_made_under_inference_mode_serve_a_training_step(counted):
    torch.manual_seed(0)
    attn = CLSWindowAttention(dim=16, num_heads=2, window_size=4)
    cls, x = torch.randn(2, 1, 16), torch.randn(2, 8, 8, 16)
    with torch.inference_mode():
        attn(cls, x, window=4, shift=2)
    _, out, _ = attn(cls, x, window=4, shift=2)
    out.sum().backward()  # the cached index is saved for backward: it must not be an inference tensor
    assert attn.relative_position_bias_table.grad is not None
    assert len(counted["mask"]) == 1 and len(counted["index"]) == 1
