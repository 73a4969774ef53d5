"""A tiny, UNTRAINED CLIP for tests and the offline demo.

``taco-tiny-clip`` (``model_configs/taco-tiny-clip.json``) keeps CLIP's interfaces
(BPE vocabulary of 49,408, 77 positions, causal text tower, 224-pixel ViT image tower
with 32-pixel patches) at toy sizes: width 64, 2 layers, 4 heads, embedding 64, about
3.6 M parameters. Its weights are random, drawn from a fixed seed so that two processes
build the same model; its features mean nothing. Every description of it says so.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from taco_plus.text.clip_loading import load_clip

TINY_CLIP_NAME = "taco-tiny-clip"


def tiny_clip(seed: int = 0, device: Union[str, torch.device] = "cpu") -> nn.Module:
    """The frozen, random-init ``taco-tiny-clip`` model (same weights for the same seed).

    Args:
        seed: initialisation seed.
        device: device to place the model on.
    """
    return load_clip(TINY_CLIP_NAME, pretrained=None, device=device, seed=seed)
