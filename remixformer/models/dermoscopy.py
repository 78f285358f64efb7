"""Dermoscopy image branch: the two-level hierarchical encoder (section III-C).

Read top to bottom: the window encoder T_phi1 (a timm ViT, or a timm Swin for Table XII's Swin rows),
MSTA (eqs. 15-17), the high-resolution window-level encoder HRWE, the region-level encoder R_phi2, the
single-level baseline (HRWE off), and the branch.

Memory by design: HRWE runs its windows in chunks and, in training, each chunk under activation
checkpointing, so what stays for backward is one embedding per window rather than every window's
activations. Memory then grows with the number of windows times a vector, not with pixels times depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from remixformer import keys
from remixformer.layers.attention import attention_probs
from remixformer.layers.stem import ConvStemPatchEmbed
from remixformer.models.branch import BranchOutput, no_weight_decay_names
from remixformer.models.config import DermoscopyConfig


def _cls_attention(vit_block: Block, x: torch.Tensor) -> torch.Tensor:
    """Class-token-to-patch attention (n, heads, N-1) of a timm ViT ``Block`` for its input ``x``,
    renormalised over the patches (the class token's attention to itself left out)."""
    attn = vit_block.attn
    B, N, C = x.shape
    qkv = (
        attn.qkv(vit_block.norm1(x))
        .reshape(B, N, 3, attn.num_heads, C // attn.num_heads)
        .permute(2, 0, 3, 1, 4)
    )
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    probs = attention_probs(q[:, :, :1], k)[:, :, 0, 1:]  # n, h, N-1: cls -> other tokens
    return probs / probs.sum(dim=-1, keepdim=True)  # renormalised without the class token itself


class WindowEncoder(nn.Module):
    """T_phi1: a timm ``VisionTransformer`` (ViT-S/16 in the paper) applied to one window at a time.

    Kept as a plain timm model under ``vit`` so DINO and ImageNet weights load with timm's own filter.
    """

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path_rate: float,
        conv_stem: bool = False,
    ) -> None:
        super().__init__()
        self.vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            num_classes=0,
            global_pool="",
            drop_path_rate=drop_path_rate,
            embed_layer=ConvStemPatchEmbed if conv_stem else PatchEmbed,
        )
        self.grid = img_size // patch_size
        self.embed_dim = embed_dim

    def forward(self, windows: torch.Tensor, need_attention: bool = False):
        """(n, 3, w, w) -> normalised tokens (n, 1 + P, d) and, when asked, cls->patch attention (n, P)."""
        vit = self.vit
        x = vit.patch_embed(windows)
        x = vit._pos_embed(x)
        x = vit.norm_pre(vit.patch_drop(x))
        for blk in vit.blocks[:-1]:
            x = blk(x)
        attention = _cls_attention(vit.blocks[-1], x).mean(dim=1) if need_attention else None
        x = vit.norm(vit.blocks[-1](x))
        return x, attention


class SwinImageEncoder(nn.Module):
    """A timm Swin Transformer as T_phi1 or as the single-level encoder (Table XII's Swin rows).

    Kept as a plain timm model under ``swin`` so ImageNet weights load with timm's own filter. The class
    output a Swin lacks is the mean of its normalised last-stage tokens (timm's pooling for its classifier).
    Grids that its 7x7 windows do not tile are padded as timm pads them. No class-token attention map.
    """

    def __init__(self, name: str, img_size: int, drop_path_rate: float) -> None:
        super().__init__()
        import timm

        self.swin = timm.create_model(
            name, pretrained=False, img_size=img_size, num_classes=0, drop_path_rate=drop_path_rate
        )
        self.embed_dim = self.swin.num_features
        self.grid = img_size // 32  # last-stage token grid

    def forward(self, windows: torch.Tensor, need_attention: bool = False):
        """(n, 3, w, w) -> tokens (n, 1 + P, d): the pooled token, then the last stage's; no attention."""
        x = self.swin.forward_features(windows).flatten(1, 2)  # n, P, d (normalised)
        return torch.cat([x.mean(dim=1, keepdim=True), x], dim=1), None


def image_encoder(cfg: DermoscopyConfig, img_size: int) -> nn.Module:
    """T_phi1 or the single-level encoder for ``img_size`` inputs: a ViT from the config, or a timm Swin."""
    if cfg.backbone != "vit":
        return SwinImageEncoder(cfg.backbone, img_size, cfg.drop_path_rate)
    return WindowEncoder(
        img_size,
        cfg.patch_size,
        cfg.embed_dim,
        cfg.depth,
        cfg.num_heads,
        cfg.mlp_ratio,
        cfg.drop_path_rate,
        cfg.conv_stem,
    )


class MultiScaleTextureAttention(nn.Module):
    """MSTA (eqs. 15-17): K_s learnable templates t_k with learnable scales s_k.

    a_jk = y_j . t_k, c_jk = softmax_k(-s_k a_jk), E_k = sum_j c_jk y_j; the K_s embeddings are concatenated
    and projected to the window width. Eq. 15 keeps the minus sign of Deep TEN's distance form; with a dot
    product that sign favours the least similar template unless s_k < 0, so the scales start negative
    (uniform in [-1, 0), as Deep TEN initialises its smoothing factors). The sum over the window's patches
    is divided by their number so that its scale does not depend on the window size (our choice).
    """

    def __init__(self, dim: int, num_templates: int = 32) -> None:
        super().__init__()
        self.templates = nn.Parameter(torch.empty(num_templates, dim))
        self.scales = nn.Parameter(torch.empty(num_templates))
        self.proj = nn.Linear(num_templates * dim, dim)
        trunc_normal_(self.templates, std=0.02)
        nn.init.uniform_(self.scales, -1.0, 0.0)
        trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, y: torch.Tensor, need_assignment: bool = False):
        """``y``: (n, P, d) patch embeddings -> texture embedding (n, d) [, assignment c (n, P, K)]."""
        a = y @ self.templates.T  # n, P, K
        c = (-self.scales * a).softmax(dim=-1)  # eq. 15, softmax over templates
        e = c.transpose(1, 2) @ y / y.shape[1]  # n, K, d (eq. 16)
        out = self.proj(e.flatten(1))  # concatenate + linear
        return out, (c if need_assignment else None)

    def no_weight_decay(self) -> set[str]:
        return {"templates", "scales"}


class HighResolutionWindowEncoder(nn.Module):
    """HRWE: cut S x S into (S/w)^2 windows, encode each with T_phi1 (+ MSTA), chunk by chunk."""

    def __init__(self, cfg: DermoscopyConfig) -> None:
        super().__init__()
        self.window_size = cfg.window_size
        self.chunk_size = max(1, cfg.window_chunk_size)
        self.use_checkpoint = cfg.checkpoint_windows
        self.encoder = image_encoder(cfg, cfg.window_size)
        self.msta = MultiScaleTextureAttention(cfg.embed_dim, cfg.num_templates) if cfg.msta else None

    def _grid(self, images: torch.Tensor) -> tuple[int, int]:
        H, W = images.shape[-2:]
        w = self.window_size
        if H % w or W % w:
            raise ValueError(f"HRWE: the window size {w} does not divide the {H}x{W} dermoscopy image")
        return H // w, W // w

    def _window_view(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> a view (B, gh, gw, 3, w, w) of the windows; nothing is copied."""
        B, C, H, W = images.shape
        gh, gw = self._grid(images)
        w = self.window_size
        return images.view(B, C, gh, w, gw, w).permute(0, 2, 4, 1, 3, 5)  # B, gh, gw, C, w, w

    def windows(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, 3, S, S) -> (B * nW, 3, w, w) in row-major window order, and the window grid."""
        C, w = images.shape[1], self.window_size
        return self._window_view(images).reshape(-1, C, w, w), self._grid(images)

    def window_chunk(self, images: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Windows ``start:stop`` of :meth:`windows` (n, 3, w, w), copying only those windows.

        Cutting chunk by chunk keeps a second full-size copy of the image out of memory: under
        checkpointing the chunk is cut again from ``images`` when it is recomputed.
        """
        gh, gw = self._grid(images)
        idx = torch.arange(start, stop, device=images.device)
        b, r, c = idx // (gh * gw), (idx // gw) % gh, idx % gw
        return self._window_view(images)[b, r, c]  # n, C, w, w

    def encode_chunk(self, windows: torch.Tensor, explain: bool = False):
        tokens, attention = self.encoder(windows, need_attention=explain)
        emb = tokens[:, 0]  # E^WE
        assignment = None
        if self.msta is not None:
            texture, assignment = self.msta(tokens[:, 1:], need_assignment=explain)
            emb = emb + texture  # eq. 17: E^HWE = E^WE + E^TE
        return emb, attention, assignment

    def forward(self, images: torch.Tensor, explain: bool = False):
        """-> window embeddings (B, nW, d), grid, and (when explaining) per-window maps."""
        grid = self._grid(images)
        B = images.shape[0]
        n = B * grid[0] * grid[1]
        ckpt = self.use_checkpoint and self.training and torch.is_grad_enabled() and not explain
        embs, atts, assigns = [], [], []
        # traced for export or compiled: all windows in one chunk, so that the graph does not depend
        # on the batch size (a loop over chunks would fix it); eager inference keeps its chunks
        one_chunk = torch.compiler.is_compiling() and not ckpt
        for start in [0] if one_chunk else range(0, n, self.chunk_size):
            stop = n if one_chunk else min(start + self.chunk_size, n)
            if ckpt:  # saved for backward: a reference to `images` and the embeddings, nothing per window
                emb = checkpoint(self._embed_only, images, start, stop, use_reentrant=False)
            else:
                emb, att, assign = self.encode_chunk(self.window_chunk(images, start, stop), explain)
                atts.append(att)
                assigns.append(assign)
            embs.append(emb)
        emb = torch.cat(embs).view(B, grid[0] * grid[1], -1)
        maps = {}
        if explain and atts and atts[0] is not None:  # a Swin window encoder has no class-token attention
            p = int(self.encoder.grid)
            att = torch.cat(atts).view(B, grid[0], grid[1], p, p)
            maps[keys.WINDOW_ATTENTION] = att.permute(0, 1, 3, 2, 4).reshape(B, grid[0] * p, grid[1] * p)
            if self.msta is not None:
                assign = torch.cat(assigns).argmax(-1).view(B, grid[0], grid[1], p, p)
                maps[keys.TEMPLATE_ASSIGNMENT] = assign.permute(0, 1, 3, 2, 4).reshape(
                    B, grid[0] * p, grid[1] * p
                )
        return emb, grid, maps

    def _embed_only(self, images: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return self.encode_chunk(self.window_chunk(images, start, stop))[0]


class RegionEncoder(nn.Module):
    """R_phi2: a class token, a learned position embedding over the window grid (interpolated when the
    grid changes; the paper is silent, but without one the encoder sees a bag of windows), then
    transformer blocks of T_phi1's shape and a LayerNorm."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, mlp_ratio: float, grid: int, drop_path_rate: float = 0.0
    ) -> None:
        super().__init__()
        self.grid = grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=rates[i]) for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        trunc_normal_(self.cls_token, std=0.02)
        trunc_normal_(self.pos_embed, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed"}

    def forward(self, windows: torch.Tensor, grid: tuple[int, int], explain: bool = False):
        """``windows``: (B, nW, d) -> tokens (B, 1 + nW, d) and the region-level cls attention (B, nW)."""
        B = windows.shape[0]
        pos = self.pos_embed
        if grid != (self.grid, self.grid):
            pos = resample_abs_pos_embed(
                pos, new_size=list(grid), old_size=[self.grid, self.grid], num_prefix_tokens=1
            )
        x = torch.cat([self.cls_token.expand(B, -1, -1), windows], dim=1) + pos
        for blk in self.blocks[:-1]:
            x = blk(x)
        attention = _cls_attention(self.blocks[-1], x).mean(dim=1) if explain else None
        x = self.norm(self.blocks[-1](x))
        return x, attention


class DermoscopyBranch(nn.Module):
    letter = "D"

    def __init__(self, cfg: DermoscopyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.hrwe:
            self.hrwe = HighResolutionWindowEncoder(cfg)
            grid = cfg.image_size // cfg.window_size
            width = self.hrwe.encoder.embed_dim
            dim = cfg.region_dim or width
            # a window encoder wider than R_phi2 (a Swin's 768 for a region encoder of ViT-S's 384, Table
            # XII's Swin-T + HRWE) has its window embeddings projected to R_phi2's width
            self.window_proj = nn.Linear(width, dim) if dim != width else nn.Identity()
            self.region_encoder = RegionEncoder(
                dim, cfg.region_depth, cfg.region_heads, cfg.mlp_ratio, grid, cfg.drop_path_rate
            )
            self.single_level = None
        else:  # ablation: one encoder on the whole image, resized
            self.hrwe = self.region_encoder = None
            self.window_proj = nn.Identity()
            self.single_level = image_encoder(cfg, cfg.single_level_size)
            dim = self.single_level.embed_dim
        self.out_dim = self.token_dim = dim

    @property
    def window_encoder(self) -> nn.Module:
        """T_phi1 (or the single-level encoder): the part that takes DINO / ImageNet weights."""
        return self.hrwe.encoder if self.hrwe is not None else self.single_level

    def no_weight_decay(self) -> set[str]:
        """Parameters without weight decay (:func:`~remixformer.models.branch.no_weight_decay_names`)."""
        return no_weight_decay_names(self)

    def forward(self, images: torch.Tensor, explain: bool = False) -> BranchOutput:
        """``images``: (B, 3, S, S) at ``cfg.image_size``."""
        maps: dict[str, torch.Tensor] = {}
        if self.single_level is not None:
            s = self.cfg.single_level_size
            x = images
            if images.shape[-1] != s:
                x = F.interpolate(images, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
            tokens, attention = self.single_level(x, need_attention=explain)
            if explain and attention is not None:
                g = self.single_level.grid
                maps[keys.WINDOW_ATTENTION] = attention.view(-1, g, g)
            return BranchOutput(tokens[:, 0], tokens, maps)
        emb, grid, maps = self.hrwe(images, explain)
        emb = self.window_proj(emb)  # B, nW, region width
        tokens, region_attention = self.region_encoder(emb, grid, explain)
        if explain:
            maps[keys.REGION_ATTENTION] = region_attention.view(-1, *grid)
        return BranchOutput(tokens[:, 0], tokens, maps)
