"""Export of the teacher backbone as T_phi1 weights, or as clinical-encoder weights.

Window encoder: a timm-format ``VisionTransformer`` state dict (``cls_token``, ``pos_embed``,
``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``) in safetensors, written atomically, with a JSON
header (``remixformer.window_encoder``) that describes it: the architecture, the preset it belongs to,
the run and the step. It loads strictly with ``create_model(preset, dermoscopy={"pretrained": PATH})`` or
``model.dermoscopy.pretrained: PATH`` in a training config (``models.weights.load_window_encoder_weights``);
the header is informative, the tensors alone are a plain timm ViT checkpoint.

Clinical encoder: the CLS-Swin encoder G's state dict (timm Swin names plus ``cls_token`` and the
merging's ``cls_norm``/``cls_reduction``), header ``remixformer.clinical_encoder``; it loads with
``create_model(preset, clinical={"pretrained": PATH})`` or ``model.clinical.pretrained: PATH``.

Both headers record the images the run saw (``pretrained_on``): folders, or a data set with its split
protocol, fold, seed and splits, so a training run can tell whether its test cases were among them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from remixformer.config import to_dict
from remixformer.pretrain.config import PretrainConfig, clinical_config, dermoscopy_config
from remixformer.serialization import read_safetensors, save_tensors

FORMAT = "remixformer-window-encoder"
VERSION = "1"
HEADER_KEY = "remixformer.window_encoder"
CLINICAL_FORMAT = "remixformer-clinical-encoder"
CLINICAL_HEADER_KEY = "remixformer.clinical_encoder"
EXPORT_NAME = "teacher_backbone.safetensors"
# where the configs put the clinical encoder G of a trained run (export --format clinical-encoder)
CLINICAL_EXPORT_NAME = "clinical_encoder.safetensors"


def _clinical_architecture(c: Any) -> dict[str, Any]:
    """How a ``ClinicalConfig``'s CLS-Swin encoder G is built (the header's ``architecture``)."""
    return {
        "class": "remixformer.models.cls_swin.CLSSwinEncoder",
        "patch_size": c.patch_size,
        "embed_dim": c.embed_dim,
        "depths": list(c.depths),
        "num_heads": list(c.num_heads),
        "window_size": c.window_size,
        "ref_size": c.ref_size,
        "conv_stem": c.conv_stem,
    }


def _clinical_use(preset: str) -> str:
    return (
        f"create_model({preset!r}, ..., clinical={{'pretrained': PATH}}) or "
        "model.clinical.pretrained: PATH in a training config"
    )


def describe(cfg: PretrainConfig, **extra: Any) -> dict[str, Any]:
    if cfg.backbone.encoder == "clinical_encoder":
        return {
            "what": "DINO teacher backbone (the clinical branch's CLS-Swin encoder G)",
            "architecture": _clinical_architecture(clinical_config(cfg)),
            "preset": cfg.backbone.preset,
            "clinical_overrides": dict(cfg.backbone.clinical),
            "use": _clinical_use(cfg.backbone.preset),
            "pretrain_config": to_dict(cfg),
            **extra,
        }
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
            f"create_model({cfg.backbone.preset!r}, ..., dermoscopy={{'pretrained': PATH}}) or "
            "model.dermoscopy.pretrained: PATH in a training config"
        ),
        "pretrain_config": to_dict(cfg),
        **extra,
    }


def export_backbone(backbone: nn.Module, path: str | Path, cfg: PretrainConfig, **extra: Any) -> Path:
    """Write ``backbone``'s state dict (timm names) to ``path`` with the describing header."""
    clinical = cfg.backbone.encoder == "clinical_encoder"
    meta = {
        "format": CLINICAL_FORMAT if clinical else FORMAT,
        "format_version": VERSION,
        (CLINICAL_HEADER_KEY if clinical else HEADER_KEY): json.dumps(describe(cfg, **extra)),
    }
    return save_tensors(path, backbone.state_dict(), meta)


def export_trained_clinical_encoder(model: nn.Module, path: str | Path, source: str | Path) -> Path:
    """Write the clinical encoder G of a trained model (the checkpoint ``source``) in the clinical-encoder
    format of :func:`export_backbone`: the supervised start of a clinical encoder, e.g. a C model trained
    on dermoscopy images (``data.dermoscopy_as_clinical``). The header records the checkpoint and what it
    was trained on (its data config), so a run that loads it can be checked for its test cases."""
    branches: Any = getattr(model, "branches", {})
    if "C" not in branches:
        raise ValueError(
            f"{source}: the model has no clinical branch (modalities {getattr(model, 'modalities', '?')}); "
            "train one with model.modalities containing C"
        )
    encoder = branches["C"].global_encoder
    if not hasattr(encoder, "cls_token") or hasattr(encoder, "vit"):
        raise ValueError(
            f"{source}: the clinical branch's encoder is {type(encoder).__name__}, not the CLS-Swin encoder "
            "G that the clinical-encoder format holds"
        )
    cfg: Any = model.config
    info = {
        "what": "the clinical encoder G (CLS-Swin) of a trained model, supervised",
        "architecture": _clinical_architecture(cfg.clinical),
        "preset": cfg.preset,
        "use": _clinical_use(cfg.preset),
        "from_checkpoint": str(source),
        "trained": dict(getattr(model, "checkpoint_extra", {}) or {}),
    }
    meta = {
        "format": CLINICAL_FORMAT,
        "format_version": VERSION,
        CLINICAL_HEADER_KEY: json.dumps(info),
    }
    return save_tensors(path, encoder.state_dict(), meta)


def read_export_info(path: str | Path) -> dict[str, Any]:
    """The JSON header of an export (``{}`` for a plain state dict without one)."""
    _, meta = read_safetensors(path)
    for key in (HEADER_KEY, CLINICAL_HEADER_KEY):
        if key in meta:
            return json.loads(meta[key])
    return {}
