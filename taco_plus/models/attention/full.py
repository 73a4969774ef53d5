"""Full (quadratic) multi-head cross-attention."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taco_plus.models.attention.base import CrossAttention, context_bias, merge_heads, split_heads


class FullCrossAttention(CrossAttention):
    """Scaled-dot-product cross-attention (Vaswani et al., 2017) with a padding mask.

    Parameters are laid out exactly like :class:`torch.nn.MultiheadAttention`
    (``in_proj_weight`` (3D, D), ``in_proj_bias`` (3D,), ``out_proj``), so the
    official TACO checkpoints, which use ``nn.MultiheadAttention``, load unchanged.
    Cost is O(Lq·Lk·D): linear in caption length for the Injector (image queries,
    text keys) and in image tokens for the Extractor (text queries, image keys).
    """

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__(dim, num_heads)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        # Same initialisation as nn.MultiheadAttention.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def project_qkv(self, query: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-head queries (B, h, Lq, d), keys and values (B, h, Lk, d)."""
        (w_q, w_k, w_v), (b_q, b_k, b_v) = self.in_proj_weight.chunk(3), self.in_proj_bias.chunk(3)
        q = split_heads(F.linear(query, w_q, b_q), self.num_heads)
        k = split_heads(F.linear(context, w_k, b_k), self.num_heads)
        return q, k, split_heads(F.linear(context, w_v, b_v), self.num_heads)

    def forward(self, query: Tensor, context: Tensor, context_mask: Optional[Tensor] = None,
                context_weights: Optional[Tensor] = None) -> Tensor:
        q, k, v = self.project_qkv(query, context)
        bias = context_bias(context_mask, context_weights, q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, h, Lq, d)
        return self.out_proj(merge_heads(out))

    def attention_probs(self, query: Tensor, context: Tensor, context_mask: Optional[Tensor] = None,
                        context_weights: Optional[Tensor] = None) -> Tensor:
        """The attention matrix (B, h, Lq, Lk), for inspection and tests."""
        q, k, _ = self.project_qkv(query, context)
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        bias = context_bias(context_mask, context_weights, q.dtype)
        return (logits if bias is None else logits + bias).softmax(dim=-1)
