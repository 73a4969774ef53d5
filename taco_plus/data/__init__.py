"""Captioned image data: datasets, crops, resumable sampling, batching.

The ``data`` config group instantiates :class:`CaptionedImageData` (or
:class:`SkimagePhotosData`) with a caption source from the ``captions`` group.
"""

from taco_plus.data.collate import collate_items
from taco_plus.data.dataset import CaptionedImageDataset, DatasetPairingError, PairingReport, list_images
from taco_plus.data.module import CaptionedImageData, SkimagePhotosData
from taco_plus.data.sampler import ResumableSampler
from taco_plus.data.transforms import fit_to_crop, random_crop

__all__ = [
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
]
