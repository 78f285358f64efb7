"""Cross-modality fusion (CMF) and the task heads.

CMF comes from RemixFormer (MICCAI 2022, not in the seed paper). As known from a public
re-implementation: directed cross-attention blocks C<-D, D<-C, M<-C, M<-D (the block of
:class:`remixformer.layers.CrossAttentionBlock`, as in CSF); each branch's embedding and tokens are
first projected to one fusion width.

Our choices for a case that lacks modalities (docs/model.md): a block whose source is absent for a
case is skipped for that case; a modality's fused vector is the mean of its blocks over the sources
present or, when none is, its normalised embedding (the block without its attention term); the
representation is the mean of the fused vectors of the modalities present. Absent modalities are
skipped, never zero-filled, and the heads see one width whatever is present.
"""

from __future__ import annotations

import torch
from torch import nn

from remixformer import keys
from remixformer.layers.attention import CrossAttentionBlock
from remixformer.models.branch import BranchOutput
from remixformer.tasks import TaskSpec

DIRECTED_PAIRS = (("C", "D"), ("D", "C"), ("M", "C"), ("M", "D"))  # (query side, source side)


class CrossModalityFusion(nn.Module):
    def __init__(self, dims: dict[str, tuple[int, int]], dim: int, num_heads: int) -> None:
        """``dims``: letter -> (embedding width, token width) of each built branch."""
        super().__init__()
        self.letters = [m for m in "CDM" if m in dims]
        self.pairs = [(q, s) for q, s in DIRECTED_PAIRS if q in dims and s in dims]
        sources = {s for _, s in self.pairs}
        self.embed_proj = nn.ModuleDict({m: nn.Linear(dims[m][0], dim) for m in self.letters})
        self.token_proj = nn.ModuleDict({m: nn.Linear(dims[m][1], dim) for m in self.letters if m in sources})
        self.blocks = nn.ModuleDict(
            {f"{q}_from_{s}": CrossAttentionBlock(dim, num_heads) for q, s in self.pairs}
        )
        # a modality that reads no other one (e.g. C in a CM model) is only normalised
        self.norms = nn.ModuleDict(
            {m: nn.LayerNorm(dim) for m in self.letters if not any(q == m for q, _ in self.pairs)}
        )
        self.dim = dim

    def forward(
        self, outputs: dict[str, BranchOutput], present: dict[str, torch.Tensor], explain: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``outputs``: letter -> branch output for all B rows (absent rows arbitrary); ``present``: letter ->
        bool (B,). Returns the fused representation (B, dim) and, when explaining, CMF attention maps."""
        any_out = next(iter(outputs.values()))
        B, device = any_out.embedding.shape[0], any_out.embedding.device
        emb = {m: self.embed_proj[m](o.embedding) for m, o in outputs.items()}
        tok = {m: self.token_proj[m](outputs[m].tokens) for m in self.token_proj if m in outputs}
        tok_w = {m: outputs[m].token_weights for m in tok}
        maps: dict[str, torch.Tensor] = {}
        total = torch.zeros(B, self.dim, device=device, dtype=any_out.embedding.dtype)
        count = torch.zeros(B, device=device, dtype=total.dtype)
        for m in outputs:
            acc = torch.zeros_like(total)
            n = torch.zeros_like(count)
            for q, s in self.pairs:
                if q != m or s not in outputs:
                    continue
                rows = (present[q] & present[s]).nonzero().flatten()
                if rows.numel() == 0:
                    continue
                weight = None if tok_w[s] is None else tok_w[s][rows]
                fused, attn = self.blocks[f"{q}_from_{s}"](
                    emb[q][rows], tok[s][rows], weight, return_attention=explain
                )
                acc = acc.index_add(0, rows, fused)
                n = n.index_add(0, rows, torch.ones_like(rows, dtype=n.dtype))
                if explain:
                    full = torch.full((B, *attn.shape[1:]), float("nan"), device=device, dtype=attn.dtype)
                    maps[keys.cmf_key(q, s)] = full.index_copy(0, rows, attn)
            # no source present for a case: the block without its attention term, i.e. the normed token
            first = next((f"{q}_from_{s}" for q, s in self.pairs if q == m), None)
            own = self.blocks[first].norm(emb[m]) if first else self.norms[m](emb[m])
            f = torch.where(n[:, None] > 0, acc / n.clamp(min=1)[:, None], own)
            total = torch.where(present[m][:, None], total + f, total)
            count = count + present[m].to(count.dtype)
        return total / count.clamp(min=1)[:, None], maps


class TaskHeads(nn.Module):
    """One linear head per task (the diagnosis, Derm7pt criteria, a multi-label attribute head)."""

    def __init__(self, dim: int, tasks: tuple[TaskSpec, ...], dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({t.name: nn.Linear(dim, t.num_classes) for t in tasks})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.drop(self.norm(x))
        return {name: head(x) for name, head in self.heads.items()}
