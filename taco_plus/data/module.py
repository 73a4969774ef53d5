"""The ``data`` config group: a folder of images + a caption source -> the trainer's loader (random
crops, seeded caption draws, resumable sharded order) and the evaluator's dataset (full images)."""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from taco_plus.captions.sources import CaptionSource
from taco_plus.data.dataset import CaptionedImageDataset, DatasetPairingError, ListedCaptions

logger = logging.getLogger(__name__)


class ResumableSampler(DistributedSampler):
    """A ``DistributedSampler`` (epoch ``e`` permuted from ``seed + e``, one shard per rank,
    the remainder dropped) that can start in the middle of an epoch: exact resume."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Selects epoch ``epoch``'s permutation and skips its first ``start`` samples."""
        super().set_epoch(epoch)
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"cannot start at sample {start} of an epoch of {self.num_samples}")
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


def collate_items(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stacks images (B, 3, H, W) of one size; captions, ids and unreadable files skipped stay lists."""
    sizes = {tuple(item["image"].shape) for item in items}
    if len(sizes) > 1:
        raise ValueError(f"images of one batch differ in size {sorted(sizes)}: use crops or batch size 1")
    return {"image": torch.stack([item["image"] for item in items]), "caption": [item["caption"] for item in items],
            "id": [item["id"] for item in items],
            "bad_images": [path for item in items for path in item.get("bad_images", ())]}


class TrainLoader(DataLoader):
    """A ``DataLoader`` that logs each unreadable image its batches skipped the first time
    it is met; :attr:`bad_images` maps each one's "path: reason" to the times it was skipped."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bad_images: dict[str, int] = {}

    def __iter__(self):
        for batch in super().__iter__():
            for reason in batch["bad_images"]:
                if reason not in self.bad_images:
                    logger.warning("%s: skipped, the next readable image takes its place (%d unreadable files so far)",
                                   reason, len(self.bad_images) + 1)
                self.bad_images[reason] = self.bad_images.get(reason, 0) + 1
            yield batch


class CaptionedImageData:
    """Images in ``image_dir`` captioned by ``captions``: the ``data`` group's keys (the dataset
    arguments are :class:`CaptionedImageDataset`'s). ``batch_size`` is per process; ``fid_patch_size`` is
    the evaluation's FID protocol for this set (256 px patches, or None: whole images).
    ``name_list`` + ``caption_list`` (TACO's published training lists, :class:`ListedCaptions`)
    replace ``captions`` and select the listed images."""

    def __init__(self, image_dir: os.PathLike | str, captions: CaptionSource, crop_size: int = 256,
                 small_images: str = "upscale", min_side: int = 0, batch_size: int = 8, num_workers: int = 4,
                 train_caption: str = "random", missing_caption: str = "skip", bad_caption: str = "skip",
                 missing_image: str = "warn", bad_image: str = "skip", image_list: Optional[os.PathLike | str] = None,
                 fid_patch_size: Optional[int] = 256, limit: Optional[int] = None, name_list: Optional[str] = None,
                 caption_list: Optional[str] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if (name_list is None) != (caption_list is None):
            raise DatasetPairingError("data.name_list and data.caption_list are TACO's two parallel lists: give both")
        self.lists = None if name_list is None else (name_list, caption_list)
        self.image_dir = Path(image_dir)
        self.captions = captions if name_list is None else ListedCaptions(name_list, caption_list)
        self.crop_size, self.small_images, self.min_side, self.limit = crop_size, small_images, min_side, limit
        self.batch_size, self.num_workers, self.train_caption = batch_size, num_workers, train_caption
        self.fid_patch_size = fid_patch_size
        self.policies = dict(missing_caption=missing_caption, bad_caption=bad_caption, missing_image=missing_image,
                             bad_image=bad_image, image_list=self.captions.ids() if self.lists else image_list)

    def describe(self) -> str:
        """Which images and captions training uses, for the run config."""
        images = (f"the {len(self.captions.ids())} images of {self.lists[0]}" if self.lists
                  else f"every image file in {self.image_dir}")
        size = f" with both sides >= {self.min_side} px" if self.min_side else ""
        caption = f"one caption each from {self.lists[1]}" if self.lists else (
            f"{'the first' if self.train_caption == 'first' else 'a random one'} of each image's captions in "
            f"{getattr(self.captions, 'path', self.captions)}; TACO's published lists (data.name_list, "
            "data.caption_list) not given")
        return f"{images}{size}; {caption}"

    def train_dataset(self, seed: int = 0) -> CaptionedImageDataset:
        """Random crops, a caption drawn per item per epoch; unreadable images replaced."""
        return CaptionedImageDataset(self.image_dir, self.captions, crop_size=self.crop_size, small_images=self.small_images,
                                     caption_choice=self.train_caption, min_side=self.min_side, seed=seed,
                                     limit=self.limit, replace_bad=True, **self.policies)

    def eval_dataset(self) -> CaptionedImageDataset:
        """Full images with their first caption (all in ``"captions"``); an unreadable one: ``"error"``."""
        return CaptionedImageDataset(self.image_dir, self.captions, crop_size=None, caption_choice="first",
                                     limit=self.limit, **self.policies)

    def train_loader(self, dataset: CaptionedImageDataset, seed: int = 0, rank: int = 0,
                     world_size: int = 1) -> tuple[TrainLoader, ResumableSampler]:
        """Loader over ``rank``'s shard; each epoch, call ``sampler.set_epoch(e, start)``, ``dataset.set_epoch(e)``."""
        sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        if sampler.num_samples < self.batch_size:
            raise ValueError(f"{len(dataset)} training images over {world_size} process(es) give "
                             f"{sampler.num_samples} per process, fewer than one batch of {self.batch_size}")
        # A private generator: creating an iterator must not consume the global RNG (exact resume).
        loader = TrainLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                             collate_fn=collate_items, drop_last=True, pin_memory=torch.cuda.is_available(),
                             generator=torch.Generator().manual_seed(seed))
        return loader, sampler

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_dir={str(self.image_dir)!r}, captions={self.captions!r})"


class SkimagePhotosData(CaptionedImageData):
    """scikit-image's bundled photographs, exported to ``image_dir`` when missing (the offline quickstart)."""

    def __init__(self, image_dir: os.PathLike | str, captions: CaptionSource, **kwargs) -> None:
        from taco_plus.captions.skimage_photos import SKIMAGE_PHOTO_IDS, export_skimage_photos

        image_dir = Path(image_dir)
        missing = [i for i in SKIMAGE_PHOTO_IDS if not (image_dir / i).is_file()]
        if missing:
            logger.info("exporting %d scikit-image photos to %s", len(missing), image_dir)
            export_skimage_photos(image_dir, missing)
        super().__init__(image_dir, captions, **kwargs)
