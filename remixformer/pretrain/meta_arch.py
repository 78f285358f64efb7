"""The DINO meta-architecture (dinov2's ``SSLMetaArch``, in small): student and teacher, each a
backbone and a projection head, the loss with its centre, and the EMA update of the teacher.

The backbone is exactly ``WindowEncoder.vit`` of the chosen model preset (same timm class, sizes and
parameter names), built with ``dynamic_img_size`` so one network takes the 256^2 global and 96^2 local
views (position embeddings resampled bicubically, as DINO interpolates them); or, with
``backbone.encoder: clinical_encoder``, the preset's CLS-Swin encoder G, whose class token is the output
(it takes the global view size and the LSM crop size, as in the model). The teacher receives no
gradient: its parameters have ``requires_grad=False`` and it runs under ``no_grad``; it moves only by
:meth:`DINOMetaArch.update_teacher`.
"""

from __future__ import annotations

import logging

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from remixformer.layers.stem import ConvStemPatchEmbed
from remixformer.models.branch import no_weight_decay_names
from remixformer.models.cls_swin import CLSSwinEncoder
from remixformer.models.weights import WeightLoadError, load_cls_swin_encoder, load_vit_weights
from remixformer.pretrain.config import PretrainConfig, clinical_config, dermoscopy_config
from remixformer.pretrain.heads import DINOHead
from remixformer.pretrain.loss import DINOLoss, entropy_stats

log = logging.getLogger(__name__)


def build_backbone(cfg: PretrainConfig, drop_path_rate: float | None = None) -> nn.Module:
    """The preset's T_phi1 ViT (``WindowEncoder`` arguments) that also accepts other input sizes, or its
    clinical CLS-Swin encoder G."""
    from timm.layers import PatchEmbed

    if cfg.backbone.encoder == "clinical_encoder":
        c = clinical_config(cfg)
        if c.backbone != "cls_swin":
            raise ValueError(
                f"backbone: DINO pretraining of the clinical encoder builds CLS-Swin; clinical.backbone "
                f"{c.backbone!r} is not supported here"
            )
        return CLSSwinEncoder(
            patch_size=c.patch_size,
            embed_dim=c.embed_dim,
            depths=c.depths,
            num_heads=c.num_heads,
            window_size=c.window_size,
            ref_size=c.ref_size,
            mlp_ratio=c.mlp_ratio,
            drop_path_rate=c.drop_path_rate if drop_path_rate is None else drop_path_rate,
            conv_stem=c.conv_stem,
            window_rule=c.window_rule,
        )
    d = dermoscopy_config(cfg)
    if d.backbone != "vit":
        raise ValueError(
            f"backbone: DINO pretraining builds the ViT window encoder; dermoscopy.backbone {d.backbone!r} "
            "is not supported here"
        )
    return VisionTransformer(
        img_size=d.window_size,
        patch_size=d.patch_size,
        embed_layer=ConvStemPatchEmbed if d.conv_stem else PatchEmbed,
        embed_dim=d.embed_dim,
        depth=d.depth,
        num_heads=d.num_heads,
        mlp_ratio=d.mlp_ratio,
        qkv_bias=True,
        num_classes=0,
        global_pool="",
        drop_path_rate=d.drop_path_rate if drop_path_rate is None else drop_path_rate,
        dynamic_img_size=True,
    )


def backbone_width(backbone: nn.Module) -> int:
    return int(backbone.embed_dim if isinstance(backbone, VisionTransformer) else backbone.num_features)


def class_token(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The backbone's class-token output (n, d): the ViT's first token, or CLS-Swin's normed class token."""
    if isinstance(backbone, VisionTransformer):
        return backbone.forward_features(images)[:, 0]
    return backbone(images)[0]


class Encoder(nn.Module):
    """Backbone + head: views -> class token -> prototype logits. Views of one size go through the
    backbone together (DINO's ``MultiCropWrapper``), the head runs once on all of them."""

    def __init__(self, backbone: nn.Module, head: DINOHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def no_weight_decay(self) -> set[str]:
        """Parameters without weight decay (:func:`~remixformer.models.branch.no_weight_decay_names`)."""
        return no_weight_decay_names(self)

    def forward(self, *groups: torch.Tensor) -> torch.Tensor:
        cls = [class_token(self.backbone, g) for g in groups if g.numel()]  # each: n_g, d
        return self.head(torch.cat(cls))  # sum n_g, K


def load_backbone_weights(backbone: nn.Module, source: str) -> list[str]:
    """ViT weights (``timm:<name>``, a DINO checkpoint, a timm state dict or our export) into
    ``backbone`` strictly, position embeddings resized to its grid; or, for a CLS-Swin backbone, an
    export of a clinical-encoder pretraining. Returns the dropped entries (heads)."""
    if not isinstance(backbone, VisionTransformer):
        return load_cls_swin_encoder(backbone, source).dropped
    _, dropped = load_vit_weights(
        backbone,
        source,
        f"the backbone (width {backbone.embed_dim}, depth {len(backbone.blocks)})",
        hint="set backbone.pretrained to weights of this preset's ViT, or null to start from scratch",
    )
    return dropped


class DINOMetaArch(nn.Module):
    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        h = cfg.head
        student_backbone = build_backbone(cfg, cfg.backbone.drop_path_rate)
        dim = backbone_width(student_backbone)
        self.student = Encoder(
            student_backbone,
            DINOHead(dim, h.out_dim, h.hidden_dim, h.bottleneck_dim, h.nlayers, h.norm_last_layer),
        )
        self.teacher = Encoder(
            build_backbone(cfg, 0.0),  # no stochastic depth in the teacher
            DINOHead(dim, h.out_dim, h.hidden_dim, h.bottleneck_dim, h.nlayers, h.norm_last_layer),
        )
        self.loss = DINOLoss(h.out_dim, cfg.dino.student_temp, cfg.dino.center_momentum)
        self.sync_teacher()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    # --- weights ---------------------------------------------------------------------------------
    def load_init_weights(self, source: str | None) -> str:
        """Start the student backbone (and the teacher, a copy) from ``source``; returns what was done.

        A ``timm:`` source that cannot be fetched (no internet) falls back to random initialisation with
        a warning; a file that is missing or does not fit is an error.
        """
        if not source:
            return "backbone from scratch (random initialisation)"
        try:
            dropped = load_backbone_weights(self.student.backbone, source)
        except WeightLoadError as e:
            if source.startswith(("timm:", "hub:")) and "could not fetch" in str(e):
                log.warning("%s; the backbone starts from scratch", e)
                return f"backbone from scratch ({source} unavailable)"
            raise
        self.sync_teacher()
        return f"backbone from {source}" + (f" (dropped {len(dropped)} head tensors)" if dropped else "")

    @torch.no_grad()
    def sync_teacher(self) -> None:
        """Teacher := student (start of training)."""
        self.teacher.load_state_dict(self.student.state_dict())

    # --- forward ---------------------------------------------------------------------------------
    def forward(
        self, global_views: torch.Tensor, local_views: torch.Tensor, teacher_temp: float, n_global: int = 2
    ) -> dict[str, torch.Tensor]:
        """``global_views``: (G * B, 3, S, S) view-major (all first views, then all second views);
        ``local_views``: (L * B, 3, s, s) view-major. Returns the loss and the collapse monitors."""
        with torch.no_grad():
            teacher_out = self.teacher(global_views)  # G*B, K
        student_out = self.student(global_views, local_views)  # (G+L)*B, K
        loss, probs = self.loss(student_out, teacher_out, teacher_temp, n_global=n_global)
        return {"loss": loss, **entropy_stats(probs)}

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA: theta_t <- m theta_t + (1 - m) theta_s, parameter by parameter."""
        t_params = list(self.teacher.parameters())
        s_params = [p.detach() for p in self.student.parameters()]
        torch._foreach_mul_(t_params, momentum)
        torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)

    # --- optimisation helpers --------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """Student parameters with weight decay (matrices) and without (biases, norms, tokens, positions)."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        exempt = self.student.no_weight_decay()
        for name, p in self.student.named_parameters():
            if p.requires_grad:
                (no_decay if name in exempt else decay).append(p)
        return [
            {"params": decay, "apply_wd": True},
            {"params": no_decay, "apply_wd": False, "weight_decay": 0.0},
        ]

    @torch.no_grad()
    def clip_gradients(self, max_norm: float) -> torch.Tensor:
        """DINO's clipping: each parameter's gradient scaled to norm <= ``max_norm``; returns the norms."""
        grads = [p.grad for p in self.student.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros(0)
        norms = torch.stack([g.detach().float().norm() for g in grads])
        coefs = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g, c in zip(grads, coefs):
            g.mul_(c.to(g.dtype))
        return norms

    def cancel_last_layer_gradients(self) -> None:
        """Drop the gradients of the head's last layer: AdamW then leaves it untouched this step."""
        for p in self.student.head.last_layer.parameters():
            p.grad = None
