"""Fréchet Inception Distance between originals and reconstructions.

FID (Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to
a Local Nash Equilibrium") compares Gaussian fits of Inception-v3 pool features.
Learned-compression papers (HiFiC, Mentzer et al. 2020; TACO) compute it on
image patches because test sets are small: each image is cut into non-overlapping
``patch_size`` squares (256 by default) and every patch is one sample.

Features come from torchvision's ``inception_v3`` with its ImageNet weights, read
from ``$TORCH_HOME/hub/checkpoints/inception_v3_google-0cc3c7bd.pth`` and never
downloaded. These are not the TensorFlow FID weights used by ``pytorch-fid``, so
the values are comparable between runs of this project, not with published FIDs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import Tensor, nn

INCEPTION_WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FidUnavailable(RuntimeError):
    """FID cannot be computed here (weights missing); the message says why."""


def inception_weights_path() -> Path:
    """Where torchvision keeps the Inception-v3 weights (``torch.hub`` cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


class InceptionFeatures(nn.Module):
    """Inception-v3 2048-d pool features of images in [0, 1] (resized to 299²)."""

    def __init__(self, weights_path: Optional[str | Path] = None) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        path = Path(weights_path) if weights_path else inception_weights_path()
        if not path.is_file():
            raise FidUnavailable(
                f"Inception-v3 weights not found at {path}; download "
                f"https://download.pytorch.org/models/{INCEPTION_WEIGHTS_FILE} there "
                "(or set TORCH_HOME) to compute FID"
            )
        # transform_input=True: the Google weights expect [-1, 1] inputs and
        # torchvision converts ImageNet-normalised inputs to that range.
        net = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        net.fc = nn.Identity()  # keep the 2048-d pooled features
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        return self.net((x - self.mean) / self.std)  # (B, 2048)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2})`` from means and covariances.

    ``tr (Σ1 Σ2)^{1/2}`` is computed exactly with symmetric eigendecompositions:
    it equals ``tr (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2}``, a PSD matrix, so no complex parts
    or ridge are needed for singular covariances (unlike ``scipy.linalg.sqrtm``).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("mean and covariance shapes differ between the two sets")
    w, v = linalg.eigh(sigma1)
    sqrt_sigma1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = linalg.eigvalsh(sqrt_sigma1 @ sigma2 @ sqrt_sigma1)
    tr_covmean = float(np.sqrt(np.clip(inner, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def frechet_distance_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two feature sets, (n1, D) and (n2, D), with sample covariances.

    With fewer samples than dimensions (the usual case here: a few hundred patches,
    D = 2048) the covariances have rank < n and the trace term has a cheap exact form:
    with ``A = (X1 − μ1)/√(n1−1)`` and ``B = (X2 − μ2)/√(n2−1)``, ``Σ1 Σ2 = AᵀA BᵀB``
    has the non-zero eigenvalues of ``(ABᵀ)(ABᵀ)ᵀ``, so ``tr (Σ1 Σ2)^{1/2}`` is the sum
    of the singular values of the n1×n2 matrix ``ABᵀ``. Otherwise the D×D form is used.
    """
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets must be (n, D) with the same D, got {real.shape} and {fake.shape}")
    if min(len(real), len(fake)) < 2:
        raise FidUnavailable(f"FID needs at least 2 samples per set, got {len(real)} and {len(fake)}")
    if max(len(real), len(fake)) > real.shape[1]:
        return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    a = (real - real.mean(0)) / np.sqrt(len(real) - 1)
    b = (fake - fake.mean(0)) / np.sqrt(len(fake) - 1)
    tr_covmean = float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    diff = real.mean(0) - fake.mean(0)
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * tr_covmean)


def split_patches(x: Tensor, patch_size: Optional[int]) -> Tensor:
    """(B, 3, H, W) -> (P, 3, p, p) non-overlapping patches (remainders dropped).

    Images smaller than a patch, or ``patch_size=None``, stay whole.
    """
    if patch_size is None or min(x.shape[-2:]) < patch_size:
        return x
    patches = x.unfold(2, patch_size, patch_size).unfold(3, patch_size, patch_size)
    # (B, 3, nH, nW, p, p) -> (B·nH·nW, 3, p, p)
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.size(1), patch_size, patch_size)


class FidAccumulator:
    """Collects features of original/reconstruction pairs, then gives the FID.

    Args:
        features: a module mapping (B, 3, h, w) images in [0, 1] to (B, D)
            features; :class:`InceptionFeatures` for real numbers.
        patch_size: side of the square patches (``None``: whole images).
    """

    def __init__(self, features: nn.Module, patch_size: Optional[int] = 256) -> None:
        self.features = features
        self.patch_size = patch_size
        self._real: list[np.ndarray] = []
        self._fake: list[np.ndarray] = []

    @property
    def num_samples(self) -> int:
        return sum(len(f) for f in self._real)

    @torch.no_grad()
    def update(self, x: Tensor, x_hat: Tensor) -> None:
        """Adds one batch of originals ``x`` and reconstructions ``x_hat`` (B, 3, H, W)."""
        device = next(self.features.parameters()).device
        for images, store in ((x, self._real), (x_hat, self._fake)):
            patches = split_patches(images.float().clamp(0, 1), self.patch_size).to(device)
            store.append(self.features(patches).double().cpu().numpy())

    def compute(self) -> float:
        if self.num_samples < 2:
            raise FidUnavailable(f"FID needs at least 2 samples, got {self.num_samples}")
        return frechet_distance_from_features(np.concatenate(self._real), np.concatenate(self._fake))
