"""Pixel fidelity metrics on 8-bit images: PSNR and MS-SSIM.

Both follow CompressAI's ``eval_model`` convention: the original and the
reconstruction are mapped to 8 bits (``round(x·255)``, clamped to [0, 255]) before
comparison, i.e. the numbers describe the PNG a user gets after decoding.
"""

from __future__ import annotations

import math

from pytorch_msssim import ms_ssim as _ms_ssim
from torch import Tensor

MAX_VAL = 255.0

# pytorch_msssim's default: 5 scales, 11-tap Gaussian window. Each scale halves the
# image, and the coarsest one still needs a full window, so the short side must be
# larger than (11 - 1) · 2**4 = 160 pixels.
MS_SSIM_WIN_SIZE = 11
MS_SSIM_SCALES = 5
MS_SSIM_MIN_SIDE = (MS_SSIM_WIN_SIZE - 1) * 2 ** (MS_SSIM_SCALES - 1) + 1  # 161


def to_8bit(x: Tensor) -> Tensor:
    """Values in [0, 1] -> float tensor of integers in [0, 255] (``round(x·255)``)."""
    return (x * MAX_VAL).clamp(0.0, MAX_VAL).round()


def _check_pair(x: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor]:
    if x.shape != x_hat.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    if x.dim() == 3:
        x, x_hat = x.unsqueeze(0), x_hat.unsqueeze(0)
    if x.dim() != 4 or x.size(1) != 3:
        raise ValueError(f"expected (3,H,W) or (B,3,H,W) images, got {tuple(x.shape)}")
    return x.detach().float().cpu(), x_hat.detach().float().cpu()


def psnr(x: Tensor, x_hat: Tensor) -> float:
    """PSNR in dB between two RGB images in [0, 1], computed on 8-bit values.

    Averaged over all pixels and channels (of the whole batch); ``inf`` when the
    8-bit images are identical.

    Args:
        x: original, (3, H, W) or (B, 3, H, W) in [0, 1].
        x_hat: reconstruction, same shape.
    """
    x, x_hat = _check_pair(x, x_hat)
    mse = (to_8bit(x) - to_8bit(x_hat)).pow(2).mean().item()
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(MAX_VAL**2 / mse)


def ms_ssim_supported(height: int, width: int) -> bool:
    """Whether an image is large enough for 5-scale MS-SSIM."""
    return min(height, width) >= MS_SSIM_MIN_SIDE


def ms_ssim(x: Tensor, x_hat: Tensor) -> float:
    """Multi-scale SSIM (Wang et al., 2003) via ``pytorch_msssim``, on 8-bit values.

    The standard 5 scales with an 11-tap window need a short side of at least 161
    pixels. Smaller images return ``nan`` rather than a number computed with a
    different number of scales, which would not be comparable with published
    results; the evaluation reports how many images were skipped.

    Args:
        x: original, (3, H, W) or (B, 3, H, W) in [0, 1].
        x_hat: reconstruction, same shape.
    """
    x, x_hat = _check_pair(x, x_hat)
    if not ms_ssim_supported(x.size(-2), x.size(-1)):
        return math.nan
    value = _ms_ssim(to_8bit(x), to_8bit(x_hat), data_range=MAX_VAL, size_average=True)
    return float(value)
