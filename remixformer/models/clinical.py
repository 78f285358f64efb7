"""Clinical image branch: global encoder G, lesion selection, local encoder L, cross-scale fusion.

G and L are CLS-Swin (the paper's branch) or, for Table X's ViT rows, one timm ViT serving as both.

G (CLS-Swin) sees a downsampled copy of the photo. LSM picks cells of G's last-stage grid and cuts
full-resolution crops. L shares patch embedding and stages 1-3 with G and has its own stage 4 and norm
(paper, Fig. 4). CSF (eqs. 10-14) exchanges information between G's and L's outputs with two directed
cross-attention blocks: g^C reads L's patch tokens, l^C reads G's patch tokens.

Choices where the paper is silent (docs/model.md): the K crops' class tokens are averaged and their
patch tokens concatenated, each crop weighted by the LSM estimator; the branch embedding is
[g^C, l^C] concatenated (with CSF off: [g_cls, l_cls]; with LSM off: g_cls); the tokens other modalities
attend to are the two class tokens followed by G's and L's patch tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from remixformer import keys
from remixformer.layers.attention import CrossAttentionBlock
from remixformer.models.branch import BranchOutput, no_weight_decay_names
from remixformer.models.cls_swin import CLSSwinEncoder, CLSSwinStage
from remixformer.models.config import ClinicalConfig
from remixformer.models.lesion_selection import LesionSelection


class ViTImageEncoder(nn.Module):
    """A timm ViT as both G and L (Table X's ViT-S/16 and ViT-B/16 rows), with the LSM score of eqs. 6-8.

    Kept as a plain timm model under ``vit`` so ImageNet weights load with timm's own filter (which
    resizes their 14 x 14 position embedding). Built for G's input (384^2: a 24 x 24 position embedding,
    the paper's ViT-B/16 size of 86.1M) with ``dynamic_img_size``, so the embedding is resampled on the
    fly to 14 x 14 for L's 224^2 crops. The score comes from the last block's queries and keys, as
    CLS-Swin's does: O1 = softmax over patches of q_cls . k_patch, O2 = softmax over patches of
    q_patch . k_cls, S = the mean over heads of O1 * O2, renormalised.
    """

    def __init__(self, name: str, img_size: int, drop_path_rate: float) -> None:
        super().__init__()
        import timm

        self.vit = timm.create_model(
            name,
            pretrained=False,
            num_classes=0,
            img_size=img_size,
            dynamic_img_size=True,
            drop_path_rate=drop_path_rate,
        )
        self.num_features = self.vit.num_features
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @staticmethod
    def _lsm_scores(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """S^attn (B, N) over the patch tokens of ``x`` (B, 1 + N, C), the input of the last ``block``."""
        attn = block.attn
        B, T, C = x.shape
        h = attn.num_heads
        qkv = attn.qkv(block.norm1(x)).reshape(B, T, 3, h, C // h).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])  # B, h, T, d
        scale = (C // h) ** -0.5
        # O1: the class token's query over the patches' keys; O2: each patch's query to the class key
        o1 = ((q[:, :, :1] * scale) @ k[:, :, 1:].transpose(-2, -1))[:, :, 0].softmax(dim=-1)  # B, h, N
        o2 = ((q[:, :, 1:] * scale) @ k[:, :, :1].transpose(-2, -1))[..., 0].softmax(dim=-1)  # B, h, N
        scores = (o1 * o2).mean(dim=1)
        return scores / scores.sum(dim=-1, keepdim=True)

    def forward(
        self, images: torch.Tensor, need_scores: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Class token (B, C), normalised patch tokens (B, h, w, C), and S^attn (B, h*w) when asked."""
        vit = self.vit
        x = vit.patch_embed(images)  # B, h, w, C (dynamic size)
        B, h, w, C = x.shape
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))  # B, 1 + h*w, C
        for blk in vit.blocks[:-1]:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        scores = self._lsm_scores(vit.blocks[-1], x) if need_scores else None
        x = vit.norm(vit.blocks[-1](x))
        return x[:, 0], x[:, 1:].reshape(B, h, w, C), scores


class CrossScaleFusion(nn.Module):
    """CSF: two directed cross-attention blocks between the global and the local features."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.global_from_local = CrossAttentionBlock(dim, num_heads)  # eqs. 10, 12, 14 (g^C)
        self.local_from_global = CrossAttentionBlock(dim, num_heads)  # eqs. 11, 13, 14 (l^C)

    def forward(
        self,
        g_cls: torch.Tensor,
        g_patch: torch.Tensor,
        l_cls: torch.Tensor,
        l_patch: torch.Tensor,
        l_patch_weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``l_patch_weight``: (B, T) LSM estimator of each local patch token's crop, applied to the
        tokens' values inside the attention (after its LayerNorm, which would cancel it on the tokens)."""
        g, _ = self.global_from_local(g_cls, l_patch, l_patch_weight)
        l, _ = self.local_from_global(l_cls, g_patch)
        return g, l


class ClinicalBranch(nn.Module):
    letter = "C"

    def __init__(self, cfg: ClinicalConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.backbone != "cls_swin":
            self._build_vit(cfg)
            return
        self.global_encoder = CLSSwinEncoder(
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depths=cfg.depths,
            num_heads=cfg.num_heads,
            window_size=cfg.window_size,
            ref_size=cfg.ref_size,
            mlp_ratio=cfg.mlp_ratio,
            drop_path_rate=cfg.drop_path_rate,
            conv_stem=cfg.conv_stem,
            window_rule=cfg.window_rule,
        )
        dim = self.global_encoder.num_features
        n = len(cfg.depths)
        if cfg.lsm:
            self.lesion_selection = LesionSelection(
                cfg.num_crops, cfg.num_samples, cfg.crop_size, cfg.lsm_temperature
            )
            # L's own last stage (same shape as G's, with the same drop-path rates; initialised from the
            # same pretrained stage 4)
            self.local_stage = CLSSwinStage(
                self.global_encoder.dims[-2] if n > 1 else cfg.embed_dim,
                dim,
                cfg.depths[-1],
                cfg.num_heads[-1],
                cfg.window_size,
                downsample=n > 1,
                mlp_ratio=cfg.mlp_ratio,
                drop_path=self.global_encoder.stage_drop_path[-1],
            )
            self.local_norm = nn.LayerNorm(dim)
            self.csf = CrossScaleFusion(dim, cfg.csf_heads) if cfg.csf else None
        else:
            self.lesion_selection = self.local_stage = self.local_norm = self.csf = None
        if cfg.grad_checkpointing:
            self.set_grad_checkpointing(True)
        self.token_dim = dim
        self.out_dim = 2 * dim if cfg.lsm else dim

    def _build_vit(self, cfg: ClinicalConfig) -> None:
        """G and L are one timm ViT (Table X's ViT rows): L has no layers of its own; CSF at its width."""
        self.global_encoder = ViTImageEncoder(cfg.backbone, cfg.global_size, cfg.drop_path_rate)
        dim = self.global_encoder.num_features
        self.local_stage = self.local_norm = None
        if cfg.lsm:
            self.lesion_selection = LesionSelection(
                cfg.num_crops, cfg.num_samples, cfg.crop_size, cfg.lsm_temperature
            )
            self.csf = CrossScaleFusion(dim, cfg.csf_heads) if cfg.csf else None
        else:
            self.lesion_selection = self.csf = None
        if cfg.grad_checkpointing:
            self.set_grad_checkpointing(True)
        self.token_dim = dim
        self.out_dim = 2 * dim if cfg.lsm else dim

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.global_encoder.set_grad_checkpointing(enable)
        if self.local_stage is not None:
            self.local_stage.grad_checkpointing = enable

    def local_encoder(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L: G's patch embedding and stages 1..n-1, then L's own last stage (a ViT backbone: G itself).
        (n, 3, c, c) -> cls, patches."""
        G = self.global_encoder
        if self.local_stage is None:
            cls, x, _ = G(crops)
            return cls, x.flatten(1, 2)
        cls, x = G.embed(crops)
        for i, stage in enumerate(G.layers[:-1]):
            cls, x, _ = G.run_stage(stage, i, cls, x)
        cls, x, _ = G.run_stage(self.local_stage, len(G.layers) - 1, cls, x)
        return self.local_norm(cls)[:, 0], self.local_norm(x).flatten(1, 2)

    @staticmethod
    def aggregate_crops(
        l_cls: torch.Tensor, l_patch: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The K crops' outputs (B*K, C) and (B*K, P, C) with the LSM estimator ``weights`` (B, K) ->
        the local class token (B, C), the local patch tokens (B, K*P, C) and their weights (B, K*P).

        The class tokens are averaged, each weighted by S_v / stopgrad(S_v) (eq. 9). The patch tokens are
        concatenated unscaled and their weights returned: every attention that reads them (CSF's g^C and
        CMF) applies the weight to the token's value after its LayerNorm. Scaling the tokens here would
        leave the forward unchanged but the LayerNorm would cancel the factor and the estimator's
        gradient with it (measured before this change: 9.5e-6 through the patch path against 0.71
        through the class-token path).
        """
        B, K = weights.shape
        C = l_cls.shape[-1]
        l_cls = (weights[..., None] * l_cls.reshape(B, K, C)).mean(dim=1)  # eq. 9
        P = l_patch.shape[1]
        l_patch = l_patch.reshape(B, K * P, C)
        return l_cls, l_patch, weights.repeat_interleave(P, dim=1)  # B, K*P: the crop's weight per token

    def no_weight_decay(self) -> set[str]:
        """Parameters without weight decay (:func:`~remixformer.models.branch.no_weight_decay_names`)."""
        return no_weight_decay_names(self)

    def forward(self, images: torch.Tensor, explain: bool = False) -> BranchOutput:
        """``images``: (B, 3, H, W) full-resolution photos (``cfg.image_size``)."""
        cfg = self.cfg
        small = images
        if images.shape[-1] != cfg.global_size or images.shape[-2] != cfg.global_size:
            small = F.interpolate(
                images,
                size=(cfg.global_size, cfg.global_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        g_cls, g_grid, scores = self.global_encoder(small, need_scores=cfg.lsm)
        B, gh, gw, C = g_grid.shape
        g_patch = g_grid.flatten(1, 2)  # B, gh*gw, C
        maps: dict[str, torch.Tensor] = {}
        aux = {"global_cls": g_cls}
        if not cfg.lsm:
            return BranchOutput(g_cls, torch.cat([g_cls[:, None], g_patch], dim=1), maps, aux)

        sel = self.lesion_selection(scores, (gh, gw), images)
        l_cls, l_patch, l_patch_weight = self.aggregate_crops(
            *self.local_encoder(sel.crops.flatten(0, 1)), sel.weights
        )
        if self.csf is not None:
            g_out, l_out = self.csf(g_cls, g_patch, l_cls, l_patch, l_patch_weight)
        else:
            g_out, l_out = g_cls, l_cls
        if explain:
            maps = {
                keys.LSM_SCORES: scores.view(B, gh, gw).detach(),
                keys.LSM_CELLS: sel.cells,
                keys.LSM_BOXES: sel.boxes,
            }
        tokens = torch.cat([g_out[:, None], l_out[:, None], g_patch, l_patch], dim=1)
        ones = l_patch_weight.new_ones(B, 2 + gh * gw)
        token_weights = torch.cat([ones, l_patch_weight], dim=1)  # B, T: the estimator on L's patches
        return BranchOutput(torch.cat([g_out, l_out], dim=-1), tokens, maps, aux, token_weights)
