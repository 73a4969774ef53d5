"""Image-quality metrics of the evaluation (docs/evaluation.md, "What is measured");
LPIPS is :func:`taco_plus.losses.lpips.build_lpips`, shared with the loss."""

from taco_plus.metrics.clip_score import ClipScore
from taco_plus.metrics.distortion import MS_SSIM_MIN_SIDE, ms_ssim, psnr
from taco_plus.metrics.fid import FidAccumulator, FidUnavailable, fid_weights_path, split_patches

__all__ = ["MS_SSIM_MIN_SIDE", "ClipScore", "FidAccumulator", "FidUnavailable", "fid_weights_path", "ms_ssim", "psnr",
           "split_patches"]
