"""Fréchet Inception Distance as published FIDs are computed (Heusel et al., 2017): torchmetrics on
the FID Inception weights (``pt_inception-2015-12-05``) with TensorFlow 1.x's resize; for small sets
256×256 patches (HiFiC, Mentzer et al. 2020) plus the grid shifted by half a patch (MS-ILLM, Muckley et
al. 2023: "FID/256"), whole images for MS-COCO 30k. The weights are read from a
local file, never downloaded (docs/evaluation.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from taco_plus.images import to_uint8

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
# torch-fidelity's release of the same file (what torchmetrics' FID network loads); `taco-plus download fid`
FID_WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                   "weights-inception-2015-12-05-6726825d.pth")


class FidUnavailable(RuntimeError):
    """FID cannot be computed (weights missing, too few samples); the message says why."""


def fid_weights_path() -> Path:
    """Default location of the FID Inception weights: the ``torch.hub`` cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE


def split_patches(x: Tensor, patch_size: Optional[int], shifted: bool = False) -> Tensor:
    """(B, 3, H, W) -> (B·nH·nW, 3, p, p) non-overlapping patches, remainders dropped; images smaller than a
    patch, or ``patch_size=None``, stay whole. ``shifted`` adds the grid shifted by p/2 where both sides are
    at least 1.5·p (MS-ILLM's ``update_patch_fid``): a 768×512 Kodak image gives 6 + 2 patches of 256."""
    if patch_size is None or min(x.shape[-2:]) < patch_size:
        return x
    patches = x.unfold(2, patch_size, patch_size).unfold(3, patch_size, patch_size)  # (B, 3, nH, nW, p, p)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.size(1), patch_size, patch_size)
    if shifted and 2 * min(x.shape[-2:]) >= 3 * patch_size:
        patches = torch.cat([patches, split_patches(x[..., patch_size // 2:, patch_size // 2:], patch_size)])
    return patches


class FidAccumulator:
    """Feeds original/reconstruction pairs, as 8-bit ``patch_size`` patches (None: whole images; with
    ``shifted``, also the half-patch-shifted grid: :func:`split_patches`), to ``metric``, a torchmetrics
    ``FrechetInceptionDistance`` (:meth:`inception`; tests pass one with a small ``feature`` network taking
    uint8 images); ``name`` is the feature network, for provenance. Under ``torch.distributed`` its
    :meth:`compute` reduces every process's sums (torchmetrics' sync): call it on every rank."""

    def __init__(self, metric: nn.Module, patch_size: Optional[int] = 256, name: Optional[str] = None,
                 shifted: bool = True) -> None:
        self.metric = metric
        metric.orig_dtype = torch.float32  # set by update(): a resumed or idle rank's metric may have had none
        self.patch_size, self.shifted = patch_size, shifted
        self.name = name or type(metric.inception).__name__

    @classmethod
    def inception(cls, weights: Optional[str | os.PathLike] = None, patch_size: Optional[int] = 256,
                  device: str = "cpu", shifted: bool = True) -> "FidAccumulator":
        """The standard FID: torchmetrics' ``FrechetInceptionDistance`` on the weights file (default
        :func:`fid_weights_path`; torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` is the same
        network), on ``device``; :class:`FidUnavailable` when the file is absent or not plain tensors."""
        path = Path(weights) if weights else fid_weights_path()
        if not path.is_file():
            raise FidUnavailable(f"FID Inception weights not found at {path}: run `taco-plus download fid` (or download "
                                 f"{FID_WEIGHTS_URL} to that path, set metrics.fid.weights=PATH or TORCH_HOME), or "
                                 "evaluate without FID: metrics.fid.enabled=false")
        try:  # a weights file is data: refuse pickled code before the library reads it
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise FidUnavailable(f"{path} is not a plain weights file ({type(err).__name__}: {err})") from err
        from torchmetrics.image.fid import FrechetInceptionDistance  # a heavy import: only when needed

        metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path), antialias=False)
        return cls(metric.to(device), patch_size, f"FID Inception ({path.name}, torchmetrics)", shifted)

    @property
    def num_samples(self) -> int:
        return int(self.metric.real_features_num_samples)

    def describe(self) -> str:
        patches = "whole images" if self.patch_size is None else f"{self.patch_size}x{self.patch_size} patches" + (
            " + the grid shifted by half a patch" if self.shifted else "")
        return f"{self.name}, {patches}"

    @torch.no_grad()
    def update(self, x: Tensor, x_hat: Tensor) -> None:
        """Adds originals ``x`` and reconstructions ``x_hat``, (B, 3, H, W) in [0, 1]."""
        for images, real in ((x, True), (x_hat, False)):
            patches = split_patches(images.to(self.metric.device), self.patch_size, self.shifted)
            self.metric.update(to_uint8(patches), real=real)

    def compute(self) -> float:
        try:
            return float(self.metric.compute())
        except RuntimeError as err:  # torchmetrics: "More than one sample is required ..."
            if "one sample" not in str(err):
                raise
            raise FidUnavailable(f"FID needs at least 2 samples, got {self.num_samples}") from err

    def state_dict(self) -> dict[str, Tensor]:
        """The running sums: a snapshot to resume a long evaluation (without the network's weights)."""
        return {k: v.detach().cpu().clone() for k, v in self.metric.metric_state.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        current = self.metric.metric_state
        if set(state) != set(current) or any(state[k].shape != current[k].shape for k in current):
            raise ValueError("FID state does not match this metric (another feature network?)")
        for key, value in state.items():
            setattr(self.metric, key, value.to(current[key].device, current[key].dtype))
