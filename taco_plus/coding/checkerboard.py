"""Checkerboard context over unevenly grouped channels (He et al., CVPR 2021; ELIC, He et al., CVPR 2022).

Each channel group is coded in two passes: *anchors* (odd ``row + col``, as in the official TACO code) from
the hyperprior and the channel context, then *non-anchors* also from a 5x5 local context over the decoded
anchors, each pass with its own entropy-parameter network. The two passes are written once, in
:func:`code_group`; a :class:`LatentCoder` says what happens to a part: rounding (training), entropy
encoding or decoding.
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
    return (torch.arange(height, device=device)[:, None] + torch.arange(width, device=device)) % 2 == parity


def _scatter(values: Tensor, mask: Tensor, like: Tensor) -> Tensor:
    out = torch.zeros_like(like)
    out[:, :, mask] = values
    return out


class LatentCoder:
    """``code(y, scales, means, parity)``: full-size (B, C, h, w) tensors (``y`` None when decoding) -> the
    reconstructed part ``y_hat`` at the ``parity`` positions, exactly zero elsewhere."""

    def code(self, y: Optional[Tensor], scales: Tensor, means: Tensor, parity: int) -> Tensor:
        raise NotImplementedError


class RoundingCoder(LatentCoder):
    """Training / estimation: ``y_hat = round(y - mu) + mu`` with straight-through gradients."""

    def code(self, y, scales, means, parity):
        mask = parity_mask(*y.shape[-2:], parity, device=y.device)
        y_part, mu = y * mask, means * mask
        return quantize_ste(y_part - mu) + mu


class EncodingCoder(LatentCoder):
    """Quantises each part to integer symbols, gathered channel-major then row-major over the parity
    positions (the official code's "squeezed" order), and queues them for the rANS encoder."""

    def __init__(self, gaussian_conditional: BucketizedGaussianConditional) -> None:
        self.gc, self.tables = gaussian_conditional, gaussian_conditional.tables()
        self.symbols: list[Tensor] = []  # per part, (B, C, K)
        self.indexes: list[Tensor] = []

    def code(self, y, scales, means, parity):
        mask = parity_mask(*y.shape[-2:], parity, device=y.device)
        mu = means[:, :, mask]  # (B, C, K)
        symbols = self.gc.quantize(y[:, :, mask], "symbols", mu)
        self.symbols.append(symbols)
        self.indexes.append(self.gc.build_indexes(scales[:, :, mask]))
        return _scatter(symbols.to(means.dtype) + mu, mask, means)

    def flush(self) -> list[bytes]:
        """One rANS stream per batch item, parts in coding order."""
        return [encode(torch.cat([s[b].reshape(-1) for s in self.symbols]),
                       torch.cat([i[b].reshape(-1) for i in self.indexes]), self.tables)
                for b in range(self.symbols[0].shape[0])]  # fmt: skip


class DecodingCoder(LatentCoder):
    """Reads each part's symbols back from ``strings``, one rANS stream per batch item, in
    :class:`EncodingCoder`'s order; :meth:`finish` checks that each held exactly ``symbols`` (C * h * w)."""

    def __init__(self, gaussian_conditional: BucketizedGaussianConditional, strings: list[bytes], symbols: int) -> None:
        self.gc, self.tables = gaussian_conditional, gaussian_conditional.tables()
        self.streams = [RansStream(string, self.tables, symbols) for string in strings]

    def code(self, y, scales, means, parity):
        mask = parity_mask(*means.shape[-2:], parity, device=means.device)
        indexes = self.gc.build_indexes(scales[:, :, mask])
        symbols = torch.stack([stream.decode(indexes[b]) for b, stream in enumerate(self.streams)])
        return _scatter(symbols.to(means.device, means.dtype) + means[:, :, mask], mask, means)

    def finish(self) -> None:
        for stream in self.streams:
            stream.finish()


ParamNet = Callable[[Tensor], Tensor]


def code_group(coder: LatentCoder, y_slice: Optional[Tensor], context: list[Tensor], params_anchor: ParamNet,
               params_nonanchor: ParamNet, local_context: ParamNet) -> tuple[Tensor, Tensor, Tensor]:
    """Two-pass checkerboard coding of one channel group: ``y_slice`` (B, c, h, w), None when decoding;
    ``context``: ``[hyper]`` for the first group, ``[channel_ctx, hyper]`` after (the official order);
    ``params_*``: entropy-parameter networks -> (scales, means); ``local_context``: 5x5 conv over the decoded
    anchors -> (B, 2c, h, w). Returns ``(y_hat_slice, scales, means)``, the latter merged over both parts."""
    scales_a, means_a = params_anchor(torch.cat(context, dim=1)).chunk(2, 1)
    y_hat_a = coder.code(y_slice, scales_a, means_a, ANCHOR)
    ctx = local_context(y_hat_a)  # anchors only: zeros at non-anchor positions
    scales_n, means_n = params_nonanchor(torch.cat([ctx, *context], dim=1)).chunk(2, 1)
    y_hat_n = coder.code(y_slice, scales_n, means_n, NON_ANCHOR)
    anchor = parity_mask(*scales_a.shape[-2:], ANCHOR, device=scales_a.device)
    return y_hat_a + y_hat_n, torch.where(anchor, scales_a, scales_n), torch.where(anchor, means_a, means_n)
