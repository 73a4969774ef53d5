"""Image-quality metrics for evaluation.

* :func:`psnr`, :func:`ms_ssim` -- pixel fidelity on 8-bit values (CompressAI's convention).
* LPIPS -- :func:`taco_plus.losses.lpips.build_lpips` (the loss and the metric share it).
* :class:`ClipScore` -- CLIP image-text agreement of a reconstruction with its caption.
* :class:`FidAccumulator` / :func:`load_fid_metric` -- FID with the standard FID Inception
  weights (torchmetrics), when they are on the machine (:class:`FidUnavailable` otherwise).
"""

from taco_plus.metrics.clip_score import ClipScore
from taco_plus.metrics.distortion import MS_SSIM_MIN_SIDE, ms_ssim, ms_ssim_supported, psnr, to_8bit
from taco_plus.metrics.fid import FidAccumulator, FidUnavailable, fid_weights_path, load_fid_metric, split_patches
from taco_plus.metrics.image_metrics import image_metrics

__all__ = [
    "MS_SSIM_MIN_SIDE",
    "ClipScore",
    "FidAccumulator",
    "FidUnavailable",
    "fid_weights_path",
    "image_metrics",
    "load_fid_metric",
    "ms_ssim",
    "ms_ssim_supported",
    "psnr",
    "split_patches",
    "to_8bit",
]
