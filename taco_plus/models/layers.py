"""ELIC building blocks, with the parameter names of the official TACO code.

He et al., "ELIC: Efficient Learned Image Compression with Unevenly Grouped Space-Channel Contextual Adaptive
Coding", CVPR 2022. The attention block is CompressAI's; the rest are named so that official TACO state dicts
(``branch``, ``fushion`` [sic], ``fusion``) load unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """Strided convolution with 'same' padding (downsamples by ``stride``)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that upsamples exactly by ``stride``."""
    return nn.ConvTranspose2d(in_ch, out_ch, kernel_size, stride=stride, output_padding=stride - 1,
                              padding=kernel_size // 2)


def _three(widths: list[int], kernel_size: int) -> nn.Sequential:
    """Three convolutions through ``widths`` (4 numbers) with ReLUs between them."""
    layers = [nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2) for a, b in zip(widths, widths[1:])]
    return nn.Sequential(layers[0], nn.ReLU(inplace=True), layers[1], nn.ReLU(inplace=True), layers[2])


class ResidualBottleneck(nn.Module):
    """``x + (1x1 -> ReLU -> 3x3 -> ReLU -> 1x1)(x)`` with a half-width bottleneck, ``N`` channels."""

    def __init__(self, N: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(N, N // 2, 1), nn.ReLU(inplace=True),
                                    nn.Conv2d(N // 2, N // 2, 3, padding=1), nn.ReLU(inplace=True),
                                    nn.Conv2d(N // 2, N, 1))

    def forward(self, x: Tensor) -> Tensor:
        # In place on the branch's fresh output: one full-size buffer less per block
        # (these run at H/2 in g_s); the sum is the same, bit for bit.
        return self.branch(x).add_(x)


class ChannelContext(nn.Module):
    """Channel context g_ch: three 5x5 convs from all previously decoded groups (``in_ch``) to 2 x the current
    group's channels (``out_ch``); the widths 224 and 128 are ELIC's/TACO's whatever N and M."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.fushion = _three([in_ch, 224, 128, out_ch], 5)  # official spelling, kept for checkpoint compatibility

    def forward(self, y_hat_previous: Tensor) -> Tensor:
        return self.fushion(y_hat_previous)


class EntropyParameters(nn.Module):
    """Three 1x1 convs mapping context + hyper features (``in_ch``) to (scales, means) (``out_ch`` = 2 x the
    group's channels)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.fusion = _three([in_ch, out_ch * 5 // 3, out_ch * 4 // 3, out_ch], 1)

    def forward(self, params: Tensor) -> Tensor:
        return self.fusion(params)
