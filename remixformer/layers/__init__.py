"""Reusable building blocks shared by the branches: attention, windows, cross-attention."""

from remixformer.layers.attention import CrossAttentionBlock, attention_probs, split_heads
from remixformer.layers.windows import (
    relative_position_bias,
    shifted_window_mask,
    stage_window_size,
    window_partition,
    window_reverse,
)

__all__ = [
    "CrossAttentionBlock",
    "attention_probs",
    "relative_position_bias",
    "shifted_window_mask",
    "split_heads",
    "stage_window_size",
    "window_partition",
    "window_reverse",
]
