"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric", CVPR 2018) for images in [0, 1], via the ``lpips`` package.

The metric expects inputs in [-1, 1]. TACO's reference code feeds [0, 1] tensors
without ``normalize=True``; its LPIPS numbers (and the paper's) are therefore on a
shifted input range. :func:`build_lpips` maps [0, 1] -> [-1, 1] by default
(``convention="correct"``) and reproduces the reference with
``convention="reference"``, so numbers can be compared with the paper's.

``lpips`` ships only its linear calibration layers; the backbone (AlexNet, VGG16,
SqueezeNet) comes from torchvision's download cache. Offline and without that file,
:func:`build_lpips` fails at once saying which file to put where. ``pretrained=False``
builds the metric on a *random* backbone: a working stand-in for tests and the
offline demo, labelled as such everywhere it is described, never a real LPIPS.
"""

from __future__ import annotations

import os
import urllib.error
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

CONVENTIONS = ("correct", "reference")
# torchvision weights each lpips backbone downloads on first use.
BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


class LpipsBackboneUnavailableError(RuntimeError):
    """The LPIPS backbone weights are not cached and cannot be downloaded."""


def backbone_path(net: str) -> Path:
    """Where torchvision looks for (and downloads) ``net``'s backbone weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TACO_OFFLINE"))


class LpipsDistance(nn.Module):
    """Per-image LPIPS between two batches of images in [0, 1].

    Args:
        net: backbone, ``"alex"`` (TACO), ``"vgg"`` or ``"squeeze"``.
        convention: ``"correct"`` ([0, 1] mapped to [-1, 1]) or ``"reference"``
            ([0, 1] fed as is, like TACO's code).
        pretrained: real backbone (True) or random-backbone stand-in (False).
    """

    def __init__(self, net: str = "alex", convention: str = "correct", pretrained: bool = True) -> None:
        super().__init__()
        import lpips

        if net not in BACKBONE_FILES:
            raise ValueError(f"LPIPS net must be one of {tuple(BACKBONE_FILES)}, got {net!r}")
        if convention not in CONVENTIONS:
            raise ValueError(f"LPIPS convention must be one of {CONVENTIONS}, got {convention!r}")
        path = backbone_path(net)
        hint = (
            f"LPIPS({net}) needs the torchvision backbone weights {path.name}; download "
            f"https://download.pytorch.org/models/{path.name} and put it at {path} "
            f"(set $TORCH_HOME to use another cache folder), or use the random-backbone "
            f"stand-in (pretrained=false, not a real LPIPS)"
        )
        if pretrained and not path.is_file() and _offline():
            raise LpipsBackboneUnavailableError(f"offline and not cached: {hint}")
        try:
            with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=`
                warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
                self.metric = lpips.LPIPS(net=net, pnet_rand=not pretrained, verbose=False)
        except (urllib.error.URLError, OSError, RuntimeError) as err:
            if not pretrained:
                raise
            raise LpipsBackboneUnavailableError(f"{err}: {hint}") from err
        self.metric.eval().requires_grad_(False)
        self.net, self.convention, self.pretrained = net, convention, pretrained

    def train(self, mode: bool = True) -> "LpipsDistance":
        super().train(mode)
        self.metric.eval()  # its linear layers use dropout: a metric never trains
        return self

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """(B, 3, H, W) x 2 in [0, 1] -> (B,) distances (differentiable in both)."""
        if x_hat.shape != x.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two (B, 3, H, W) batches, got {tuple(x_hat.shape)} and {tuple(x.shape)}")
        return self.metric(x_hat, x, normalize=self.convention == "correct").reshape(x.shape[0])

    def describe(self) -> str:
        backbone = "pretrained" if self.pretrained else "RANDOM (stand-in, not the real metric)"
        return f"LPIPS({self.net}, backbone {backbone}, {self.convention} input range)"

    def extra_repr(self) -> str:
        return self.describe()


def build_lpips(net: str = "alex", convention: str = "correct", pretrained: bool = True) -> LpipsDistance:
    """LPIPS as a module mapping two (B, 3, H, W) images in [0, 1] to (B,) distances.

    Args:
        net: ``"alex"`` (TACO, evaluation), ``"vgg"`` or ``"squeeze"``.
        convention: ``"correct"`` (default) or ``"reference"`` (TACO's [0, 1] inputs).
        pretrained: False gives the random-backbone stand-in (offline tests/demo).
    """
    return LpipsDistance(net, convention, pretrained)
