"""Image-quality metrics for evaluation.

* :func:`psnr`, :func:`ms_ssim` -- pixel fidelity on 8-bit values (CompressAI's convention).
* LPIPS -- :func:`taco_plus.losses.lpips.build_lpips` (the loss and the metric share it).
* :class:`ClipScore` -- CLIP image-text agreement of a reconstruction with its caption.
* :class:`FidAccumulator` / :class:`InceptionFeatures` -- patch FID, when the
  Inception-v3 weights are on the machine (:class:`FidUnavailable` otherwise).
"""

from taco_plus.metrics.clip_score import ClipScore
from taco_plus.metrics.distortion import MS_SSIM_MIN_SIDE, ms_ssim, ms_ssim_supported, psnr, to_8bit
from taco_plus.metrics.fid import (
    FidAccumulator,
    FidUnavailable,
    InceptionFeatures,
    frechet_distance,
    frechet_distance_from_features,
    inception_weights_path,
    split_patches,
)
from taco_plus.metrics.image_metrics import image_metrics

__all__ = [
    "MS_SSIM_MIN_SIDE",
    "ClipScore",
    "FidAccumulator",
    "FidUnavailable",
    "InceptionFeatures",
    "frechet_distance",
    "frechet_distance_from_features",
    "image_metrics",
    "inception_weights_path",
    "ms_ssim",
    "ms_ssim_supported",
    "psnr",
    "split_patches",
    "to_8bit",
]
