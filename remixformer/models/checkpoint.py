"""Our model checkpoints: one safetensors file holding the weights and, in its header, the JSON config
(model sizes and switches, tasks with label names, metadata schema) and free-form extras (training
run, data set). Saved atomically; loaded strictly; never unpickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from remixformer.config import ConfigError, from_dict, to_dict
from remixformer.models.config import ModelConfig
from remixformer.serialization import CheckpointError, read_safetensors, save_tensors

FORMAT = "remixformer-model"
VERSION = "1"


def save_model(model: torch.nn.Module, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a RemixFormer) and its config to ``path`` (``.safetensors``)."""
    meta = {
        "format": FORMAT,
        "format_version": VERSION,
        "config": json.dumps(to_dict(model.config)),
        "extra": json.dumps(extra or {}),
    }
    return save_tensors(path, model.state_dict(), meta)


def read_checkpoint_info(path: str | Path) -> tuple[ModelConfig, dict[str, Any], dict[str, torch.Tensor]]:
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a remixformer model checkpoint "
            f"(format {meta.get('format')!r}, expected {FORMAT!r}); "
            "training-state files (*.state.safetensors) are for --resume, model files for evaluation"
        )
    try:
        cfg = from_dict(ModelConfig, json.loads(meta["config"]))
    except (KeyError, json.JSONDecodeError, ConfigError) as e:
        raise CheckpointError(f"{path}: its config header is missing or invalid ({e})") from e
    return cfg, json.loads(meta.get("extra", "{}")), tensors


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model from its stored config and load the weights strictly."""
    from remixformer.models.registry import build_model

    cfg, extra, tensors = read_checkpoint_info(path)
    model = build_model(cfg, load_pretrained=False)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored config: {e}") from e
    model.checkpoint_extra = extra
    return model.to(device).eval()
