"""Attention helpers and the directed cross-attention block used by CSF (eqs. 10-14) and CMF."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C // heads)."""
    B, N, C = x.shape
    return x.view(B, N, num_heads, C // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    B, H, N, d = x.shape
    return x.transpose(1, 2).reshape(B, N, H * d)


def attention_probs(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Explicit softmax(q k^T / sqrt(d) + bias), for the maps that explanations need.

    The forward passes use ``F.scaled_dot_product_attention``; this is only called when the attention
    weights themselves are wanted.
    """
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        logits = logits + bias
    return logits.softmax(dim=-1)


class CrossAttentionBlock(nn.Module):
    """Directed cross-attention: a class token of one side reads the tokens of the other side.

    Eqs. 10-14 of the paper: the class token ``x`` is joined with the other side's tokens ``context``;
    one LayerNorm normalises the joined tensor; the query comes from the normalised class token, keys and
    values from the normalised context; the output is the normalised class token plus a linear
    projection of the attention result.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"cross-attention width {dim} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        context_weight: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x``: (B, C) class token; ``context``: (B, T, C), every token usable; ``context_weight``:
        (B, T) or None, a factor on each context token's value (after the LayerNorm and the value
        projection), so the output is x + proj(sum_t a_t w_t v_t).

        ``context_weight`` carries the LSM estimator S_v / stopgrad(S_v) of the crop a token comes from
        (value 1, gradient dS_v / S_v). Scaling the tokens themselves would do nothing: the LayerNorm
        over the joined tensor divides each token by its own scale and cancels the factor, and with it
        the estimator's gradient through the local patch tokens.

        There is no key mask: CSF's tokens are always all present, and CMF gives a block only the rows
        whose source modality is present (a row without any source never reaches the block), so no row
        can have all its keys masked (which would make the softmax NaN).

        Returns the fused token (B, C) and, when asked, the attention over the context (B, heads, T).
        """
        joined = self.norm(torch.cat([x[:, None], context], dim=1))  # B, 1+T, C: one LN over both sides
        xq, ctx = joined[:, :1], joined[:, 1:]
        q = split_heads(self.q(xq), self.num_heads)  # B, h, 1, d
        k = split_heads(self.k(ctx), self.num_heads)  # B, h, T, d
        v = split_heads(self.v(ctx), self.num_heads)
        if context_weight is not None:
            v = v * context_weight[:, None, :, None].to(v.dtype)  # B, h, T, d: each token's value w_t v_t
        out = F.scaled_dot_product_attention(q, k, v)  # B, h, 1, d
        fused = xq[:, 0] + self.proj(merge_heads(out)[:, 0])
        attn = attention_probs(q, k)[:, :, 0] if return_attention else None  # B, h, T
        return fused, attn
