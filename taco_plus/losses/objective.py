"""TACO's training objective (Lee et al., ICML 2024; docs/training.md#loss):
``L = bpp + lambda * 255^2 * MSE(x_hat, x) + k_P * LPIPS(x_hat, x) + k_J * L_joint``.
A term whose coefficient is 0 is not computed: ``k_P = k_J = 0`` is CompressAI's loss.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn


def bpp_from_likelihoods(likelihoods: Mapping[str, Tensor], num_pixels: int) -> Tensor:
    """Estimated bits per pixel: ``sum over all latents of -log2(p) / num_pixels``."""
    if num_pixels <= 0:
        raise ValueError(f"num_pixels must be positive, got {num_pixels}")
    bits = sum(torch.log(lk.float()).sum() for lk in likelihoods.values())
    return bits / (-math.log(2) * num_pixels)


class TacoLoss(nn.Module):
    """Rate-distortion-perceptual-joint loss; returns every term separately.

    Args:
        lmbda: rate-distortion trade-off lambda (scales ``255^2 * MSE``).
        k_p: LPIPS coefficient (TACO: 3.5).
        k_j: joint image-text coefficient (TACO: 0.0025).
        lpips: module (x_hat, x) -> (B,) LPIPS; required when ``k_p > 0``.
        joint: :class:`ClipJointLoss`; required when ``k_j > 0``.
    """

    def __init__(self, lmbda: float = 0.0016, k_p: float = 3.5, k_j: float = 0.0025, lpips: Optional[nn.Module] = None,
                 joint: Optional[nn.Module] = None) -> None:
        super().__init__()
        for name, value in (("lmbda", lmbda), ("k_p", k_p), ("k_j", k_j)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if k_p > 0 and lpips is None:
            raise ValueError("k_p > 0 needs an LPIPS module (loss.lpips)")
        if k_j > 0 and joint is None:
            raise ValueError("k_j > 0 needs a joint CLIP loss module (loss.joint)")
        self.lmbda, self.k_p, self.k_j = float(lmbda), float(k_p), float(k_j)
        self.lpips = lpips if k_p > 0 else None
        self.joint = joint if k_j > 0 else None

    def forward(self, output: Mapping, x: Tensor, captions: Optional[Sequence[str]] = None) -> dict[str, Tensor]:
        """Terms (scalars) of one batch: ``loss``, ``bpp``, ``mse``, and when computed ``lpips``, ``joint``,
        ``contrastive``, ``embedding_distance``; ``output`` is the model's ``{"x_hat", "likelihoods"}``, ``x`` the
        target (B, 3, H, W) in [0, 1], ``captions`` the B captions (the joint term's)."""
        B, _, H, W = x.shape
        x_hat = output["x_hat"].float()
        terms = {"bpp": bpp_from_likelihoods(output["likelihoods"], B * H * W), "mse": torch.mean((x_hat - x) ** 2)}
        loss = terms["bpp"] + self.lmbda * 255**2 * terms["mse"]
        if self.lpips is not None:
            terms["lpips"] = self.lpips(x_hat, x).mean()
            loss = loss + self.k_p * terms["lpips"]
        if self.joint is not None:
            if captions is None:
                raise ValueError("the joint image-text term needs the batch's captions")
            terms.update(self.joint(x_hat, x, captions))
            loss = loss + self.k_j * terms["joint"]
        terms["loss"] = loss
        return terms

    def extra_repr(self) -> str:
        return f"lmbda={self.lmbda}, k_p={self.k_p}, k_j={self.k_j}"
