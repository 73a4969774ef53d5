"""The ``data`` config group: a folder of images + a caption source -> loaders.

One object per option (``_target_``) holds everything about the data of a run; the
trainer asks it for a training loader (random crops, seeded caption draws, resumable
sharded order) and the evaluator for an evaluation dataset (full images, first
caption; padding to a multiple of 64 is the codec's job).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from taco_plus.captions.sources import CaptionSource
from taco_plus.data.collate import collate_items
from taco_plus.data.dataset import CaptionedImageDataset
from taco_plus.data.sampler import ResumableSampler

logger = logging.getLogger(__name__)


class TrainLoader(DataLoader):
    """A ``DataLoader`` that reports, in the training process, each unreadable image its
    batches skipped (``batch["bad_images"]``) the first time it is met, and counts
    them: :attr:`bad_images` maps each one's "path: reason" to the times it was skipped."""

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
    """Images in ``image_dir`` captioned by ``captions``.

    Args:
        image_dir: image folder; ids are paths relative to it.
        captions: a caption source (the ``captions`` config group).
        crop_size: side of the random square training crops (TACO: 256).
        small_images: ``"upscale"`` or ``"reflect"`` for images smaller than the crop.
        min_side: drop training images whose shorter side is below this (TACO: 256).
        batch_size: training batch size *per process* (DDP multiplies it by the world size).
        num_workers: DataLoader worker processes.
        train_caption: ``"random"`` (one caption drawn per step) or ``"first"``.
        missing_caption / bad_caption / missing_image / bad_image: pairing and
            unreadable-file policies, see :class:`~taco_plus.data.dataset.CaptionedImageDataset`.
        image_list: JSON list of the image names to use (MS-COCO 30k); default: all files.
        fid_patch_size: the FID protocol of this set for the evaluation: 256 px patches
            (Kodak, CLIC, as learned-compression papers do) or None (whole images, COCO-30k).
        limit: keep only the first ``limit`` images (smoke runs).
    """

    def __init__(
        self,
        image_dir: os.PathLike | str,
        captions: CaptionSource,
        crop_size: int = 256,
        small_images: str = "upscale",
        min_side: int = 0,
        batch_size: int = 8,
        num_workers: int = 4,
        train_caption: str = "random",
        missing_caption: str = "skip",
        bad_caption: str = "skip",
        missing_image: str = "warn",
        bad_image: str = "skip",
        image_list: Optional[os.PathLike | str] = None,
        fid_patch_size: Optional[int] = 256,
        limit: Optional[int] = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.image_dir = Path(image_dir)
        self.captions = captions
        self.crop_size = crop_size
        self.small_images = small_images
        self.min_side = min_side
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_caption = train_caption
        self.policies = dict(missing_caption=missing_caption, bad_caption=bad_caption, missing_image=missing_image,
                             bad_image=bad_image, image_list=image_list)
        self.fid_patch_size = fid_patch_size
        self.limit = limit

    def train_dataset(self, seed: int = 0) -> CaptionedImageDataset:
        """Random crops, a caption drawn per item per epoch (seeded); an unreadable
        image's slot is filled by the next readable one (``bad_image="skip"``)."""
        return CaptionedImageDataset(
            self.image_dir,
            self.captions,
            crop_size=self.crop_size,
            small_images=self.small_images,
            caption_choice=self.train_caption,
            min_side=self.min_side,
            seed=seed,
            limit=self.limit,
            replace_bad=True,
            **self.policies,
        )

    def eval_dataset(self) -> CaptionedImageDataset:
        """Full images with their first caption (and all of them, ``"captions"``);
        an unreadable image gives an item with ``"error"`` (``bad_image="skip"``)."""
        return CaptionedImageDataset(
            self.image_dir, self.captions, crop_size=None, caption_choice="first", limit=self.limit, **self.policies
        )

    def train_loader(
        self, dataset: CaptionedImageDataset, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> tuple[TrainLoader, ResumableSampler]:
        """Loader over ``rank``'s shard; call ``sampler.set_epoch(e, start)`` (and
        ``dataset.set_epoch(e)``) before iterating each epoch."""
        sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        if sampler.num_samples < self.batch_size:
            raise ValueError(
                f"{len(dataset)} training images over {world_size} process(es) give "
                f"{sampler.num_samples} per process, fewer than one batch of {self.batch_size}"
            )
        loader = TrainLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_items,
            drop_last=True,
            pin_memory=torch.cuda.is_available(),
            # A private generator: creating an iterator must not consume the global RNG,
            # or a resumed run would draw different training noise (exact resume).
            generator=torch.Generator().manual_seed(seed),
        )
        return loader, sampler

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_dir={str(self.image_dir)!r}, captions={self.captions!r})"


class SkimagePhotosData(CaptionedImageData):
    """scikit-image's bundled photographs, exported to ``image_dir`` when missing.

    For the offline quickstart: real photos on any machine, no download. Captions
    come from the ``captions`` group (``skimage_quickstart``). Arguments as
    :class:`CaptionedImageData`.
    """

    def __init__(self, image_dir: os.PathLike | str, captions: CaptionSource, **kwargs) -> None:
        from taco_plus.captions.skimage_photos import SKIMAGE_PHOTO_IDS, export_skimage_photos

        image_dir = Path(image_dir)
        missing = [i for i in SKIMAGE_PHOTO_IDS if not (image_dir / i).is_file()]
        if missing:
            logger.info("exporting %d scikit-image photos to %s", len(missing), image_dir)
            export_skimage_photos(image_dir, missing)
        super().__init__(image_dir, captions, **kwargs)
