"""PSNR and MS-SSIM on 8-bit values, as CompressAI's ``eval_model``: both images are mapped
to ``round(x·255)`` clamped to [0, 255], the PNG a user gets after decoding. Computed on the images'
device (a GPU evaluation keeps them off the CPU, which codes)."""

from __future__ import annotations

import math

from pytorch_msssim import ms_ssim as _ms_ssim
from torch import Tensor

from taco_plus.images import to_uint8

# pytorch_msssim's default: 5 scales, 11-tap window. Each scale halves the image and the
# coarsest still needs a full window: the short side must exceed (11 - 1) · 2**4 = 160 px.
MS_SSIM_MIN_SIDE = (11 - 1) * 2 ** (5 - 1) + 1


def psnr(x: Tensor, x_hat: Tensor) -> float:
    """PSNR in dB of ``x_hat`` against ``x``, (3, H, W) or (B, 3, H, W) in [0, 1], over all
    8-bit values of the batch; ``inf`` when the 8-bit images are identical."""
    if x.shape != x_hat.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    mse = (to_uint8(x).float() - to_uint8(x_hat.to(x.device)).float()).pow(2).mean().item()
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)


def ms_ssim(x: Tensor, x_hat: Tensor) -> float:
    """Multi-scale SSIM (Wang et al., 2003) of 8-bit (B, 3, H, W) images, or ``nan`` for a short
    side under :data:`MS_SSIM_MIN_SIDE`: fewer scales would not compare with published numbers."""
    if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return math.nan
    x8, x_hat8 = (to_uint8(v.to(x.device)).float().reshape(-1, *v.shape[-3:]) for v in (x, x_hat))
    return float(_ms_ssim(x8, x_hat8, data_range=255.0, size_average=True))
