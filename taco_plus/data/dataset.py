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
unreadable image file   ``skip`` (report, count, go on), ``strict``  truncated JPEG
======================  ===========================================  =================

With an image list (MS-COCO 30k: TACO's 30,504 val2014 names) only the listed files
are used, and "caption without image" means a listed name whose file is absent.

An unreadable image (truncated, not an image, zero bytes) can only be found by
decoding it, so it is met while a run goes on, not at construction. Under ``skip``
training fills its slot with the next readable image of the dataset (batches keep
their size on every process, and a resumed run sees the same substitutes; the item's
``"bad_images"`` says why, and the training loader logs and counts it); evaluation
gets an item with an ``"error"`` (path and reason) instead of an ``"image"``, and
reports and counts it. ``strict`` raises :class:`BadImageError`.

A garbage caption is one :func:`taco_plus.captions.checks.caption_problems` flags
(empty, U+FFFD, control or private-use characters; surrounding whitespace is only
stripped). Of an image's several captions (COCO has 5) the bad ones are dropped and
the policy applies only when none is left.

Caption choice: training draws one of an image's captions per step (``"random"``,
seeded); evaluation takes the first (``"first"``: for COCO, the lowest annotation id).
Every item also carries all of the image's usable captions (``"captions"``), for the
evaluation's caption policies.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from taco_plus.captions.checks import caption_problems
from taco_plus.captions.convert import list_images
from taco_plus.captions.sources import CaptionSource
from taco_plus.data.transforms import SMALL_IMAGE_POLICIES, random_crop
from taco_plus.images import ImageReadError, load_image

logger = logging.getLogger(__name__)

MISSING_CAPTION_POLICIES = ("error", "skip", "empty")
BAD_CAPTION_POLICIES = ("error", "skip", "empty", "keep")
MISSING_IMAGE_POLICIES = ("error", "warn")
BAD_IMAGE_POLICIES = ("skip", "strict")
CAPTION_CHOICES = ("random", "first")
_EXAMPLES = 5


class DatasetPairingError(ValueError):
    """Images and captions do not pair up and the policy says ``error``."""


class BadImageError(ValueError):
    """An image file that cannot be decoded, under ``bad_image="strict"``."""


def read_image(path: Path) -> Tensor:
    """:func:`~taco_plus.images.load_image`, with every way a file can be unreadable
    (missing, truncated, not an image, a decompression bomb) as :class:`BadImageError`."""
    try:
        return load_image(path)
    except ImageReadError as err:  # its message names the file
        raise BadImageError(str(err)) from err
    except (OSError, Image.DecompressionBombError) as err:
        raise BadImageError(f"cannot read image {path}: {err}") from err


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
    unreadable: list[str] = field(default_factory=list)  # found when reading headers (min_side)

    def lines(self) -> list[str]:
        """Human-readable summary lines (counts with a few examples)."""

        def ex(ids: Sequence[str]) -> str:
            more = f", ... (+{len(ids) - _EXAMPLES})" if len(ids) > _EXAMPLES else ""
            return ", ".join(ids[:_EXAMPLES]) + more

        out = [f"{self.kept} of {self.images} images kept"]
        if self.without_caption:
            out.append(f"{len(self.without_caption)} images have no caption: {ex(self.without_caption)}")
        if self.without_image:
            out.append(f"{len(self.without_image)} captioned or listed ids have no image file: {ex(self.without_image)}")
        if self.bad_captions:
            shown = [f"{k} ({'; '.join(v)})" for k, v in list(self.bad_captions.items())[:_EXAMPLES]]
            out.append(f"{len(self.bad_captions)} images have empty/garbage captions: {', '.join(shown)}")
        if self.too_small:
            out.append(f"{len(self.too_small)} images are below the minimum side: {ex(self.too_small)}")
        if self.unreadable:
            out.append(f"{len(self.unreadable)} unreadable images skipped: {ex(self.unreadable)}")
        return out


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def read_image_list(path: os.PathLike | str) -> list[str]:
    """A JSON list of image names relative to the image folder (TACO's
    ``mscoco_30k_list.json``), checked: strings, relative, no duplicates; sorted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image list not found: {path}")
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetPairingError(f"{path}: not a JSON list of image names ({err})") from err
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise DatasetPairingError(f"{path}: must be a JSON list of image file names")
    bad = [n for n in names if Path(n).is_absolute() or ".." in Path(n).parts]
    if bad:
        raise DatasetPairingError(f"{path}: names must be relative paths inside the image folder, got {bad[:3]}")
    if len(set(names)) != len(names):
        dup = sorted(n for n, count in Counter(names).items() if count > 1)
        raise DatasetPairingError(f"{path}: {len(dup)} names appear twice, e.g. {dup[:3]}")
    return sorted(names)


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
        bad_image: ``"skip"`` or ``"strict"`` for unreadable files (module docstring).
        replace_bad: fill a skipped image's slot with the next readable image
            (training); otherwise the item carries ``"error"`` (evaluation).
        image_list: a JSON list of the image names to use (default: every image file).
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
        bad_image: str = "skip",
        replace_bad: bool = False,
        image_list: Optional[os.PathLike | str] = None,
        min_side: int = 0,
        seed: int = 0,
        limit: Optional[int] = None,
    ) -> None:
        _check_choice("small_images", small_images, SMALL_IMAGE_POLICIES)
        _check_choice("caption_choice", caption_choice, CAPTION_CHOICES)
        _check_choice("missing_caption", missing_caption, MISSING_CAPTION_POLICIES)
        _check_choice("bad_caption", bad_caption, BAD_CAPTION_POLICIES)
        _check_choice("missing_image", missing_image, MISSING_IMAGE_POLICIES)
        _check_choice("bad_image", bad_image, BAD_IMAGE_POLICIES)
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        self.image_dir = Path(image_dir)
        self.crop_size = crop_size
        self.small_images = small_images
        self.caption_choice = caption_choice
        self.bad_image = bad_image
        self.replace_bad = replace_bad
        self.seed = seed
        self.epoch = 0
        self.report = PairingReport()
        self.image_list = None if image_list is None else Path(image_list)
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
        if self.image_list is None:
            files = list_images(self.image_dir)
            report.without_image = sorted(set(source.ids()) - set(files))
        else:  # only the listed names; a listed name without a file is the missing case
            listed = read_image_list(self.image_list)
            files = [n for n in listed if (self.image_dir / n).is_file()]
            report.without_image = sorted(set(listed) - set(files))
        report.images = len(files)
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
            try:
                with Image.open(self.image_dir / image_id) as img:  # reads the header only
                    size = img.size
            except (OSError, Image.DecompressionBombError) as err:
                if self.bad_image == "strict":
                    raise BadImageError(f"cannot read image {self.image_dir / image_id}: {err}") from err
                logger.warning("unreadable image %s skipped: %s", self.image_dir / image_id, err)
                self.report.unreadable.append(image_id)
                continue
            if min(size) < min_side:
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

    @property
    def ids(self) -> list[str]:
        """Image ids in item order (no image is read)."""
        return [image_id for image_id, _ in self.entries]

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = range(len(self.entries))[index]  # IndexError past the end (ends iteration)
        generator = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, index))
        replaced: list[str] = []  # why each unreadable file whose slot this item fills was skipped
        for step in range(len(self.entries)):
            image_id, caps = self.entries[(index + step) % len(self.entries)]
            try:
                x = read_image(self.image_dir / image_id)  # (3, H, W) in [0, 1]
                break
            except BadImageError as err:
                if self.bad_image == "strict":
                    raise
                if not self.replace_bad:  # the evaluation reports and counts it
                    return {"image": None, "error": str(err), "caption": caps[0], "captions": caps, "id": image_id}
                replaced.append(str(err))  # the training loader reports and counts it
        else:
            raise BadImageError(f"no readable image in {self.image_dir}: {len(self.entries)} files failed")
        if self.crop_size is not None:
            x = random_crop(x, self.crop_size, generator, self.small_images)
        if self.caption_choice == "random" and len(caps) > 1:
            caption = caps[int(torch.randint(len(caps), (), generator=generator))]
        else:
            caption = caps[0]
        item = {"image": x.contiguous(), "caption": caption, "captions": caps, "id": image_id}
        if replaced:
            item["bad_images"] = replaced
        return item
