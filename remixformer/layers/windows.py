"""Window partitioning, shifted-window masks and relative position bias for Swin-style attention.

Partitioning follows timm's Swin (same memory layout, so timm weights and features line up).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import get_relative_position_index
from timm.models.swin_transformer import window_partition as _timm_window_partition
from timm.models.swin_transformer import window_reverse as _timm_window_reverse


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, window * window, C), windows in row-major order per image."""
    C = x.shape[-1]
    return _timm_window_partition(x, (window, window)).view(-1, window * window, C)


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """(B * nW, window * window, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    return _timm_window_reverse(windows.view(-1, window, window, C), (window, window), H, W)


def stage_window_size(grid: int, ref_grid: int, ref_window: int) -> int:
    """Window of a stage whose token grid is ``grid``, for a model whose window is ``ref_window`` at
    ``ref_grid`` (timm's rule: the window scales with the grid). The result may be larger than the grid;
    the caller decides what then happens (CLS-Swin takes the whole grid as one window, as Swin does,
    and logs it)."""
    return max(1, ref_window * grid // ref_grid)


def build_shift_mask(H: int, W: int, window: int, shift: int) -> torch.Tensor:
    """The additive mask (nW, n*n, n*n) of shifted windows on an H x W grid, built on the CPU in float32
    (uncached; :func:`shifted_window_mask` gives the cached copy on a device)."""
    img = torch.zeros((1, H, W, 1))
    cnt = 0
    for h in ((0, -window), (-window, -shift), (-shift, None)):
        for w in ((0, -window), (-window, -shift), (-shift, None)):
            img[:, h[0] : h[1], w[0] : w[1], :] = cnt
            cnt += 1
    win = window_partition(img, window)[..., 0]  # nW, n*n
    mask = win[:, None, :] - win[:, :, None]
    # -100, not -inf: the value timm and the original Swin use, so features match them exactly
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def build_relative_index(window: int) -> torch.Tensor:
    """Index (n*n, n*n) into a relative-position table of a ``window`` (timm's; uncached)."""
    return get_relative_position_index(window, window)


# Made once per (shape, device, dtype) and kept: no CPU build and host-to-device copy in every block of
# every forward pass. The cached tensors are shared: never modify them in place. They are built outside
# inference mode, so that a first use under ``torch.inference_mode`` (Lightning's validation) does not
# leave an inference tensor that a later training step could not save for backward.
@functools.lru_cache(maxsize=128)
def _device_shift_mask(
    H: int, W: int, window: int, shift: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    with torch.inference_mode(False), torch.no_grad():
        return build_shift_mask(H, W, window, shift).to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _device_relative_index(window: int, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False), torch.no_grad():
        return build_relative_index(window).to(device)


def clear_window_caches() -> None:
    """Forget the cached masks and indices (tests; or to free their device memory)."""
    _device_shift_mask.cache_clear()
    _device_relative_index.cache_clear()


def shifted_window_mask(H: int, W: int, window: int, shift: int, device, dtype) -> torch.Tensor | None:
    """Additive mask (nW, n*n, n*n) that keeps shifted windows from mixing wrapped-around regions; made
    once per (grid, window, shift, device, dtype) and shared (read-only)."""
    if shift == 0:
        return None
    if torch.compiler.is_compiling():  # under torch.export / torch.compile the tensors are fake: no cache
        return build_shift_mask(H, W, window, shift).to(device=device, dtype=dtype)
    return _device_shift_mask(H, W, window, shift, torch.device(device), dtype)


def relative_position_bias(table: torch.Tensor, table_window: int, window: int) -> torch.Tensor:
    """Bias (heads, n*n, n*n) for a ``window`` from a table learnt for ``table_window``.

    When the windows differ (the global encoder sees a larger image than the local one while sharing
    its stages) the table is interpolated bicubically on the fly, which keeps it differentiable.
    """
    num_heads = table.shape[1]
    if window != table_window:
        src = 2 * table_window - 1
        dst = 2 * window - 1
        grid = table.T.reshape(1, num_heads, src, src)
        grid = F.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=True)
        table = grid.reshape(num_heads, dst * dst).T
    if torch.compiler.is_compiling():  # fake tensors while tracing: never cache them
        index = build_relative_index(window).to(table.device)
    else:
        index = _device_relative_index(window, table.device)  # made once per window and device
    bias = table[index.view(-1)].view(window * window, window * window, num_heads)
    return bias.permute(2, 0, 1).contiguous()
