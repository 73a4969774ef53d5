"""Captioned image data: datasets, crops, resumable sampling, batching.

The ``data`` config group instantiates :class:`CaptionedImageData` (or
:class:`SkimagePhotosData`) with a caption source from the ``captions`` group.
"""

from taco_plus.data.collate import collate_items
from taco_plus.data.dataset import (
    BadImageError,
    CaptionedImageDataset,
    DatasetPairingError,
    PairingReport,
    list_images,
    read_image_list,
)
from taco_plus.data.module import CaptionedImageData, SkimagePhotosData
from taco_plus.data.sampler import ResumableSampler
from taco_plus.data.transforms import fit_to_crop, random_crop

__all__ = [
    "BadImageError",
    "CaptionedImageData",
    "CaptionedImageDataset",
    "DatasetPairingError",
    "PairingReport",
    "ResumableSampler",
    "SkimagePhotosData",
    "collate_items",
    "fit_to_crop",
    "list_images",
    "random_crop",
    "read_image_list",
]
