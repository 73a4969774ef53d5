"""Training losses: TACO's rate-distortion-perceptual-joint objective and its parts."""

from taco_plus.losses.joint import ClipJointLoss, clip_contrastive
from taco_plus.losses.lpips import LpipsBackboneUnavailableError, build_lpips
from taco_plus.losses.objective import TacoLoss, bpp_from_likelihoods

__all__ = ["ClipJointLoss", "LpipsBackboneUnavailableError", "TacoLoss", "bpp_from_likelihoods", "build_lpips",
           "clip_contrastive"]
