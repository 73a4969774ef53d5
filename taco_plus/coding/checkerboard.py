"""Checkerboard context over unevenly grouped channels (ELIC's space-channel context).

He et al., "Checkerboard Context Model for Efficient Learned Image Compression",
CVPR 2021; He et al., ELIC, CVPR 2022. Each channel group is coded in two passes:
*anchors* (positions with odd ``row + col``, as in the official TACO code) from the
hyperprior and the channel context, then *non-anchors* additionally from a 5x5
local context over the decoded anchors. Anchors and non-anchors have separate
entropy-parameter networks.

The two-pass logic is written once, in :func:`code_group`; what happens to a
latent part (rounding with straight-through gradients, entropy *encoding*, or
entropy *decoding*) is a :class:`LatentCoder` strategy.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from compressai.ops import quantize_ste
from torch import Tensor

from taco_plus.coding.rans import BucketizedGaussianConditional, RansStream, encode

ANCHOR, NON_ANCHOR = 1, 0  # parity of (row + col)


def parity_mask(height: int, width: int, parity: int, device=None) -> Tensor:
    """Boolean (H, W) mask of the positions whose ``(row + col) % 2 == parity``."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return (rows + cols) % 2 == parity


class LatentCoder:
    """What to do with one checkerboard part of one channel group.

    ``code(y, scales, means, parity)`` takes full-size tensors (B, C, h, w) (``y`` may
    be None when decoding) and returns the reconstructed part ``y_hat`` at the
    ``parity`` positions and exactly zero elsewhere.
    """

    def code(self, y: Optional[Tensor], scales: Tensor, means: Tensor, parity: int) -> Tensor:
        raise NotImplementedError


class RoundingCoder(LatentCoder):
    """Training / estimation: ``y_hat = round(y - mu) + mu`` with straight-through gradients."""

    def code(self, y, scales, means, parity):
        mask = parity_mask(*y.shape[-2:], parity, device=y.device)
        y_part, mu = y * mask, means * mask
        return quantize_ste(y_part - mu) + mu


class _SymbolCoder(LatentCoder):
    """Shared by encoding and decoding: gathers the parity positions of each item.

    Symbols are gathered channel-major, then row-major over the parity positions,
    which is the order of the official TACO code's "squeezed" tensors.
    """

    def __init__(self, gaussian_conditional: BucketizedGaussianConditional) -> None:
        self.gc = gaussian_conditional
        self.tables = gaussian_conditional.tables()

    def _scatter(self, values: Tensor, mask: Tensor, like: Tensor) -> Tensor:
        out = torch.zeros_like(like)
        out[:, :, mask] = values
        return out


class EncodingCoder(_SymbolCoder):
    """Quantises each part to integer symbols and queues them for the rANS encoder."""

    def __init__(self, gaussian_conditional: BucketizedGaussianConditional) -> None:
        super().__init__(gaussian_conditional)
        self.symbols: list[Tensor] = []  # per part, (B, C, K)
        self.indexes: list[Tensor] = []

    def code(self, y, scales, means, parity):
        mask = parity_mask(*y.shape[-2:], parity, device=y.device)
        mu = means[:, :, mask]  # (B, C, K)
        symbols = self.gc.quantize(y[:, :, mask], "symbols", mu)
        self.symbols.append(symbols)
        self.indexes.append(self.gc.build_indexes(scales[:, :, mask]))
        return self._scatter(symbols.to(means.dtype) + mu, mask, means)

    def flush(self) -> list[bytes]:
        """One rANS stream per batch item, parts in coding order."""
        return [
            encode(
                torch.cat([s[b].reshape(-1) for s in self.symbols]),
                torch.cat([i[b].reshape(-1) for i in self.indexes]),
                self.tables,
            )
            for b in range(self.symbols[0].shape[0])
        ]


class DecodingCoder(_SymbolCoder):
    """Reads each part's symbols back from the rANS streams, one per batch item.

    Args:
        gaussian_conditional: the entropy model (CDF tables built).
        strings: one stream per batch item.
        symbols: symbols each stream announces (the latent's C * h * w); :meth:`finish`
            checks that every stream decoded to exactly that many.
    """

    def __init__(self, gaussian_conditional: BucketizedGaussianConditional, strings: list[bytes], symbols: int) -> None:
        super().__init__(gaussian_conditional)
        self.streams = [RansStream(string, self.tables, symbols) for string in strings]

    def code(self, y, scales, means, parity):
        mask = parity_mask(*means.shape[-2:], parity, device=means.device)
        mu = means[:, :, mask]
        indexes = self.gc.build_indexes(scales[:, :, mask])
        symbols = torch.stack([stream.decode(indexes[b]) for b, stream in enumerate(self.streams)])
        return self._scatter(symbols.to(means.device, means.dtype) + mu, mask, means)

    def finish(self) -> None:
        for stream in self.streams:
            stream.finish()


ParamNet = Callable[[Tensor], Tensor]


def code_group(
    coder: LatentCoder,
    y_slice: Optional[Tensor],
    context: list[Tensor],
    params_anchor: ParamNet,
    params_nonanchor: ParamNet,
    local_context: ParamNet,
) -> tuple[Tensor, Tensor, Tensor]:
    """Two-pass checkerboard coding of one channel group.

    Args:
        coder: the rounding / encoding / decoding strategy.
        y_slice: the group's latent (B, c, h, w); None when decoding.
        context: features every pass sees, ``[hyper]`` for the first group and
            ``[channel_ctx, hyper]`` afterwards (in this order, as in the official code).
        params_anchor / params_nonanchor: entropy-parameter networks -> (scales, means).
        local_context: 5x5 conv over decoded anchors -> (B, 2c, h, w).

    Returns:
        ``(y_hat_slice, scales, means)``, the latter two merged over both parts.
    """
    scales_a, means_a = params_anchor(torch.cat(context, dim=1)).chunk(2, 1)
    y_hat_a = coder.code(y_slice, scales_a, means_a, ANCHOR)
    ctx = local_context(y_hat_a)  # anchors only: zeros at non-anchor positions
    scales_n, means_n = params_nonanchor(torch.cat([ctx, *context], dim=1)).chunk(2, 1)
    y_hat_n = coder.code(y_slice, scales_n, means_n, NON_ANCHOR)

    h, w = scales_a.shape[-2:]
    anchor = parity_mask(h, w, ANCHOR, device=scales_a.device)
    scales = torch.where(anchor, scales_a, scales_n)
    means = torch.where(anchor, means_a, means_n)
    return y_hat_a + y_hat_n, scales, means
