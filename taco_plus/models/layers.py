"""ELIC building blocks, with the parameter names of the official TACO code.

He et al., "ELIC: Efficient Learned Image Compression with Unevenly Grouped
Space-Channel Contextual Adaptive Coding", CVPR 2022. The attention block is
CompressAI's; the rest are small enough to define here, named so that official
TACO state dicts (``branch``, ``fushion`` [sic], ``fusion``) load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """Strided convolution with 'same' padding (downsamples by ``stride``)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that upsamples exactly by ``stride``."""
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel_size, stride=stride, output_padding=stride - 1, padding=kernel_size // 2
    )


class WinogradConv2d(nn.Conv2d):
    """A 3x3 stride-1 ``nn.Conv2d`` that, in fp32 CPU inference, runs NNPACK's Winograd
    F(6x6, 3x3): ~2x faster than oneDNN's channels-last convolution with one thread (96
    channels, 128x192), ~1e-5 relative float error (oneDNN: ~1e-6). Training (grad enabled),
    GPU, autocast or a torch without NNPACK get the plain convolution; parameters and
    state-dict names are ``nn.Conv2d``'s."""

    def forward(self, x: Tensor) -> Tensor:
        if (
            not torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() == 4
            and x.dtype == self.weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            and getattr(torch, "_nnpack_available", lambda: False)()  # also initialises NNPACK
        ):  # fmt: skip
            return torch._nnpack_spatial_convolution(x, self.weight, self.bias, self.padding)
        return super().forward(x)


def use_winograd(module: nn.Module) -> None:
    """Makes every plain 3x3 stride-1 'same' convolution inside ``module`` a :class:`WinogradConv2d`."""
    for c in module.modules():
        if type(c) is nn.Conv2d and (c.kernel_size, c.stride, c.padding, c.dilation) == ((3, 3), (1, 1), (1, 1), (1, 1)):
            if c.groups == 1 and c.padding_mode == "zeros":
                c.__class__ = WinogradConv2d


class ResidualBottleneck(nn.Module):
    """``x + (1x1 -> ReLU -> 3x3 -> ReLU -> 1x1)(x)`` with a half-width bottleneck.

    Args:
        N: channels.
    """

    def __init__(self, N: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(N, N // 2, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(N // 2, N // 2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(N // 2, N, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        # In place on the branch's fresh output: one full-size buffer less per block
        # (these run at H/2 in g_s); the sum is the same, bit for bit.
        return self.branch(x).add_(x)


class ChannelContext(nn.Module):
    """Channel context g_ch: three 5x5 convs over previously decoded groups.

    Widths 224 and 128 are fixed in ELIC/TACO regardless of N and M.

    Args:
        in_ch: channels of all previously decoded groups.
        out_ch: 2 * channels of the current group.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.fushion = nn.Sequential(  # official spelling, kept for checkpoint compatibility
            nn.Conv2d(in_ch, 224, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(224, 128, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, out_ch, 5, padding=2),
        )

    def forward(self, y_hat_previous: Tensor) -> Tensor:
        return self.fushion(y_hat_previous)


class EntropyParameters(nn.Module):
    """Three 1x1 convs mapping context + hyper features to (scales, means).

    Args:
        in_ch: concatenated input channels.
        out_ch: 2 * channels of the group (scales then means).
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.fusion = nn.Sequential(
            nn.Conv2d(in_ch, out_ch * 5 // 3, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch * 5 // 3, out_ch * 4 // 3, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch * 4 // 3, out_ch, 1),
        )

    def forward(self, params: Tensor) -> Tensor:
        return self.fusion(params)
