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
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import GaussianConditional
from compressai.ops import quantize_ste
from torch import Tensor

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

    def __init__(self, gaussian_conditional: GaussianConditional, batch: int) -> None:
        self.gc = gaussian_conditional
        self.cdf = gaussian_conditional.quantized_cdf.tolist()
        self.cdf_lengths = gaussian_conditional.cdf_length.reshape(-1).int().tolist()
        self.offsets = gaussian_conditional.offset.reshape(-1).int().tolist()
        self.batch = batch

    def _scatter(self, values: Tensor, mask: Tensor, like: Tensor) -> Tensor:
        out = torch.zeros_like(like)
        out[:, :, mask] = values
        return out


class EncodingCoder(_SymbolCoder):
    """Quantises each part to integer symbols and queues them for the rANS encoder."""

    def __init__(self, gaussian_conditional: GaussianConditional, batch: int) -> None:
        super().__init__(gaussian_conditional, batch)
        self.symbols: list[list[int]] = [[] for _ in range(batch)]
        self.indexes: list[list[int]] = [[] for _ in range(batch)]

    def code(self, y, scales, means, parity):
        mask = parity_mask(*y.shape[-2:], parity, device=y.device)
        mu = means[:, :, mask]  # (B, C, K)
        symbols = self.gc.quantize(y[:, :, mask], "symbols", mu)
        indexes = self.gc.build_indexes(scales[:, :, mask])
        for b in range(self.batch):
            self.symbols[b].extend(symbols[b].reshape(-1).tolist())
            self.indexes[b].extend(indexes[b].reshape(-1).tolist())
        return self._scatter(symbols.to(means.dtype) + mu, mask, means)

    def flush(self) -> list[bytes]:
        strings = []
        for b in range(self.batch):
            encoder = BufferedRansEncoder()
            encoder.encode_with_indexes(
                self.symbols[b], self.indexes[b], self.cdf, self.cdf_lengths, self.offsets
            )
            strings.append(encoder.flush())
        return strings


class DecodingCoder(_SymbolCoder):
    """Reads each part's symbols back from the rANS streams, one per batch item."""

    def __init__(self, gaussian_conditional: GaussianConditional, strings: list[bytes]) -> None:
        super().__init__(gaussian_conditional, len(strings))
        self.decoders = []
        for string in strings:
            decoder = RansDecoder()
            decoder.set_stream(string)
            self.decoders.append(decoder)

    def code(self, y, scales, means, parity):
        mask = parity_mask(*means.shape[-2:], parity, device=means.device)
        mu = means[:, :, mask]
        indexes = self.gc.build_indexes(scales[:, :, mask])
        values = [
            torch.tensor(
                decoder.decode_stream(
                    indexes[b].reshape(-1).tolist(), self.cdf, self.cdf_lengths, self.offsets
                ),
                dtype=means.dtype,
            ).reshape(mu.shape[1:])
            for b, decoder in enumerate(self.decoders)
        ]
        symbols = torch.stack(values).to(means.device)
        return self._scatter(symbols + mu, mask, means)


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
