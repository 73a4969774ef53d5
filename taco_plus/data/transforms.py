"""Training crops: a random ``size``×``size`` window of an image, seeded per item.

TACO trains on 256×256 random crops of COCO images whose sides are both ≥ 256. Other
sets contain smaller images; they are brought up to the crop size first by one of

* ``"upscale"`` (default): bicubic resize (antialiased) so the shorter side equals the
  crop size, aspect ratio kept. The content stays a natural photograph; it is only
  slightly softer than a native image of that size.
* ``"reflect"``: mirror padding at the bottom/right. Pixels stay native, but the codec
  sees mirrored seams that no real photo has.

Upscaling is the default because the codec learns from every pixel it is shown.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SMALL_IMAGE_POLICIES = ("upscale", "reflect")


def fit_to_crop(x: Tensor, size: int, policy: str = "upscale") -> Tensor:
    """Makes a (3, H, W) image at least ``size`` on both sides (unchanged if it is)."""
    if policy not in SMALL_IMAGE_POLICIES:
        raise ValueError(f"small-image policy must be one of {SMALL_IMAGE_POLICIES}, got {policy!r}")
    h, w = x.shape[-2:]
    if h >= size and w >= size:
        return x
    if policy == "upscale":
        scale = size / min(h, w)
        new_h, new_w = max(size, math.ceil(h * scale)), max(size, math.ceil(w * scale))
        out = F.interpolate(x[None], size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
        return out[0].clamp_(0.0, 1.0)
    # Reflection padding cannot exceed the side it mirrors; repeat until large enough.
    while x.shape[-2] < size or x.shape[-1] < size:
        h, w = x.shape[-2:]
        pad_h, pad_w = min(size - h, h - 1) if h < size else 0, min(size - w, w - 1) if w < size else 0
        if (h < size and pad_h == 0) or (w < size and pad_w == 0):  # a 1-pixel side cannot reflect
            x = F.pad(x[None], (0, max(0, size - w), 0, max(0, size - h)), mode="replicate")[0]
            break
        x = F.pad(x[None], (0, pad_w, 0, pad_h), mode="reflect")[0]
    return x


def random_crop(x: Tensor, size: int, generator: torch.Generator, policy: str = "upscale") -> Tensor:
    """A random ``size``×``size`` crop of a (3, H, W) image, position drawn from ``generator``."""
    x = fit_to_crop(x, size, policy)
    h, w = x.shape[-2:]
    top = int(torch.randint(0, h - size + 1, (), generator=generator))
    left = int(torch.randint(0, w - size + 1, (), generator=generator))
    return x[:, top : top + size, left : left + size]
