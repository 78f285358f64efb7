"""Export of the teacher backbone as T_phi1 weights.

The file is a timm-format ``VisionTransformer`` state dict (``cls_token``, ``pos_embed``,
``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``) in safetensors, written atomically, with a JSON
header (``remixformer.window_encoder``) that describes it: the architecture, the preset it belongs to,
the run and the step. It loads strictly with ``create_model(preset, window_encoder_weights=PATH)`` or
``model.window_encoder_weights: PATH`` in a training config (``models.weights.load_window_encoder_weights``);
the header is informative, the tensors alone are a plain timm ViT checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from remixformer.config import to_dict
from remixformer.pretrain.config import PretrainConfig, dermoscopy_config
from remixformer.serialization import read_safetensors, save_tensors

FORMAT = "remixformer-window-encoder"
VERSION = "1"
HEADER_KEY = "remixformer.window_encoder"
EXPORT_NAME = "teacher_backbone.safetensors"


def describe(cfg: PretrainConfig, **extra: Any) -> dict[str, Any]:
    d = dermoscopy_config(cfg)
    return {
        "what": "DINO teacher backbone (T_phi1 window encoder)",
        "architecture": {
            "class": "timm.models.vision_transformer.VisionTransformer",
            "img_size": d.window_size,
            "patch_size": d.patch_size,
            "embed_dim": d.embed_dim,
            "depth": d.depth,
            "num_heads": d.num_heads,
            "mlp_ratio": d.mlp_ratio,
            "qkv_bias": True,
            "num_classes": 0,
        },
        "preset": cfg.backbone.preset,
        "dermoscopy_overrides": dict(cfg.backbone.dermoscopy),
        "use": (
            f"create_model({cfg.backbone.preset!r}, ..., window_encoder_weights=PATH) or "
            "model.window_encoder_weights: PATH in a training config"
        ),
        "pretrain_config": to_dict(cfg),
        **extra,
    }


def export_backbone(backbone: nn.Module, path: str | Path, cfg: PretrainConfig, **extra: Any) -> Path:
    """Write ``backbone``'s state dict (timm names) to ``path`` with the describing header."""
    meta = {
        "format": FORMAT,
        "format_version": VERSION,
        HEADER_KEY: json.dumps(describe(cfg, **extra)),
    }
    return save_tensors(path, backbone.state_dict(), meta)


def read_export_info(path: str | Path) -> dict[str, Any]:
    """The JSON header of an export (``{}`` for a plain ViT state dict without one)."""
    _, meta = read_safetensors(path)
    return json.loads(meta[HEADER_KEY]) if HEADER_KEY in meta else {}
