"""Linformer-style cross-attention with a resolution-independent, content-based projection (Perceiver pooling,
Jaegle et al., ICML 2021, used as Linformer's ``E``): the Extractor's image side (docs/attention.md)."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taco_plus.models.attention.base import CrossAttention, checked_context, merge_heads, split_heads


class PooledLinformerCrossAttention(CrossAttention):
    """Cross-attention to ``k`` content-pooled summaries of an any-length context.

    Layers are named like ``linformer.LinformerSelfAttention``'s (``to_q``, ``to_k``,
    ``to_v`` without bias, ``to_out``); the positional ``proj_k``/``proj_v`` are
    replaced by ``pool_queries`` (k, D).

    ``k``: summaries the context is pooled to; ``dropout`` on the attention probabilities (training only).
    """

    def __init__(self, dim: int, num_heads: int = 8, k: int = 64, dropout: float = 0.0) -> None:
        super().__init__(dim, num_heads)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"pooled linformer k must be a positive int, got {k!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.k = k
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        # Unit-variance entries: against a LayerNormed context, scores start ~N(0, 1),
        # so each summary starts as a mildly different weighted mean of all tokens.
        self.pool_queries = nn.Parameter(torch.randn(k, dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, k={self.k}"

    def pooling(self, context: Tensor, context_mask: Optional[Tensor] = None,
                context_weights: Optional[Tensor] = None) -> Tensor:
        """Pooling matrix A (B, Lk, k); each column sums to 1 over the real tokens."""
        scores = context @ self.pool_queries.to(context.dtype).t() / math.sqrt(self.dim)  # (B, Lk, k)
        if context_weights is not None:
            scores = scores + context_weights.to(scores.dtype).log().unsqueeze(-1)
        if context_mask is not None:
            scores = scores.masked_fill(~context_mask.unsqueeze(-1), float("-inf"))
        return scores.softmax(dim=1)

    def forward(self, query: Tensor, context: Tensor, context_mask: Optional[Tensor] = None,
                context_weights: Optional[Tensor] = None) -> Tensor:
        context, context_mask = checked_context(context, context_mask, context_weights)
        pooled = self.pooling(context, context_mask, context_weights).transpose(1, 2) @ context  # (B, k, D)
        q = split_heads(self.to_q(query), self.num_heads)  # (B, h, Lq, d)
        k = split_heads(self.to_k(pooled), self.num_heads)  # (B, h, k, d)
        v = split_heads(self.to_v(pooled), self.num_heads)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, h, Lq, d)
        return self.to_out(merge_heads(out))
