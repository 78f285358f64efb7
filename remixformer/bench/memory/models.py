"""The models of Table IX: ours (one branch of a preset) and timm's ViT-S/16 and Swin-T."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used, so that the CLI's --help stays fast
    import torch

from remixformer import keys
from remixformer.modalities import IMAGE_LETTERS, modality_name
from remixformer.models.registry import create_model, resolve_config

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# The models of Table IX
# --------------------------------------------------------------------------------------------------

Forward = Callable[["torch.Tensor"], "torch.Tensor"]  # images (B, 3, S, S) -> logits (B, n)

# timm models shrunk for --quick (CI smoke runs): the same families, a few thousand parameters
_TINY_TIMM: dict[str, dict[str, Any]] = {
    "vit_small_patch16_224": {"embed_dim": 32, "depth": 2, "num_heads": 2},
    "swin_tiny_patch4_window7_224": {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2)},
}


@dataclass(frozen=True)
class BenchModel:
    """One model of the table. ``arch``: a modality letter of ours (built from the ``remixformer_paper``
    preset, ``remixformer_tiny`` at the tiny scale, with the image size and ``overrides`` of its config
    section) or a timm model name (built at ``img_size=S``)."""

    key: str
    label: str
    description: str
    arch: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        return self.arch in IMAGE_LETTERS

    def _model_args(self, size: int, scale: str) -> dict[str, Any]:
        preset = "remixformer_tiny" if scale == "tiny" else "remixformer_paper"
        section = {"image_size": size, **self.overrides}
        return {"preset": preset, "modalities": self.arch, modality_name(self.arch): section}

    def config(self, size: int, scale: str):
        return resolve_config(**self._model_args(size, scale))

    def build(self, size: int, num_classes: int, scale: str) -> tuple[torch.nn.Module, Forward]:
        """The model, random-initialised, and its forward from images to diagnosis logits."""
        if not self.ours:
            import timm

            kwargs = dict(_TINY_TIMM[self.arch]) if scale == "tiny" else {}
            # img_size is all timm needs: patch and position embeddings follow it, and Swin keeps its 7x7
            # windows, padding each stage's grid up to a multiple of 7 as the original Swin does.
            model = timm.create_model(self.arch, img_size=size, num_classes=num_classes, **kwargs)
            return model, model
        model = create_model(**self._model_args(size, scale), tasks=num_classes)
        key = keys.CLINICAL if self.arch == "C" else keys.DERMOSCOPY

        def forward(x: torch.Tensor) -> torch.Tensor:
            return model({key: x})[keys.LOGITS]["diag"]

        return model, forward

    def pixels_in_flight(self, size: int, batch: int, scale: str) -> int:
        """Input pixels whose activations are in memory together during a step: what the memory check
        scales a measured row by (:func:`predict_peak`). A whole-image model holds every pixel; Ours-C its
        global copy and its crops, whatever the photo's size; Ours-D one chunk of windows (recomputed in
        backward), plus the image and one vector per window."""
        if not self.ours:
            return batch * size * size
        cfg = self.config(size, scale)
        if self.arch == "C":
            c = cfg.clinical
            return batch * (c.global_size**2 + (c.num_samples or c.num_crops) * c.crop_size**2)
        d = cfg.dermoscopy
        windows = batch * (size // d.window_size) ** 2
        in_flight = min(windows, d.window_chunk_size) if d.checkpoint_windows else windows
        return in_flight * d.window_size**2 + batch * size**2 // 64


MODELS: dict[str, BenchModel] = {
    m.key: m
    for m in (
        BenchModel(
            "ours_c",
            "Ours-C",
            "remixformer_paper C: photo S^2, global copy 384^2, crops 224^2",
            "C",
            {"grad_checkpointing": False},  # Table IX's plain branch (the preset checkpoints its blocks)
        ),
        BenchModel("ours_d", "Ours-D", "remixformer_paper D: 256^2 windows, HRWE, checkpointed chunks", "D"),
        BenchModel("vit_s16", "ViT-S/16", "timm ViT-S/16 at img_size=S", "vit_small_patch16_224"),
        BenchModel(
            "swin_t",
            "Swin-T",
            "timm Swin-T at img_size=S (7x7 windows, padded grids)",
            "swin_tiny_patch4_window7_224",
        ),
        # variants beyond Table IX: the memory / time knobs of our branches
        BenchModel(
            "ours_c_ckpt",
            "Ours-C+ckpt",
            "Ours-C, its Swin blocks checkpointed",
            "C",
            {"grad_checkpointing": True},
        ),
        BenchModel(
            "ours_d_chunk4",
            "Ours-D chunk 4",
            "Ours-D, 4 windows per checkpointed chunk",
            "D",
            {"window_chunk_size": 4},
        ),
        BenchModel(
            "ours_d_chunk1",
            "Ours-D chunk 1",
            "Ours-D, 1 window per checkpointed chunk",
            "D",
            {"window_chunk_size": 1},
        ),
    )
}
DEFAULT_MODELS = ("ours_c", "ours_d", "vit_s16", "swin_t")  # the paper's Table IX
