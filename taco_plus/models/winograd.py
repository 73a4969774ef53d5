"""Winograd 3x3 convolutions for the encoder's analysis transform ``g_a``: CPU inference only.

NNPACK's Winograd F(6x6, 3x3) runs ``g_a``'s 3x3 stride-1 convolutions about twice as fast as oneDNN with
one thread (encode times and the decision to keep it: docs/coding.md, "Speed"), within ~1e-5 relative float
error, which the encoder allows: ``y`` is quantized before anything the decoder recomputes. PyTorch reaches
NNPACK only through the private ``torch._nnpack_spatial_convolution``: :func:`nnpack_works` checks that call
once against ``F.conv2d``; where it is missing or changed, a warning says so and every
:class:`WinogradConv2d` is the plain ``nn.Conv2d`` (``tests/test_winograd.py`` fails then).
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@functools.cache
def nnpack_works() -> bool:
    """Whether this torch has NNPACK and its private convolution gives ``F.conv2d``'s values (checked once)."""
    try:
        if not torch.backends.nnpack.is_available():
            return False  # a build without NNPACK: the plain convolution, nothing to report
        g = torch.Generator().manual_seed(0)  # leaves the global random stream alone
        x, w, b = (torch.randn(*shape, generator=g) for shape in ((1, 8, 10, 12), (4, 8, 3, 3), (4,)))
        with torch.no_grad():
            out, ref = torch._nnpack_spatial_convolution(x, w, b, (1, 1)), F.conv2d(x, w, b, padding=1)
        if out.shape == ref.shape and (out - ref).abs().max() <= 1e-4 * ref.abs().max():
            return True
    except Exception:  # renamed, removed, or another signature
        pass
    warnings.warn("torch._nnpack_spatial_convolution is missing or changed: g_a runs nn.Conv2d (encoding is slower)")
    return False


class WinogradConv2d(nn.Conv2d):
    """A 3x3 stride-1 'same' ``nn.Conv2d`` (same parameters and state-dict keys) that runs NNPACK's Winograd
    convolution in fp32 CPU inference. With gradients (training), on a GPU, under autocast, in another dtype
    or without a working NNPACK it is ``nn.Conv2d``, bit for bit."""

    def forward(self, x: Tensor) -> Tensor:
        if (
            not torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() == 4 and not torch.is_autocast_enabled("cpu")
            and x.dtype == self.weight.dtype == torch.float32 and nnpack_works()
        ):  # fmt: skip
            return torch._nnpack_spatial_convolution(x, self.weight, self.bias, self.padding)
        return super().forward(x)


def use_winograd(module: nn.Module) -> nn.Module:
    """Replaces every plain 3x3 stride-1 'same' convolution inside ``module`` by a :class:`WinogradConv2d`
    holding the same parameters (built on the meta device: no random draw); returns ``module``."""
    for parent in list(module.modules()):
        for name, c in parent.named_children():
            if type(c) is nn.Conv2d and (c.kernel_size, c.stride, c.padding, c.dilation, c.groups, c.padding_mode) == (
                (3, 3), (1, 1), (1, 1), (1, 1), 1, "zeros"
            ):  # fmt: skip
                conv = WinogradConv2d(c.in_channels, c.out_channels, 3, padding=1, bias=c.bias is not None,
                                      device="meta")
                conv.weight, conv.bias = c.weight, c.bias
                setattr(parent, name, conv)
    return module
