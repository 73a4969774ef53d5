"""All per-image metrics of one original/reconstruction pair, in one call.

Every metric sees the 8-bit images a user gets from the decoded PNG
(``round(x·255)``, clamped), as CompressAI's evaluation does.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from taco_plus.metrics.clip_score import ClipScore
from taco_plus.metrics.distortion import ms_ssim, psnr, to_8bit


@torch.no_grad()
def image_metrics(
    x: Tensor,
    x_hat: Tensor,
    caption: str,
    *,
    lpips: Optional[nn.Module] = None,
    clip: Optional[ClipScore] = None,
    ms_ssim_enabled: bool = True,
) -> dict[str, Optional[float]]:
    """PSNR, MS-SSIM, LPIPS and CLIP score of one image and its reconstruction.

    Args:
        x: original, (3, H, W) in [0, 1].
        x_hat: reconstruction, (1, 3, H, W) in [0, 1].
        caption: the image's real caption (for the CLIP score).
        lpips: LPIPS module ``(x_hat, x) -> (B,)``, or None (value None).
        clip: :class:`ClipScore`, or None (value None).
        ms_ssim_enabled: False leaves MS-SSIM None.

    Returns:
        ``{"psnr", "ms_ssim", "lpips", "clip_score"}`` (None: not computed).
    """
    # Every metric sees the 8-bit images a user gets from the PNG.
    x8 = to_8bit(x.unsqueeze(0).cpu()) / 255.0  # (1, 3, H, W)
    x_hat8 = to_8bit(x_hat.cpu()) / 255.0
    row: dict[str, Optional[float]] = {
        "psnr": psnr(x8, x_hat8),
        "ms_ssim": ms_ssim(x8, x_hat8) if ms_ssim_enabled else None,
        "lpips": None,
        "clip_score": None,
    }
    if lpips is not None:
        device = next(lpips.parameters()).device
        row["lpips"] = float(lpips(x_hat8.to(device), x8.to(device)).mean())
    if clip is not None:
        row["clip_score"] = float(clip(x_hat8, [caption])[0])  # always the real caption
    return row
