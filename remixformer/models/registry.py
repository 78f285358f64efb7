"""Named presets and the one factory (timm style): ``create_model(preset, modalities, tasks, ...)``.

Three presets, one code path: ``remixformer_paper`` has the paper's sizes, ``remixformer_small`` the
same architecture sized to train on a 2-core CPU in minutes on small images, ``remixformer_tiny`` is for
tests. Any config field can be overridden by section (``clinical={"lsm": False}``), by dotted key
(``**{"clinical.lsm": False}``) or by one of the short aliases of the paper's ablation switches.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

from remixformer.config import ConfigError, deep_merge, from_dict, to_dict
from remixformer.models.config import ModelConfig
from remixformer.models.remixformer import RemixFormer
from remixformer.models.weights import (
    load_clinical_weights,
    load_region_encoder_weights,
    load_window_encoder_weights,
)
from remixformer.schema import MetadataSchema
from remixformer.tasks import normalize_tasks

log = logging.getLogger(__name__)

PRESETS: dict[str, dict[str, Any]] = {
    "remixformer_paper": {
        # the paper's sizes: Swin-T on 896^2 photos (384^2 global copy, 224^2 crops, K_p = 4) with 7x7
        # windows in G and L ("7x7 in our implementation"; G's grids padded as Swin pads them);
        # ViT-S/16 on 256^2 windows of a 1024^2 dermoscopy image (2048^2 for large images), 32 templates
        "clinical": {
            "window_rule": "fixed",
            # Activation checkpointing of the CLS-Swin blocks, so that the paper's per-device batch fits a
            # 32 GB GPU. Measured on one H200 before this default (CDM, 896^2 photo, 1024^2 dermoscopy,
            # 16-mixed, SGD): batch 64 peaked at 39.6 GiB without it and 11.1 GiB with it (3.99 s with it vs
            # 3.42 s without, per step); batch 8: 6.6 GiB, batch 16: 11.3 GiB (docs/benchmarks.md). Off:
            # model.clinical.grad_checkpointing=false. The dermoscopy branch checkpoints its window
            # chunks anyway (dermoscopy.checkpoint_windows, on by default).
            "grad_checkpointing": True,
        },
    },
    "remixformer_small": {
        "clinical": {
            "image_size": 256,
            "global_size": 128,
            "crop_size": 64,
            "patch_size": 4,
            "conv_stem": True,  # trained from scratch: see remixformer/layers/stem.py
            "embed_dim": 32,
            "depths": [1, 1, 2, 1],
            "num_heads": [1, 2, 4, 8],
            "window_size": 4,
            "ref_size": 64,
            "drop_path_rate": 0.05,
            "csf_heads": 4,
        },
        "dermoscopy": {
            "image_size": 256,
            "window_size": 64,
            "single_level_size": 64,
            "patch_size": 8,
            "conv_stem": True,
            "embed_dim": 64,
            "depth": 3,
            "num_heads": 2,
            "region_depth": 2,
            "region_heads": 2,
            "num_templates": 8,
            "window_chunk_size": 64,
            "checkpoint_windows": False,  # 256^2 images: recomputation costs more than it saves on a CPU
            "drop_path_rate": 0.05,
        },
        "metadata": {"hidden_dim": 32},
        "fusion": {"dim": 96, "num_heads": 4},
    },
    "remixformer_tiny": {
        "clinical": {
            "image_size": 64,
            "global_size": 32,
            "crop_size": 16,
            "patch_size": 2,
            "embed_dim": 8,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 2, 2],
            "window_size": 2,
            "ref_size": 16,
            "drop_path_rate": 0.0,
            "csf_heads": 2,
        },
        "dermoscopy": {
            "image_size": 64,
            "window_size": 32,
            "single_level_size": 32,
            "patch_size": 8,
            "embed_dim": 16,
            "depth": 1,
            "num_heads": 2,
            "region_depth": 1,
            "region_heads": 2,
            "num_templates": 4,
            "window_chunk_size": 2,
            "drop_path_rate": 0.0,
        },
        "metadata": {"hidden_dim": 8},
        "fusion": {"dim": 16, "num_heads": 2},
    },
}

# Short names for the switches of the paper's ablation tables; each means one field. Names that would
# mean a field of more than one section are refused with the choices (AMBIGUOUS).
ALIASES = {
    "lsm": "clinical.lsm",
    "csf": "clinical.csf",
    "num_crops": "clinical.num_crops",
    "k_p": "clinical.num_crops",
    "clinical_size": "clinical.image_size",
    "global_size": "clinical.global_size",
    "crop_size": "clinical.crop_size",
    "hrwe": "dermoscopy.hrwe",
    "msta": "dermoscopy.msta",
    "num_templates": "dermoscopy.num_templates",
    "dermoscopy_window_size": "dermoscopy.window_size",
    "clinical_window_size": "clinical.window_size",
    "dermoscopy_size": "dermoscopy.image_size",
    "fusion_dim": "fusion.dim",
}

AMBIGUOUS = {
    "window_size": ("dermoscopy_window_size", "clinical_window_size"),
}

PRETRAINED = {
    "clinical": "timm:swin_tiny_patch4_window7_224",
    "window_encoder": "timm:vit_small_patch16_224.dino",
    "region_encoder": "timm:vit_small_patch16_224.augreg_in21k_ft_in1k",
}
# the config key of each encoder's weights (create_model(pretrained=True) fills the ones not given)
PRETRAINED_KEYS = {
    "clinical.pretrained": PRETRAINED["clinical"],
    "dermoscopy.pretrained": PRETRAINED["window_encoder"],
    "dermoscopy.region_pretrained": PRETRAINED["region_encoder"],
}


def list_models() -> list[str]:
    return sorted(PRESETS)


def _nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def resolve_config(preset: str, **overrides: Any) -> ModelConfig:
    """The preset ``preset`` with ``overrides`` applied, checked field by field."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; available: {list_models()}")
    data: dict[str, Any] = deep_merge({"preset": preset}, PRESETS[preset])
    for key, value in overrides.items():
        if value is None and key in ("tasks", "metadata_schema"):
            continue
        if key in AMBIGUOUS:
            raise ValueError(
                f"create_model({preset!r}): {key!r} is ambiguous (both branches have one); use one of "
                f"{list(AMBIGUOUS[key])} or a dotted key such as 'dermoscopy.{key}'"
            )
        key = ALIASES.get(key, key)
        data = deep_merge(data, _nest(key, value))
    try:
        return from_dict(ModelConfig, data)
    except ConfigError as e:
        raise ValueError(f"create_model({preset!r}): {e}") from e


def check_sections(
    preset: str, modalities: str, sections: Mapping[str, Mapping[str, Any]], where: str = "model"
) -> dict[str, dict[str, Any]]:
    """Check overrides of a preset's sections (``{"clinical": {...}, ...}``) as a config resolves,
    before any data set loads: every key and type, and the sizes of the model they give together.

    Raises ConfigError naming the key (``model.clinical.num_crop``) and the valid keys. Returns the
    sections with their values converted to the fields' types.
    """
    if preset not in PRESETS:
        raise ConfigError(f"{where}.preset: unknown model preset {preset!r}; available: {list_models()}")
    data: dict[str, Any] = deep_merge({"preset": preset, "modalities": modalities}, PRESETS[preset])
    data["metadata_dim"] = 1  # a stand-in: the data set gives the real width (only M needs one)
    for name, section in sections.items():
        data = deep_merge(data, {name: dict(section)})
    try:
        cfg = from_dict(ModelConfig, data, where)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e
    return {name: {k: getattr(getattr(cfg, name), k) for k in section} for name, section in sections.items()}


# create_model's keyword arguments of the earlier release -> the config key that replaced each
RENAMED_ARGUMENTS = {
    "clinical_weights": "clinical.pretrained",
    "window_encoder_weights": "dermoscopy.pretrained",
    "region_encoder_weights": "dermoscopy.region_pretrained",
}


def create_model(
    preset: str = "remixformer_paper",
    modalities: str = "CDM",
    tasks: Any = None,
    metadata_dim: int | None = None,
    *,
    metadata_schema: dict[str, Any] | None = None,
    pretrained: bool = False,
    **overrides: Any,
):
    """Build a RemixFormer++ model.

    ``tasks``: an int (diagnosis classes), ``{name: n_classes | [class names]}`` or TaskSpecs (diagnosis
    first). ``metadata_dim``: one-hot width (unknown slots included) when M is used; taken from
    ``metadata_schema`` (a ``MetadataSchema.to_dict()``) when given. Encoder weights are config keys like
    every other field: ``clinical={"pretrained": SOURCE}`` (G and L), ``dermoscopy={"pretrained": SOURCE,
    "region_pretrained": SOURCE}`` (T_phi1; R_phi2's blocks from a ViT of its shape), a SOURCE being a
    file path or ``timm:<name>`` (hub, needs internet); ``pretrained=True`` is shorthand for the paper's
    timm weights for all three. The keyword arguments ``clinical_weights``, ``window_encoder_weights`` and
    ``region_encoder_weights`` of the earlier release still work, with a FutureWarning.
    """
    if "name" in overrides:  # the earlier release's keyword for the preset
        warnings.warn(
            "create_model(name=...) is deprecated and will be removed in the next release; use preset=...",
            FutureWarning,
            stacklevel=2,
        )
        preset = overrides.pop("name")
    weights: dict[str, Any] = {}
    for old, new in RENAMED_ARGUMENTS.items():
        if old in overrides:
            value = overrides.pop(old)
            warnings.warn(
                f"create_model({old}=...) is deprecated and will be removed in the next release; use the "
                f"config key {new} (e.g. {new.split('.')[0]}={{{new.split('.')[1]!r}: ...}})",
                FutureWarning,
                stacklevel=2,
            )
            if value:
                weights[new] = value
    if metadata_schema is not None and metadata_dim is None:
        metadata_dim = _schema_dim(metadata_schema)
    if pretrained:  # the paper's weights for every encoder whose weights are not named
        for key, source in PRETRAINED_KEYS.items():
            weights.setdefault(key, source)
    extra: dict[str, Any] = {"modalities": modalities}
    if tasks is not None:
        extra["tasks"] = [t.to_dict() for t in normalize_tasks(tasks)]
    if metadata_dim is not None:
        extra["metadata_dim"] = metadata_dim
    if metadata_schema is not None:
        extra["metadata_schema"] = metadata_schema
    # later keys win: a key given in `overrides` (dotted or in its section) over `weights`
    cfg = resolve_config(preset, **{**extra, **weights, **overrides})
    return build_model(cfg)


def build_model(cfg: ModelConfig, load_pretrained: bool = True):
    """Model from a full config; pretrained weights named in it are loaded (unless told not to)."""
    model = RemixFormer(cfg)
    if load_pretrained:
        if cfg.clinical.pretrained and "C" in model.branches:
            model.load_reports["clinical"] = load_clinical_weights(
                model.branches["C"], cfg.clinical.pretrained
            )
        if cfg.dermoscopy.pretrained and "D" in model.branches:
            model.load_reports["window_encoder"] = load_window_encoder_weights(
                model.branches["D"], cfg.dermoscopy.pretrained
            )
        if cfg.dermoscopy.region_pretrained and "D" in model.branches:
            if model.branches["D"].region_encoder is None:
                log.info("dermoscopy.region_pretrained unused: HRWE is off, so there is no region encoder")
            else:
                model.load_reports["region_encoder"] = load_region_encoder_weights(
                    model.branches["D"], cfg.dermoscopy.region_pretrained
                )
        for report in model.load_reports.values():
            log.info("%s", report.summary())
    return model


def _schema_dim(schema: dict[str, Any]) -> int:
    return MetadataSchema.from_dict(schema).dim


def config_dict(cfg: ModelConfig) -> dict[str, Any]:
    return to_dict(cfg)
