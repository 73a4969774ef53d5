"""The caption projected once along its length (Wang et al., "Linformer", arXiv 2006.04768): the text side of
the Linformer ablation. Padding, token weights and caption length: docs/attention.md, "CaptionSummary"."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from taco_plus.models.attention.base import checked_context


class CaptionSummary(nn.Module):
    """Projects a caption's token features to ``k`` summaries along its length.

    Args:
        text_dim: token feature width.
        k: number of summaries (Linformer's projected length).
        max_len: longest caption (tokens) the projection covers; longer ones raise.
    """

    def __init__(self, text_dim: int, k: int, max_len: int) -> None:
        super().__init__()
        for name, value in (("k", k), ("max_len", max_len)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"caption summary {name} must be a positive int, got {value!r}")
        self.text_dim, self.k, self.max_len = text_dim, k, max_len
        # Linformer's initialisation of its projections: U(-1/sqrt(k), 1/sqrt(k)).
        self.proj = nn.Parameter(torch.empty(max_len, k).uniform_(-(k**-0.5), k**-0.5))

    def extra_repr(self) -> str:
        return f"text_dim={self.text_dim}, k={self.k}, max_len={self.max_len}"

    def forward(self, text: Tensor, mask: Optional[Tensor] = None, weights: Optional[Tensor] = None,
                real: Optional[Tensor] = None) -> Tensor:
        """Tokens (B, L, D), mask (B, L) True = kept, weights (B, L) > 0 -> summaries (B, k, D).
        ``real`` (B, L): the real tokens, over which the weights' mean is taken (default: kept)."""
        b, n, _ = text.shape
        if n > self.max_len:
            raise ValueError(f"caption of {n} tokens exceeds the caption summary's max_len={self.max_len} (the "
                             "longest caption it was built for: text_encoder.max_tokens, or attention.max_len for "
                             "chunked captions)")
        text, mask = checked_context(text, mask, weights)
        if mask is None:
            rows = self.proj[:n].expand(b, -1, -1)  # (B, L, k)
        else:  # the j-th real token takes row j; padding takes a zero row
            rank = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
            rows = self.proj[rank] * mask.unsqueeze(-1)
        if weights is not None:  # energy share x w / mean(w), the mean over real tokens only
            w = weights.to(text.dtype)
            real = mask if real is None else real
            real = torch.ones_like(w) if real is None else real.to(w.dtype)
            mean = (w * real).sum(dim=1, keepdim=True) / real.sum(dim=1, keepdim=True)  # (B, 1)
            rows = rows * (w / mean).sqrt().unsqueeze(-1)
        return torch.einsum("bnd,bnk->bkd", text, rows.to(text.dtype))
