"""The inference graph: the model's forward over flat tensors with presence masks, without branching
on the data, so that it can be traced for export (ONNX) and compiled.

``RemixFormer.forward`` runs each branch on the rows that have its modality and skips cross-attention
blocks whose source is absent (``nonzero`` and indexing: shapes that depend on the data). Here every
branch and every block runs on all B rows and the presence masks select, with ``torch.where``, what
the eager forward would have computed for each row. Rows are independent in eval mode, so the result
is the eager one up to float rounding; the difference is checked by :mod:`remixformer.serving.onnx_export`
on export and by the tests. A case with none of the modalities gets probabilities of the heads' bias
(eager refuses it); callers check inputs first, as the Predictor does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from remixformer import keys
from remixformer.models.remixformer import BRANCH_KEYS, RemixFormer
from remixformer.tasks import MULTI, TaskSpec


def graph_input_names(modalities: str) -> list[str]:
    """Input names in order: for each modality of the model, its tensor then its presence mask."""
    names: list[str] = []
    for letter in modalities:
        key = BRANCH_KEYS[letter]
        names += [key, keys.present_key(key)]
    return names


def graph_output_names(tasks: Sequence[TaskSpec]) -> list[str]:
    """Output names in order: each task's logits, then each task's probabilities."""
    names = [t.name for t in tasks]
    return [f"{t}_logits" for t in names] + [f"{t}_probabilities" for t in names]


class InferenceGraph(nn.Module):
    """``forward(*inputs)`` over the tensors named by :func:`graph_input_names` (float images and
    metadata, bool masks) -> the tensors named by :func:`graph_output_names` (float32). The model is
    put in eval mode; its weights are shared, not copied."""

    def __init__(self, model: RemixFormer) -> None:
        super().__init__()
        self.model = model.eval()
        self.letters = list(model.modalities)
        self.input_names = graph_input_names(model.modalities)
        self.output_names = graph_output_names(model.tasks)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) != 2 * len(self.letters):
            raise ValueError(f"expected {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        model = self.model
        x = {m: inputs[2 * i] for i, m in enumerate(self.letters)}
        present = {m: inputs[2 * i + 1].bool() for i, m in enumerate(self.letters)}
        outputs = {m: model.branches[m](x[m]) for m in self.letters}
        fused = _fuse(model, outputs, present)
        logits = model.heads(fused)
        probs = [
            logits[t.name].sigmoid() if t.kind == MULTI else logits[t.name].softmax(-1) for t in model.tasks
        ]
        return (*(logits[t.name] for t in model.tasks), *probs)


def _fuse(model: RemixFormer, outputs: dict, present: dict[str, torch.Tensor]) -> torch.Tensor:
    """:class:`~remixformer.models.fusion.CrossModalityFusion` with masks in place of row indices."""
    fusion = model.fusion
    emb = {m: fusion.embed_proj[m](o.embedding) for m, o in outputs.items()}
    tok = {m: fusion.token_proj[m](outputs[m].tokens) for m in fusion.token_proj}
    any_emb = next(iter(emb.values()))
    total = torch.zeros_like(any_emb)
    count = torch.zeros_like(any_emb[:, 0])
    for m in outputs:
        acc = torch.zeros_like(total)
        n = torch.zeros_like(count)
        for q, s in fusion.pairs:
            if q != m:
                continue
            both = present[q] & present[s]
            fused, _ = fusion.blocks[f"{q}_from_{s}"](emb[q], tok[s], outputs[s].token_weights)
            acc = acc + torch.where(both[:, None], fused, torch.zeros_like(fused))
            n = n + both.to(n.dtype)
        first = next((f"{q}_from_{s}" for q, s in fusion.pairs if q == m), None)
        own = fusion.blocks[first].norm(emb[m]) if first else fusion.norms[m](emb[m])
        f = torch.where(n[:, None] > 0, acc / n.clamp(min=1)[:, None], own)
        total = torch.where(present[m][:, None], total + f, total)
        count = count + present[m].to(count.dtype)
    return total / count.clamp(min=1)[:, None]
