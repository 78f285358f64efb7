"""RemixFormer++ networks: branches, fusion, presets, weights and checkpoints."""

from remixformer.models.checkpoint import load_model, save_model
from remixformer.models.config import ModelConfig
from remixformer.models.registry import build_model, create_model, list_models
from remixformer.models.remixformer import RemixFormer

__all__ = [
    "ModelConfig",
    "RemixFormer",
    "build_model",
    "create_model",
    "list_models",
    "load_model",
    "save_model",
]
