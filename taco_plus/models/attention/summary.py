"""The caption projected once along its length: Linformer's projection for the whole adapter.

Wang et al., "Linformer: Self-Attention with Linear Complexity", arXiv 2006.04768.
Per-block Linformer attention (:class:`LinformerCrossAttention`) makes each block's
*attention* linear in caption length, but TACO's adapter also does per-token work
outside attention: every Injector maps all L text tokens through a Linear and a
LayerNorm, and the Extractor, where text tokens are the queries, computes an update
for each of them. On 256×256 training crops that per-token work dominates, and the
adapter still costs 2.7× more at 2,464 tokens than at 77 (measured).

:class:`CaptionSummary` applies the Linformer length projection once, at the adapter's
entry: the caption's L token features become ``k`` summaries ``E^T X`` (B, k, D) with a
learned ``(max_len, k)`` matrix ``E``. All three adapter blocks then work on the ``k``
summaries, so the adapter's cost is independent of the caption length except for this
O(L·k·D) projection. Padding and token weights follow :mod:`.linformer`: padded tokens
are zeroed and take zero rows, real tokens are compacted (token ``j`` uses row ``j``),
so the summaries equal those of the unpadded caption; a summary's weight is the
contribution-weighted mean weight of its tokens.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from taco_plus.models.attention.base import checked_context
from taco_plus.models.attention.linformer import (
    DEFAULT_MAX_CONTEXT_LEN,
    length_projection_rows,
    summary_log_weights,
)


class CaptionSummary(nn.Module):
    """Projects a caption's token features to ``k`` summaries along its length.

    Args:
        text_dim: token feature width.
        k: number of summaries.
        max_len: longest caption (tokens) the projection covers; longer ones raise.
    """

    def __init__(self, text_dim: int, k: int = 64, max_len: int = DEFAULT_MAX_CONTEXT_LEN) -> None:
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"caption summary k must be a positive int, got {k!r}")
        if not isinstance(max_len, int) or max_len < k:
            raise ValueError(f"caption summary max_len must be an int >= k={k}, got {max_len!r}")
        self.text_dim, self.k, self.max_len = text_dim, k, max_len
        # Linformer's initialisation of its projections: U(-1/sqrt(k), 1/sqrt(k)).
        self.proj = nn.Parameter(torch.empty(max_len, k).uniform_(-(k**-0.5), k**-0.5))

    def extra_repr(self) -> str:
        return f"text_dim={self.text_dim}, k={self.k}, max_len={self.max_len}"

    def forward(
        self, text: Tensor, mask: Optional[Tensor] = None, weights: Optional[Tensor] = None
    ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """(B, L, D) tokens -> (summaries (B, k, D), mask (B, k), weights (B, k) or None)."""
        b, n, _ = text.shape
        if n > self.max_len:
            raise ValueError(
                f"caption of {n} tokens exceeds the caption summary's max_len={self.max_len}; "
                "build it with a larger max_len (config: attention.caption_summary.max_len)"
            )
        text, mask = checked_context(text, mask, weights)
        rows = length_projection_rows(self.proj, n, mask).to(text.dtype)  # (B|1, L, k)
        summaries = torch.einsum("bnd,bnk->bkd", text, rows.expand(b, -1, -1))
        log_w = summary_log_weights(rows, weights).expand(b, -1)  # (B, k)
        reached = torch.isfinite(log_w)  # False only for a summary no real token reaches
        summary_weights = None if weights is None else log_w.masked_fill(~reached, 0.0).exp()
        return summaries, reached, summary_weights
