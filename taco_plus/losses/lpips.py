"""LPIPS (Zhang et al., CVPR 2018) for images in [0, 1], via the ``lpips`` package. The metric expects [-1, 1];
TACO's code (and so the paper's numbers) fed [0, 1]: ``convention="correct"`` maps the range, ``"reference"``
reproduces TACO's. The backbone comes from torchvision's download cache (offline without it, construction says
which file to put where); ``pretrained=False`` is a RANDOM-backbone stand-in, labelled as such.
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
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth", "squeeze": "squeezenet1_1-b8a52dc0.pth"}


class LpipsBackboneUnavailableError(RuntimeError):
    """The LPIPS backbone weights are not cached and cannot be downloaded."""


def backbone_path(net: str) -> Path:
    """Where torchvision looks for (and downloads) ``net``'s backbone weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


class LpipsDistance(nn.Module):
    """Per-image LPIPS: two (B, 3, H, W) batches in [0, 1] -> (B,) distances.

    Args:
        net: backbone, ``"alex"`` (TACO), ``"vgg"`` or ``"squeeze"``.
        convention: ``"correct"`` or ``"reference"`` (module docstring).
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
        hint = (f"LPIPS({net}) needs the torchvision backbone weights {path.name}: `taco-plus download lpips` fetches "
                f"AlexNet's; or download https://download.pytorch.org/models/{path.name} to {path} (set $TORCH_HOME to use "
                "another cache folder), or use the random-backbone stand-in (pretrained=false, not a real LPIPS)")
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes")
        if pretrained and not path.is_file() and offline:
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
        if x_hat.shape != x.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS needs two (B, 3, H, W) batches, got {tuple(x_hat.shape)} and {tuple(x.shape)}")
        return self.metric(x_hat, x, normalize=self.convention == "correct").reshape(x.shape[0])

    def describe(self) -> str:
        backbone = "pretrained" if self.pretrained else "RANDOM (stand-in, not the real metric)"
        return f"LPIPS({self.net}, backbone {backbone}, {self.convention} input range)"

    def extra_repr(self) -> str:
        return self.describe()


build_lpips = LpipsDistance  # the name configs, the evaluator and the docs use
