"""The cross-attention interface shared by the adapter's Injector and Extractor (docs/attention.md)::

    out = attn(query, context, context_mask=None, context_weights=None)
    # query (B, Lq, D), context (B, Lk, D) -> out (B, Lq, D)

``context_mask`` (B, Lk): True for real tokens; masked ones get exactly zero attention. ``context_weights``
(B, Lk) > 0: token ``j``'s attention mass is scaled by ``w_j``, ``softmax(logits + log w)``, where token
reweighting survives the adapter's LayerNorms (scaling embeddings by ``w`` would be nearly inert).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn


class CrossAttention(nn.Module):
    """Multi-head cross-attention from ``query`` tokens to ``context`` tokens.

    Args:
        dim: feature width of queries, keys and values.
        num_heads: number of attention heads; must divide ``dim``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.dim = dim
        self.num_heads = num_heads

    def forward(self, query: Tensor, context: Tensor, context_mask: Optional[Tensor] = None,
                context_weights: Optional[Tensor] = None) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


# One attention module for a width and a head count: what Hydra's ``_partial_: true`` configs give.
AttentionFactory = Callable[[int, int], CrossAttention]


def context_bias(context_mask: Optional[Tensor], context_weights: Optional[Tensor],
                 dtype: torch.dtype) -> Optional[Tensor]:
    """Additive logit bias (B, 1, 1, Lk): ``-inf`` where masked, ``log(w)`` where weighted; None when neither
    is given (the fast unmasked kernel)."""
    if context_mask is None and context_weights is None:
        return None
    bias = None
    if context_weights is not None:
        if (context_weights <= 0).any():
            raise ValueError("context_weights must be strictly positive")
        bias = context_weights.to(dtype).log()
    if context_mask is not None:
        mask = context_mask.to(torch.bool)
        if bias is None:
            bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        bias = bias.masked_fill(~mask, float("-inf"))
    return bias[:, None, None, :]


def checked_context(context: Tensor, context_mask: Optional[Tensor],
                    context_weights: Optional[Tensor]) -> tuple[Tensor, Optional[Tensor]]:
    """Validates mask and weights and zeroes padded tokens (even NaN padding cannot leak): ``(context, bool
    mask or None)``, for the variants that mix context tokens before attending (pooling, caption summaries)."""
    if context_mask is not None:
        context_mask = context_mask.to(torch.bool)
        if not context_mask.any(dim=1).all():
            raise ValueError("every context needs at least one unmasked token")
        context = context.masked_fill(~context_mask.unsqueeze(-1), 0.0)
    if context_weights is not None and (context_weights <= 0).any():
        raise ValueError("context_weights must be strictly positive")
    return context, context_mask


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, L, D) -> (B, heads, L, D / heads)."""
    b, n, d = x.shape
    return x.view(b, n, num_heads, d // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, heads, L, d) -> (B, L, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)
