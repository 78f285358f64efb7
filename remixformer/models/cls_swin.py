"""CLS-Swin: a Swin Transformer with a class token (the paper's CLS-WMSA, eqs. 1-5).

Read top to bottom: the attention with a class token, the block, patch merging with a class-token
projection, the stage, the encoder.

* One qkv projection and one output projection serve the class token and the patch tokens, with the
  shapes of a plain Swin window attention, so timm's ``swin_tiny_patch4_window7_224`` weights load
  unchanged. Module and parameter names mirror timm's ``SwinTransformer``.
* The class token attends to itself and to every patch token of the image (eq. 1): global, O(N).
* Each patch token attends to the tokens of its own window plus the class token (eq. 3). The relative
  position bias applies to patch-patch pairs only; the shifted-window mask stays among patches; the
  class token's key is never masked. With ``hide_cls=True`` the class token is left out of the patch
  attention and the patch features equal timm's Swin exactly (the test of this file's correctness).
* Windows: the paper's 7x7 at every input size (``window_rule="fixed"``, the paper preset): the global
  encoder's 96, 48, 24 and 12 token grids (384^2 input) are padded to multiples of 7 as Swin pads them.
  Or (``"scaled"``) the window follows the token grid as timm scales it (12x12 at 384^2); the relative
  position table shared with the local encoder (224^2 crops, 7x7 windows) is then interpolated when the
  window differs from the one it was learnt for.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, PatchEmbed, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from remixformer.layers.stem import ConvStemPatchEmbed
from remixformer.layers.windows import (
    relative_position_bias,
    shifted_window_mask,
    stage_window_size,
    window_partition,
    window_reverse,
)

log = logging.getLogger(__name__)

WINDOW_RULES = ("fixed", "scaled")


@functools.lru_cache(maxsize=64)
def _log_whole_grid_window(stage: int, grid: int, window: int) -> None:
    """Say once per (stage, grid, window) that a stage's window was reduced to its whole token grid."""
    log.info(
        "CLS-Swin stage %d: the %dx%d token grid is smaller than the %dx%d window; the stage attends "
        "within one %dx%d window without shift (Swin's rule)",
        stage + 1,
        grid,
        grid,
        window,
        window,
        grid,
        grid,
    )


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Attention within windows: ``q`` (B, nW, h, n, d), ``k``/``v`` (B, nW, h, m, d), additive ``bias``
    broadcastable to (B, nW, h, n, m) with a batch dimension of 1 (position bias and shift mask are the
    same for every image). Returns (B, nW, h, n, d).

    The windows and heads are folded into one dimension, so that ``scaled_dot_product_attention`` gets
    4-D tensors (B, nW*h, n, d): its fused CUDA kernels refuse 5-D ones (the math kernel was used), and
    the bias (1, nW*h, n, m) still broadcasts over the batch without a copy per image."""
    B, nW, h, n, d = q.shape
    m = k.shape[3]
    if bias.shape[0] != 1:
        raise ValueError(
            f"window_attention: expected a bias with batch dimension 1, got shape {tuple(bias.shape)}"
        )
    mask = bias.expand(1, nW, h, n, m).reshape(1, nW * h, n, m)
    z = F.scaled_dot_product_attention(
        q.reshape(B, nW * h, n, d), k.reshape(B, nW * h, m, d), v.reshape(B, nW * h, m, d), attn_mask=mask
    )
    return z.reshape(B, nW, h, n, d)  # a fused kernel may return another memory layout


class CLSWindowAttention(nn.Module):
    """Window attention with a class token (CLS-WMSA)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"CLS-Swin: width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.window_size = window_size  # the window the relative position table is learnt for
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        # no attention or projection dropout: Swin-T is trained without them (timm's defaults are 0) and
        # the paper names none; drop path (stochastic depth) is the block's only regulariser
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"relative_position_bias_table"}

    def forward(
        self,
        cls: torch.Tensor,
        x: torch.Tensor,
        window: int,
        shift: int,
        hide_cls: bool = False,
        need_scores: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``cls``: (B, 1, C), ``x``: (B, H, W, C), both normalised.

        Returns the class token (B, 1, C), the patch tokens (B, H, W, C) and, with ``need_scores``, the
        LSM attention score S^attn of eqs. 6-8 over the H*W patches (B, H*W), summing to one.
        """
        B, H, W, C = x.shape
        h, d = self.num_heads, C // self.num_heads
        q_c, k_c, v_c = self.qkv(cls).view(B, 1, 3, h, d).permute(2, 0, 3, 1, 4)  # each B, h, 1, d
        qkv = self.qkv(x)  # B, H, W, 3C

        # eq. 1: the class token attends to itself and to every patch token of the image
        q_p, k_p, v_p = qkv.view(B, H * W, 3, h, d).permute(2, 0, 3, 1, 4)  # each B, h, N, d
        z_cls = F.scaled_dot_product_attention(
            q_c, torch.cat([k_c, k_p], dim=2), torch.cat([v_c, v_p], dim=2)
        )  # B, h, 1, d

        scores = None
        if need_scores:  # eqs. 6-8, from this block's queries and keys
            scale = d**-0.5
            o1 = ((q_c * scale) @ k_p.transpose(-2, -1))[:, :, 0].softmax(dim=-1)  # B, h, N: cls -> patches
            o2 = ((q_p * scale) @ k_c.transpose(-2, -1))[..., 0].softmax(dim=-1)  # B, h, N: patches -> cls
            scores = (o1 * o2).mean(dim=1)
            scores = scores / scores.sum(dim=-1, keepdim=True)

        # eq. 3: patch tokens attend within their (shifted) window, plus the class token
        if shift:
            qkv = torch.roll(qkv, shifts=(-shift, -shift), dims=(1, 2))
        ph, pw = -H % window, -W % window
        if ph or pw:
            # a grid the window does not tile is padded at the bottom and right after the shift, as Swin
            # does (timm's order): padded tokens are zeros after the norm, so their q, k, v are the
            # projection's bias; like Swin and timm we do not mask them; their outputs are dropped below
            fill = self.qkv.bias if self.qkv.bias is not None else qkv.new_zeros(qkv.shape[-1])
            fill = fill.to(qkv.dtype)
            qkv = torch.cat([qkv, fill.expand(B, ph, W, -1)], dim=1)
            qkv = torch.cat([qkv, fill.expand(B, H + ph, pw, -1)], dim=2)  # B, Hp, Wp, 3C
        Hp, Wp = H + ph, W + pw
        windows = window_partition(qkv, window)  # B*nW, n*n, 3C
        nW, n2 = windows.shape[0] // B, window * window
        q, k, v = windows.view(B, nW, n2, 3, h, d).permute(3, 0, 1, 4, 2, 5)  # each B, nW, h, n2, d
        bias = relative_position_bias(self.relative_position_bias_table, self.window_size, window)
        bias = bias[None, None]  # 1, 1, h, n2, n2
        mask = shifted_window_mask(Hp, Wp, window, shift, x.device, bias.dtype)
        if mask is not None:
            bias = bias + mask[None, :, None]  # 1, nW, h, n2, n2
        if not hide_cls:
            k = torch.cat([k_c[:, None].expand(B, nW, h, 1, d), k], dim=3)  # B, nW, h, 1+n2, d
            v = torch.cat([v_c[:, None].expand(B, nW, h, 1, d), v], dim=3)
            bias = F.pad(bias, (1, 0))  # the class token's key: no position bias, never masked
        z = window_attention(q, k, v, bias.to(q.dtype))  # B, nW, h, n2, d
        z = z.permute(0, 1, 3, 2, 4).reshape(B * nW, n2, C)
        z = window_reverse(z, window, Hp, Wp)[:, :H, :W]  # B, H, W, C: padding dropped
        if shift:
            z = torch.roll(z, shifts=(shift, shift), dims=(1, 2))

        out_cls = self.proj(z_cls.transpose(1, 2).reshape(B, 1, C))
        out = self.proj(z)
        return out_cls, out, scores


class CLSSwinBlock(nn.Module):
    """A Swin block whose attention is CLS-WMSA; the class token shares norms, projections and MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shifted: bool,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CLSWindowAttention(dim, num_heads, window_size)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self,
        cls: torch.Tensor,
        x: torch.Tensor,
        window: int,
        hide_cls: bool = False,
        need_scores: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        B, H, W, C = x.shape
        shift = window // 2 if (self.shifted and min(H, W) > window) else 0
        a_cls, a_x, scores = self.attn(self.norm1(cls), self.norm1(x), window, shift, hide_cls, need_scores)
        cls = cls + self.drop_path1(a_cls)
        x = x + self.drop_path1(a_x)
        cls = cls + self.drop_path2(self.mlp(self.norm2(cls)))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return cls, x, scores


class CLSPatchMerging(nn.Module):
    """Swin patch merging (2x2 neighbours -> one token of twice the width); the class token gets its own
    normalisation and projection to the doubled width (the only new weights at merging)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)
        self.cls_norm = nn.LayerNorm(dim)
        self.cls_reduction = nn.Linear(dim, out_dim, bias=False)

    def forward(self, cls: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, H, W, C = x.shape
        if H % 2 or W % 2:
            raise ValueError(f"CLS-Swin patch merging needs an even token grid, got {H}x{W}")
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)  # timm's order
        return self.cls_reduction(self.cls_norm(cls)), self.reduction(self.norm(x))


class CLSSwinStage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating plain and shifted windows."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        downsample: bool,
        mlp_ratio: float = 4.0,
        drop_path: Sequence[float] = (),
    ) -> None:
        super().__init__()
        self.downsample = CLSPatchMerging(dim, out_dim) if downsample else None
        self.grad_checkpointing = False
        drop_path = list(drop_path) or [0.0] * depth
        self.blocks = nn.ModuleList(
            CLSSwinBlock(
                out_dim,
                num_heads,
                window_size,
                shifted=i % 2 == 1,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path[i],
            )
            for i in range(depth)
        )

    def forward(
        self,
        cls: torch.Tensor,
        x: torch.Tensor,
        window: int,
        hide_cls: bool = False,
        need_scores: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if self.downsample is not None:
            cls, x = self.downsample(cls, x)
        scores = None
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            want = need_scores and last
            if self.grad_checkpointing and torch.is_grad_enabled() and not want:
                cls, x, _ = checkpoint(block, cls, x, window, hide_cls, False, use_reentrant=False)
            else:
                cls, x, s = block(cls, x, window, hide_cls, want)
                scores = s if want else scores
        return cls, x, scores


class CLSSwinEncoder(nn.Module):
    """Patch embedding, a class token and CLS-Swin stages (the global encoder G of the paper).

    Parameter names match timm's ``SwinTransformer`` (``patch_embed``, ``layers.i.downsample``,
    ``layers.i.blocks.j``, ``norm``) so its weights load key by key; new: ``cls_token`` and the
    ``cls_norm``/``cls_reduction`` of each merging.
    """

    def __init__(
        self,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        ref_size: int = 224,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        conv_stem: bool = False,
        window_rule: str = "scaled",
    ) -> None:
        super().__init__()
        if window_rule not in WINDOW_RULES:
            raise ValueError(f"CLS-Swin: window_rule must be one of {WINDOW_RULES}, got {window_rule!r}")
        self.patch_size = patch_size
        self.window_size = window_size
        self.window_rule = window_rule
        self.ref_grid = ref_size // patch_size
        self.num_stages = len(depths)
        dims = [embed_dim * 2**i for i in range(self.num_stages)]
        self.dims = dims
        self.num_features = dims[-1]
        embed_layer = ConvStemPatchEmbed if conv_stem else PatchEmbed
        self.patch_embed = embed_layer(
            img_size=ref_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            norm_layer=nn.LayerNorm,
            output_fmt="NHWC",
            strict_img_size=False,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        trunc_normal_(self.cls_token, std=0.02)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        self.stage_drop_path: list[list[float]] = []  # per stage, per block (the local stage reuses the last)
        start = 0
        for i, depth in enumerate(depths):
            self.stage_drop_path.append(rates[start : start + depth])
            self.layers.append(
                CLSSwinStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depth,
                    num_heads[i],
                    window_size,
                    downsample=i > 0,
                    mlp_ratio=mlp_ratio,
                    drop_path=rates[start : start + depth],
                )
            )
            start += depth
        self.norm = nn.LayerNorm(self.num_features)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.layers:
            stage.grad_checkpointing = enable

    def stage_window(self, stage: int, grid: int) -> int:
        """Window of ``stage`` for a token grid of side ``grid``.

        ``window_rule`` "fixed": ``window_size`` at every input size (the paper's 7x7; a grid it does not
        tile is padded as in Swin). "scaled": the window follows the grid (timm's rule for other input
        sizes: 12x12 at 384^2 for a 7x7 model of 224^2). Either way a grid no larger than the window is one
        window without shift (Swin's rule), logged once.
        """
        if self.window_rule == "scaled":
            window = stage_window_size(grid, max(1, self.ref_grid // 2**stage), self.window_size)
        else:
            window = self.window_size
        if window > grid:  # Swin's rule: a grid no larger than the window is one window, not shifted
            _log_whole_grid_window(stage, grid, window)
            window = grid
        return window

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> class token (B, 1, C) and patch tokens (B, H/p, W/p, C)."""
        x = self.patch_embed(images)
        return self.cls_token.expand(x.shape[0], -1, -1), x

    def run_stage(
        self,
        stage: nn.Module,
        index: int,
        cls: torch.Tensor,
        x: torch.Tensor,
        hide_cls: bool = False,
        need_scores: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        grid = x.shape[1] // 2 if stage.downsample is not None else x.shape[1]
        return stage(cls, x, self.stage_window(index, grid), hide_cls, need_scores)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token"}

    def forward(
        self, images: torch.Tensor, hide_cls: bool = False, need_scores: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Class token (B, C), normalised patch tokens (B, h, w, C) of the last stage, and the LSM score
        S^attn (B, h*w) from the last block of the last stage when ``need_scores``."""
        cls, x = self.embed(images)
        scores = None
        for i, stage in enumerate(self.layers):
            last = i == len(self.layers) - 1
            cls, x, s = self.run_stage(stage, i, cls, x, hide_cls, need_scores and last)
            scores = s if last else scores
        return self.norm(cls)[:, 0], self.norm(x), scores
