"""Images in a folder (ids: paths relative to it) paired with captions from a :class:`CaptionSource`, checked once
and each problem handled by its policy (docs/training.md, "Data"), and training crops."""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from taco_plus.captions.checks import caption_problems
from taco_plus.captions.convert import list_images
from taco_plus.captions.sources import CaptionSource
from taco_plus.images import ImageReadError, load_image

logger = logging.getLogger(__name__)

POLICIES = {"small_images": ("upscale", "reflect"), "caption_choice": ("random", "first"),
            "missing_caption": ("error", "skip", "empty"), "bad_caption": ("error", "skip", "empty", "keep"),
            "missing_image": ("error", "warn"), "bad_image": ("skip", "strict")}
_EXAMPLES = 5


class DatasetPairingError(ValueError):
    """Images and captions do not pair up and the policy says ``error``."""


BadImageError = ImageReadError  # an image file that cannot be decoded (the name data users catch)


def fit_to_crop(x: Tensor, size: int, policy: str = "upscale") -> Tensor:
    """Makes a (3, H, W) image at least ``size`` on both sides: ``"upscale"`` (bicubic, antialiased,
    aspect kept) or ``"reflect"`` (mirror padding bottom/right); docs/training.md, "Data"."""
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
            return F.pad(x[None], (0, max(0, size - w), 0, max(0, size - h)), mode="replicate")[0]
        x = F.pad(x[None], (0, pad_w, 0, pad_h), mode="reflect")[0]
    return x


def random_crop(x: Tensor, size: int, generator: torch.Generator, policy: str = "upscale") -> Tensor:
    """A random ``size``×``size`` crop of a (3, H, W) image, position drawn from ``generator``."""
    x = fit_to_crop(x, size, policy)
    h, w = x.shape[-2:]
    top = int(torch.randint(0, h - size + 1, (), generator=generator))
    left = int(torch.randint(0, w - size + 1, (), generator=generator))
    return x[:, top : top + size, left : left + size]


@dataclass
class PairingReport:
    """What pairing found: counts, and image ids (``bad_captions``: id -> its problems)."""

    images: int = 0
    kept: int = 0
    without_caption: list[str] = field(default_factory=list)
    without_image: list[str] = field(default_factory=list)
    bad_captions: dict[str, list[str]] = field(default_factory=dict)
    too_small: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # found when reading headers (min_side)

    def lines(self) -> list[str]:
        """Human-readable summary lines (counts with a few examples)."""
        n = _EXAMPLES

        def ex(ids: Sequence[str]) -> str:
            return ", ".join(ids[:n]) + (f", ... (+{len(ids) - n})" if len(ids) > n else "")

        found = [(self.without_caption, "images have no caption", ex(self.without_caption)),
                 (self.without_image, "captioned or listed ids have no image file", ex(self.without_image)),
                 (self.bad_captions, "images have empty/garbage captions",
                  ", ".join(f"{k} ({'; '.join(v)})" for k, v in list(self.bad_captions.items())[:n])),
                 (self.too_small, "images are below the minimum side", ex(self.too_small)),
                 (self.unreadable, "unreadable images skipped", ex(self.unreadable))]
        return [f"{self.kept} of {self.images} images kept"] + [f"{len(ids)} {what}: {shown}"
                                                                for ids, what, shown in found if ids]


def _json_list(path: os.PathLike | str, what: str, names: bool = True) -> list[str]:
    """A JSON list of non-empty strings; ``names``: relative paths inside the image folder."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise DatasetPairingError(f"{path}: not a JSON list ({str(err)[:100]})") from err
    if not isinstance(items, list) or not all(isinstance(n, str) and n for n in items):
        raise DatasetPairingError(f"{path}: must be a JSON list of non-empty strings ({what})")
    if bad := [n for n in items if names and (Path(n).is_absolute() or ".." in Path(n).parts)]:
        raise DatasetPairingError(f"{path}: names must be relative paths inside the image folder, got {bad[:3]}")
    return items


def read_image_list(path: os.PathLike | str) -> list[str]:
    """A JSON list of relative image names (TACO's ``mscoco_30k_list.json``), checked and sorted."""
    names = _json_list(path, "image list")
    if dup := sorted(n for n, count in Counter(names).items() if count > 1):
        raise DatasetPairingError(f"{path}: {len(dup)} names appear twice, e.g. {dup[:3]}")
    return sorted(names)


class ListedCaptions(CaptionSource):
    """TACO's published training lists (``materials/mscoco_train_{name,caption}_list_larger_than_256.json``):
    two parallel JSON lists, image names and one caption each (a repeated name keeps every caption)."""

    def __init__(self, name_list: os.PathLike | str, caption_list: os.PathLike | str) -> None:
        names, captions = _json_list(name_list, "name list"), _json_list(caption_list, "caption list", False)
        if len(names) != len(captions):
            raise DatasetPairingError(f"{name_list} lists {len(names)} names but {caption_list} {len(captions)} captions")
        self.path, self.name, self._captions = Path(caption_list), Path(caption_list).stem, {}
        for name, caption in zip(names, captions):
            self._captions.setdefault(name, []).append(caption)


class CaptionedImageDataset(Dataset):
    """Captioned images as ``{"image": (3, H, W) in [0, 1], "caption", "captions", "id"}``: random square
    ``crop_size`` crops (None: full images), a caption drawn per epoch (``"random"``) or the ``"first"``,
    policies and filters of docs/training.md, "Data"; ``replace_bad``: an unreadable image's slot gets the
    next readable one (training), else the item carries ``"error"``; ``limit``: the first images only."""

    def __init__(self, image_dir: os.PathLike | str, captions: CaptionSource, crop_size: Optional[int] = None,
                 small_images: str = "upscale", caption_choice: str = "random", missing_caption: str = "skip",
                 bad_caption: str = "skip", missing_image: str = "warn", bad_image: str = "skip",
                 replace_bad: bool = False, image_list: Optional[os.PathLike | str | Sequence[str]] = None,
                 min_side: int = 0, seed: int = 0, limit: Optional[int] = None) -> None:
        chosen = dict(small_images=small_images, caption_choice=caption_choice, missing_caption=missing_caption,
                      bad_caption=bad_caption, missing_image=missing_image, bad_image=bad_image)
        for name, value in chosen.items():
            if value not in POLICIES[name]:
                raise ValueError(f"{name} must be one of {POLICIES[name]}, got {value!r}")
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        self.image_dir = Path(image_dir)
        self.crop_size, self.small_images, self.caption_choice = crop_size, small_images, caption_choice
        self.bad_image, self.replace_bad, self.seed, self.epoch = bad_image, replace_bad, seed, 0
        self.report = PairingReport()
        self.entries = self._pair(captions, missing_caption, bad_caption, missing_image, image_list, min_side)[:limit]
        self.report.kept = len(self.entries)
        name = getattr(captions, "name", type(captions).__name__)
        summary, *problems = self.report.lines()
        logger.info("%s + captions %r: %s", self.image_dir, name, summary)
        for line in problems:
            logger.warning("%s + captions %r: %s", self.image_dir, name, line)
        if not self.entries:
            raise DatasetPairingError(f"no usable captioned images in {self.image_dir} with captions {name!r}: "
                                      + "; ".join(self.report.lines()))

    def _pair(self, source: CaptionSource, missing_caption: str, bad_caption: str, missing_image: str,
              image_list: Optional[os.PathLike | str | Sequence[str]], min_side: int) -> list[tuple[str, list[str]]]:
        report = self.report
        if image_list is None:
            files = list_images(self.image_dir)
            report.without_image = sorted(set(source.ids()) - set(files))
        else:  # only the listed names; a listed name without a file is the missing case
            listed = read_image_list(image_list) if isinstance(image_list, (str, os.PathLike)) else sorted(image_list)
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
            problems = [caption_problems(c) for c in raw]
            good = [c for c, p in zip(raw, problems) if not p]
            if len(good) < len(raw):
                report.bad_captions[image_id] = [p for ps in problems for p in ps]
            if good:
                entries.append((image_id, good))
            elif bad_caption == "keep":
                entries.append((image_id, raw))
            elif bad_caption == "empty":
                entries.append((image_id, [""]))
        # Errors are raised after the scan so the message counts every case.
        if report.without_caption and missing_caption == "error":
            raise DatasetPairingError(next(s for s in report.lines() if "no caption" in s) + " (missing_caption=error)")
        if report.bad_captions and bad_caption == "error":
            raise DatasetPairingError(next(s for s in report.lines() if "garbage" in s) + " (bad_caption=error)")
        return self._drop_small(entries, min_side) if min_side > 0 else entries

    def _drop_small(self, entries: list[tuple[str, list[str]]], min_side: int) -> list[tuple[str, list[str]]]:
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
            else:
                kept.append((image_id, caps))
        return kept

    def set_epoch(self, epoch: int) -> None:  # the epoch whose crops and caption draws items have
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def ids(self) -> list[str]:
        """Image ids in item order (no image is read)."""
        return [image_id for image_id, _ in self.entries]

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = range(len(self.entries))[index]  # IndexError past the end (ends iteration)
        # A seed per (seed, epoch, item): crops and draws independent of workers and processes.
        item_seed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(2, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(item_seed >> np.uint64(1)))
        replaced: list[str] = []  # why each unreadable file whose slot this item fills was skipped
        for step in range(len(self.entries)):
            image_id, caps = self.entries[(index + step) % len(self.entries)]
            try:
                x = load_image(self.image_dir / image_id)  # (3, H, W) in [0, 1]
                break
            except (ImageReadError, FileNotFoundError) as err:
                if self.bad_image == "strict":
                    raise
                if not self.replace_bad:  # the evaluation reports and counts it
                    return {"image": None, "error": str(err), "caption": caps[0], "captions": caps, "id": image_id}
                replaced.append(str(err))  # the training loader reports and counts it
        else:
            raise BadImageError(f"no readable image in {self.image_dir}: {len(self.entries)} files failed")
        if self.crop_size is not None:
            x = random_crop(x, self.crop_size, generator, self.small_images)
        draw = self.caption_choice == "random" and len(caps) > 1
        caption = caps[int(torch.randint(len(caps), (), generator=generator))] if draw else caps[0]
        item = {"image": x.contiguous(), "caption": caption, "captions": caps, "id": image_id}
        if replaced:
            item["bad_images"] = replaced
        return item
