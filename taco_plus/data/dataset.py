"""Images in a folder paired with captions from a :class:`CaptionSource`.

Image ids are paths relative to the image folder (``"kodim01.png"``,
``"000000397133.jpg"``), the keys of every caption source. Real caption data is
messy, so pairing is checked once, at construction, and every problem is counted
and logged with examples; what happens to each kind is a policy:

======================  ===========================================  =================
problem                 policies                                     example
======================  ===========================================  =================
image without caption   ``error``, ``skip`` (drop), ``empty`` ("")   COCO val2017: 80
caption without image   ``error``, ``warn`` (ignored)                missing files
empty/garbage caption   ``error``, ``skip``, ``empty``, ``keep``     kodim17 (U+FFFD)
======================  ===========================================  =================

A garbage caption is one :func:`taco_plus.captions.checks.caption_problems` flags
(empty, U+FFFD, control or private-use characters; surrounding whitespace is only
stripped). Of an image's several captions (COCO has 5) the bad ones are dropped and
the policy applies only when none is left.

Caption choice: training draws one of an image's captions per step (``"random"``,
seeded); evaluation takes the first (``"first"``: for COCO, the lowest annotation id).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from taco_plus.captions.checks import caption_problems
from taco_plus.captions.sources import CaptionSource
from taco_plus.data.transforms import SMALL_IMAGE_POLICIES, random_crop
from taco_plus.images import load_image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
MISSING_CAPTION_POLICIES = ("error", "skip", "empty")
BAD_CAPTION_POLICIES = ("error", "skip", "empty", "keep")
MISSING_IMAGE_POLICIES = ("error", "warn")
CAPTION_CHOICES = ("random", "first")
_EXAMPLES = 5


class DatasetPairingError(ValueError):
    """Images and captions do not pair up and the policy says ``error``."""


@dataclass
class PairingReport:
    """What :class:`CaptionedImageDataset` found when pairing images and captions.

    Each list holds image ids; ``bad_captions`` maps an image id to its problems.
    """

    images: int = 0
    kept: int = 0
    without_caption: list[str] = field(default_factory=list)
    without_image: list[str] = field(default_factory=list)
    bad_captions: dict[str, list[str]] = field(default_factory=dict)
    too_small: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary lines (counts with a few examples)."""

        def ex(ids: Sequence[str]) -> str:
            more = f", ... (+{len(ids) - _EXAMPLES})" if len(ids) > _EXAMPLES else ""
            return ", ".join(ids[:_EXAMPLES]) + more

        out = [f"{self.kept} of {self.images} images kept"]
        if self.without_caption:
            out.append(f"{len(self.without_caption)} images have no caption: {ex(self.without_caption)}")
        if self.without_image:
            out.append(f"{len(self.without_image)} captioned ids have no image file: {ex(self.without_image)}")
        if self.bad_captions:
            shown = [f"{k} ({'; '.join(v)})" for k, v in list(self.bad_captions.items())[:_EXAMPLES]]
            out.append(f"{len(self.bad_captions)} images have empty/garbage captions: {', '.join(shown)}")
        if self.too_small:
            out.append(f"{len(self.too_small)} images are below the minimum side: {ex(self.too_small)}")
        return out


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def list_images(image_dir: Path) -> list[str]:
    """Image files under ``image_dir`` as sorted relative POSIX paths (hidden files skipped)."""
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    ids = []
    for root, dirs, files in os.walk(image_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                ids.append((Path(root) / name).relative_to(image_dir).as_posix())
    return sorted(ids)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one item of one epoch, independent of workers and processes."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class CaptionedImageDataset(Dataset):
    """Captioned images as ``{"image": (3, H, W) in [0, 1], "caption": str, "id": str}``.

    Args:
        image_dir: folder of images; ids are paths relative to it.
        captions: caption source keyed by those ids.
        crop_size: random square crop for training; None gives full images (evaluation).
        small_images: how images smaller than the crop are handled (``"upscale"`` or
            ``"reflect"``, see :mod:`taco_plus.data.transforms`).
        caption_choice: ``"random"`` (one of the image's captions per step, seeded) or
            ``"first"``.
        missing_caption / bad_caption / missing_image: pairing policies (module docstring).
        min_side: drop images whose shorter side is below this (TACO trains on COCO
            images with both sides >= 256); reads image headers once.
        seed: base seed of crops and caption draws.
        limit: keep only the first ``limit`` paired images (sorted by id).
    """

    def __init__(
        self,
        image_dir: os.PathLike | str,
        captions: CaptionSource,
        crop_size: Optional[int] = None,
        small_images: str = "upscale",
        caption_choice: str = "random",
        missing_caption: str = "skip",
        bad_caption: str = "skip",
        missing_image: str = "warn",
        min_side: int = 0,
        seed: int = 0,
        limit: Optional[int] = None,
    ) -> None:
        _check_choice("small_images", small_images, SMALL_IMAGE_POLICIES)
        _check_choice("caption_choice", caption_choice, CAPTION_CHOICES)
        _check_choice("missing_caption", missing_caption, MISSING_CAPTION_POLICIES)
        _check_choice("bad_caption", bad_caption, BAD_CAPTION_POLICIES)
        _check_choice("missing_image", missing_image, MISSING_IMAGE_POLICIES)
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        self.image_dir = Path(image_dir)
        self.crop_size = crop_size
        self.small_images = small_images
        self.caption_choice = caption_choice
        self.seed = seed
        self.epoch = 0
        self.report = PairingReport()
        self.entries = self._pair(captions, missing_caption, bad_caption, missing_image, min_side)
        if limit is not None:
            self.entries = self.entries[:limit]
        self.report.kept = len(self.entries)
        name = getattr(captions, "name", type(captions).__name__)
        summary, *problems = self.report.lines()
        logger.info("%s + captions %r: %s", self.image_dir, name, summary)
        for line in problems:
            logger.warning("%s + captions %r: %s", self.image_dir, name, line)
        if not self.entries:
            raise DatasetPairingError(
                f"no usable captioned images in {self.image_dir} with captions {name!r}: "
                + "; ".join(self.report.lines())
            )

    # ------------------------------------------------------------- pairing
    def _pair(
        self, source: CaptionSource, missing_caption: str, bad_caption: str, missing_image: str, min_side: int
    ) -> list[tuple[str, list[str]]]:
        report = self.report
        files = list_images(self.image_dir)
        report.images = len(files)
        file_set = set(files)
        report.without_image = sorted(i for i in source.ids() if i not in file_set)
        if report.without_image and missing_image == "error":
            raise DatasetPairingError(report.lines()[-1] + f" (missing_image=error, folder {self.image_dir})")

        entries: list[tuple[str, list[str]]] = []
        for image_id in files:
            if image_id not in source:
                report.without_caption.append(image_id)
                if missing_caption == "empty":
                    entries.append((image_id, [""]))
                continue
            raw = [c.strip() for c in source.captions(image_id)]
            problems = {i: caption_problems(c) for i, c in enumerate(raw)}
            problems = {i: p for i, p in problems.items() if p}
            good = [c for i, c in enumerate(raw) if i not in problems]
            if problems:
                report.bad_captions[image_id] = [p for ps in problems.values() for p in ps]
            if good:
                entries.append((image_id, good))
            elif bad_caption == "keep":
                entries.append((image_id, raw))
            elif bad_caption == "empty":
                entries.append((image_id, [""]))
        # Errors are raised after the scan so the message counts every case.
        if report.without_caption and missing_caption == "error":
            raise DatasetPairingError(
                next(l for l in report.lines() if "no caption" in l) + " (missing_caption=error)"
            )
        if bad_caption == "error" and report.bad_captions:
            raise DatasetPairingError(
                next(l for l in report.lines() if "garbage" in l) + " (bad_caption=error)"
            )
        if min_side > 0:
            entries = self._drop_small(entries, min_side)
        return entries

    def _drop_small(self, entries: list[tuple[str, list[str]]], min_side: int) -> list[tuple[str, list[str]]]:
        from PIL import Image

        kept = []
        for image_id, caps in entries:
            with Image.open(self.image_dir / image_id) as img:  # reads the header only
                if min(img.size) < min_side:
                    self.report.too_small.append(image_id)
                    continue
            kept.append((image_id, caps))
        return kept

    # ------------------------------------------------------------- access
    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose crops and caption draws ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id, caps = self.entries[index]
        generator = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, index))
        x = load_image(self.image_dir / image_id)  # (3, H, W) in [0, 1]
        if self.crop_size is not None:
            x = random_crop(x, self.crop_size, generator, self.small_images)
        if self.caption_choice == "random" and len(caps) > 1:
            caption = caps[int(torch.randint(len(caps), (), generator=generator))]
        else:
            caption = caps[0]
        return {"image": x.contiguous(), "caption": caption, "id": image_id}
