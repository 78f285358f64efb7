"""Lightning training-state checkpoints without pickling: tensors in safetensors, the rest as JSON,
written atomically (a kill during a write leaves the previous file intact)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import CheckpointIO

from remixformer.serialization import load_tree, save_tree


class SafetensorsCheckpointIO(CheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        save_tree(path, checkpoint, metadata={"format": "remixformer-training-state"})

    def load_checkpoint(
        self, path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict:
        device = map_location if isinstance(map_location, str) else "cpu"
        return load_tree(path, device=device)

    def remove_checkpoint(self, path) -> None:
        if Path(path).exists():
            os.remove(path)
