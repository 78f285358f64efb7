"""RemixFormer++: multi-modal skin tumour diagnosis from a clinical photo, a dermoscopy image and metadata."""

__version__ = "0.1.0"

from remixformer.models import (
    ModelConfig,
    RemixFormer,
    build_model,
    create_model,
    list_models,
    load_model,
    save_model,
)

__all__ = [
    "ModelConfig",
    "RemixFormer",
    "__version__",
    "build_model",
    "create_model",
    "list_models",
    "load_model",
    "save_model",
]
