"""Linformer cross-attention over a variable-length text context (the Injector's keys).

Wang et al., "Linformer: Self-Attention with Linear Complexity", arXiv 2006.04768 (2020).
Keys and values are projected along the *sequence* axis to ``k`` summaries by learned
``(max_context_len, k)`` matrices ``E`` (keys) and ``F`` (values); queries then attend
to the ``k`` summaries, so the cost is O((Lq + Lk)·k·D) instead of O(Lq·Lk·D).

Parameters and their initialisation are those of ``linformer.LinformerSelfAttention``
(lucidrains' package; held as ``self.linformer``, so ``to_q``, ``to_k``, ``to_v``,
``proj_k``, ``proj_v``, ``to_out`` keep their names). The package's own forward has no
padding mask and no token weights, so the forward pass is written here on those
parameters. With neither mask nor weights it computes what the package computes
(a test checks this), in a cheaper order: ``E^T (X W_k) = (E^T X) W_k`` because
``to_k``/``to_v`` have no bias, so the length projection runs on the D-wide context
before the D×D maps (O(Lk·k·D) instead of O(Lk·D²)).

**Padding** (``context_mask`` False). Padded tokens are removed, not just ignored:

1. their context rows are zeroed before the length projection, and their projection
   rows are zero, so they add nothing to ``E^T K`` or ``F^T V`` whatever they contain
   (NaN included);
2. the real tokens are *compacted*: the j-th real token of a caption uses row ``j``
   of ``E``/``F`` (not the row of its padded position). The result is therefore
   identical to running on the unpadded caption alone, wherever the padding sits;
3. a summary that receives no real token (only possible with a structured projection,
   e.g. the identity, and a caption shorter than ``k``) gets zero attention.

**Token weights** (``context_weights`` w > 0). In full attention, token ``j``'s mass is
scaled by ``w_j`` (logit + ``log w_j``). Here queries attend to summaries, each a mix of
tokens, so summary ``i``'s logit gets ``log`` of the mean weight of the tokens in it,
weighted by how much each token contributes to it::

    b_i = log( sum_j |E_ji| m_j w_j / sum_j |E_ji| m_j )      (m the padding mask)

With identity projections (``k = Lk``, ``E = F = I``) this is exactly ``log w_i``, and
the whole module equals full attention with mask and weights (tested to 1e-5). Uniform
weights give ``b = 0``.

The maximum caption length is a constructor argument; a longer context raises a clear
error at run time. For the image side (Extractor keys, whose count depends on the
resolution) use :class:`~taco_plus.models.attention.pooled.PooledLinformerCrossAttention`.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from linformer import LinformerSelfAttention
from torch import Tensor

from taco_plus.models.attention.base import CrossAttention, checked_context, merge_heads, split_heads

# 32 CLIP windows of 77 tokens: a ~1,800-word caption encoded with the chunked policy.
DEFAULT_MAX_CONTEXT_LEN = 2464


def length_projection_rows(proj: Tensor, length: int, context_mask: Optional[Tensor]) -> Tensor:
    """Projection rows per context token: (1, Lk, k) unmasked, (B, Lk, k) masked.

    With a mask, the j-th real token takes row j (compaction) and padded tokens take a
    zero row, so padding adds nothing to a summary whatever it contains.
    """
    if context_mask is None:
        return proj[:length].unsqueeze(0)
    rank = context_mask.long().cumsum(dim=1) - 1  # (B, Lk): index among real tokens
    rows = proj[rank.clamp(min=0)]  # (B, Lk, k)
    return rows * context_mask.unsqueeze(-1).to(rows.dtype)


def summary_log_weights(rows: Tensor, context_weights: Optional[Tensor]) -> Tensor:
    """``log`` of each summary's contribution-weighted mean token weight, (B|1, k).

    ``b_i = log(sum_j |E_ji| w_j / sum_j |E_ji|)`` over the (masked) rows; 0 without
    weights, ``-inf`` for a summary no real token contributes to.
    """
    mass = rows.abs()  # (B|1, Lk, k); padded rows are already zero
    total = mass.sum(dim=1)  # (B|1, k)
    tiny = torch.finfo(mass.dtype).tiny
    if context_weights is None:
        bias = torch.zeros_like(total)
    else:
        weighted = (mass * context_weights.to(mass.dtype).unsqueeze(-1)).sum(dim=1)
        bias = weighted.clamp_min(tiny).log() - total.clamp_min(tiny).log()
    return bias.masked_fill(total == 0, float("-inf"))


class LinformerCrossAttention(CrossAttention):
    """Multi-head Linformer cross-attention with a padding mask and token weights.

    Args:
        dim: feature width of queries and context.
        num_heads: attention heads; must divide ``dim``.
        k: number of sequence summaries (Linformer's projected length).
        max_context_len: longest context (caption, in tokens) the projections cover;
            must be >= ``k``. Longer contexts are rejected at run time.
        share_kv: one projection matrix and one key map for keys and values (package option).
        one_kv_head: a single key/value head shared by all query heads (package option).
        dropout: dropout on the attention probabilities (training only).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        k: int = 64,
        max_context_len: int = DEFAULT_MAX_CONTEXT_LEN,
        share_kv: bool = False,
        one_kv_head: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(dim, num_heads)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"linformer k must be a positive int, got {k!r}")
        if not isinstance(max_context_len, int) or max_context_len < 1:
            raise ValueError(f"linformer max_context_len must be a positive int, got {max_context_len!r}")
        if k > max_context_len:
            raise ValueError(
                f"linformer k={k} exceeds max_context_len={max_context_len}: projecting "
                "to more summaries than tokens saves nothing; lower k or raise max_context_len"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.k = k
        self.max_context_len = max_context_len
        self.linformer = LinformerSelfAttention(
            dim,
            seq_len=max_context_len,
            k=k,
            heads=num_heads,
            one_kv_head=one_kv_head,
            share_kv=share_kv,
            dropout=dropout,
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, k={self.k}, max_context_len={self.max_context_len}"

    def forward(
        self,
        query: Tensor,
        context: Tensor,
        context_mask: Optional[Tensor] = None,
        context_weights: Optional[Tensor] = None,
    ) -> Tensor:
        lin = self.linformer
        b, n, _ = context.shape
        if n > self.max_context_len:
            raise ValueError(
                f"context of {n} tokens exceeds the linformer max_context_len={self.max_context_len}; "
                "shorten the caption or build the attention with a larger max_context_len "
                "(config: attention.injector.max_context_len)"
            )
        context, context_mask = checked_context(context, context_mask, context_weights)

        rows_k = length_projection_rows(lin.proj_k, n, context_mask).to(context.dtype)  # (B|1, Lk, k)
        # Length projection first (to_k/to_v are linear without bias): (B, k, D).
        keys = lin.to_k(torch.einsum("bnd,bnk->bkd", context, rows_k.expand(b, -1, -1)))
        if lin.share_kv:
            values = keys
        else:
            rows_v = length_projection_rows(lin.proj_v, n, context_mask).to(context.dtype)
            values = lin.to_v(torch.einsum("bnd,bnk->bkd", context, rows_v.expand(b, -1, -1)))

        h = self.num_heads
        q = split_heads(lin.to_q(query), h)  # (B, h, Lq, d)
        # (B, k, h*d) -> (B, h, k, d); one_kv_head: (B, k, d) -> broadcast over heads.
        keys, values = (
            t.view(b, self.k, -1, lin.dim_head).transpose(1, 2).expand(-1, h, -1, -1) for t in (keys, values)
        )
        bias = summary_log_weights(rows_k, context_weights)[:, None, None, :].to(q.dtype)
        p = lin.dropout.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, dropout_p=p)  # (B, h, Lq, d)
        return lin.to_out(merge_heads(out))
