"""RemixFormer++: the three branches, cross-modality fusion and the task heads, composed.

``model(batch)`` takes the batch dict of :mod:`remixformer.keys` and returns ``{"logits": {task: (B, n)}}``;
``model(batch, explain=True)`` adds ``"explain"``: the LSM score grid, selected cells and crop boxes of
the clinical branch, the region- and window-level attention (and MSTA template assignment) of the
dermoscopy branch, and the CMF attention. Maps of cases that lack the modality are NaN (or -1 for
integer maps).

Each branch runs only on the cases that have its modality; a model built for several modalities answers
from whatever subset a case has.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from remixformer import keys
from remixformer.layers.imaging import normalize_images
from remixformer.models.branch import BranchOutput, no_weight_decay_names
from remixformer.models.clinical import ClinicalBranch
from remixformer.models.config import ModelConfig
from remixformer.models.dermoscopy import DermoscopyBranch
from remixformer.models.fusion import CrossModalityFusion, TaskHeads
from remixformer.models.metadata import MetadataBranch

log = logging.getLogger(__name__)

BRANCH_KEYS = {"C": keys.CLINICAL, "D": keys.DERMOSCOPY, "M": keys.METADATA}


class RemixFormer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        m = config.modalities
        branches: dict[str, nn.Module] = {}
        if "C" in m:
            branches["C"] = ClinicalBranch(config.clinical)
        if "D" in m:
            branches["D"] = DermoscopyBranch(config.dermoscopy)
        if "M" in m:
            branches["M"] = MetadataBranch(config.metadata_dim, config.metadata)
        self.branches = nn.ModuleDict(branches)
        dims = {k: (b.out_dim, b.token_dim) for k, b in branches.items()}
        self.fusion = CrossModalityFusion(dims, config.fusion.dim, config.fusion.num_heads)
        self.heads = TaskHeads(config.fusion.dim, config.task_specs, config.fusion.head_dropout)
        # Training-only heads, not in the paper: deep supervision of the clinical global encoder's class
        # token ("C", clinical.deep_supervision) and a head on each branch's embedding ("branch_C",
        # "branch_D", "branch_M"; fusion.branch_supervision). Their losses are weighted by aux_weights.
        self.aux_heads = nn.ModuleDict()
        self.aux_weights: dict[str, float] = {}
        if "C" in m and config.clinical.deep_supervision > 0:
            self.aux_heads["C"] = TaskHeads(branches["C"].global_encoder.num_features, config.task_specs)
            self.aux_weights["C"] = config.clinical.deep_supervision
        if len(m) > 1 and config.fusion.branch_supervision > 0:
            for letter, branch in branches.items():
                self.aux_heads[f"branch_{letter}"] = TaskHeads(branch.out_dim, config.task_specs)
                self.aux_weights[f"branch_{letter}"] = config.fusion.branch_supervision
        self.load_reports: dict[str, Any] = {}

    @property
    def modalities(self) -> str:
        return self.config.modalities

    @property
    def tasks(self):
        return self.config.task_specs

    def expected_shape(self, letter: str) -> tuple[int, ...]:
        c = self.config
        if letter == "C":
            return (3, c.clinical.image_size, c.clinical.image_size)
        if letter == "D":
            return (3, c.dermoscopy.image_size, c.dermoscopy.image_size)
        return (c.metadata_dim,)

    def _inputs(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
        """Check the batch and return per-modality inputs and presence masks (all B rows)."""
        if not isinstance(batch, dict):
            raise ValueError(
                f"the model takes a dict keyed {sorted(BRANCH_KEYS.values())}, got {type(batch)}"
            )
        inputs, present = {}, {}
        sizes = set()
        for letter in self.modalities:
            key = BRANCH_KEYS[letter]
            x = batch.get(key)
            if x is None:
                continue
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"batch[{key!r}] must be a tensor, got {type(x).__name__}")
            expected = self.expected_shape(letter)
            if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
                raise ValueError(
                    f"batch[{key!r}] has shape {tuple(x.shape)}; "
                    f"expected (B, {', '.join(map(str, expected))})"
                    + (
                        " (images are resized by the data pipeline to the model's size)"
                        if letter != "M"
                        else " (the one-hot width of the metadata schema)"
                    )
                )
            mask = batch.get(keys.present_key(key))
            if mask is None:
                mask = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            mask = torch.as_tensor(mask, device=x.device).bool()
            if mask.shape != (x.shape[0],):
                raise ValueError(
                    f"batch[{keys.present_key(key)!r}] has shape {tuple(mask.shape)}; "
                    f"expected ({x.shape[0]},)"
                )
            # uint8 images from the data pipeline are normalised here, on the model's device
            inputs[letter], present[letter] = (x if letter == "M" else normalize_images(x)), mask
            sizes.add(x.shape[0])
        if not inputs:
            raise ValueError(
                f"the batch holds none of this model's inputs {[BRANCH_KEYS[m] for m in self.modalities]}; "
                f"got keys {sorted(batch)}"
            )
        if len(sizes) > 1:
            raise ValueError(f"modalities disagree on the batch size: {sorted(sizes)}")
        B = sizes.pop()
        for letter in self.modalities:  # absent entry = absent for every case
            if letter not in inputs:
                any_x = next(iter(inputs.values()))
                present[letter] = torch.zeros(B, dtype=torch.bool, device=any_x.device)
        anything = torch.stack([present[m] for m in self.modalities]).any(0)
        if not bool(anything.all()):
            rows = (~anything).nonzero().flatten().tolist()
            raise ValueError(f"case(s) at batch rows {rows} have none of the modalities {self.modalities}")
        return inputs, present, B

    def no_weight_decay(self) -> set[str]:
        """Parameters without weight decay (:func:`~remixformer.models.branch.no_weight_decay_names`)."""
        return no_weight_decay_names(self)

    def forward(self, batch: dict[str, Any], explain: bool = False) -> dict[str, Any]:
        inputs, present, B = self._inputs(batch)
        outputs: dict[str, BranchOutput] = {}
        maps: dict[str, torch.Tensor] = {}
        aux: dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]] = {}  # name: (logits, rows)
        for letter, x in inputs.items():
            rows = present[letter].nonzero().flatten()
            if rows.numel() == 0:
                continue
            sub = x if rows.numel() == B else x[rows]
            out = self.branches[letter](sub, explain=explain)
            if self.training and letter in self.aux_heads:
                aux[letter] = (self.aux_heads[letter](out.aux["global_cls"]), rows)
            if self.training and f"branch_{letter}" in self.aux_heads:
                aux[f"branch_{letter}"] = (self.aux_heads[f"branch_{letter}"](out.embedding), rows)
            if rows.numel() != B:
                out = BranchOutput(
                    _scatter(out.embedding, rows, B, 0.0),
                    _scatter(out.tokens, rows, B, 0.0),
                    {k: _scatter(v, rows, B) for k, v in out.maps.items()},
                    token_weights=None
                    if out.token_weights is None
                    else _scatter(out.token_weights, rows, B, 1.0),
                )
            outputs[letter] = out
            maps.update(out.maps)
        present = {m: p if m in outputs else torch.zeros_like(p) for m, p in present.items()}
        fused, cmf_maps = self.fusion(outputs, present, explain=explain)
        result: dict[str, Any] = {keys.LOGITS: self.heads(fused)}
        if aux:  # {head name: (logits of the present rows, their row indices)}; weights in aux_weights
            result[keys.AUX_LOGITS] = aux
        if explain:
            maps.update(cmf_maps)
            result[keys.EXPLAIN] = maps
        return result

    def num_parameters(self, prefix: str = "") -> int:
        """Parameters of the model that answers: the training-only heads (``aux_heads``) are left out."""
        return sum(
            p.numel()
            for n, p in self.named_parameters()
            if n.startswith(prefix) and not n.startswith("aux_heads.")
        )


def _scatter(x: torch.Tensor, rows: torch.Tensor, B: int, fill: float | None = None) -> torch.Tensor:
    """Rows of the present cases back into a full batch. Absent rows hold ``fill``: zeros for features
    (never used, and harmless in norms), NaN (floats) or -1 (integers) for explanation maps."""
    if fill is None:
        fill = float("nan") if x.is_floating_point() else -1
    full = torch.full((B, *x.shape[1:]), fill, dtype=x.dtype, device=x.device)
    return full.index_copy(0, rows, x)
