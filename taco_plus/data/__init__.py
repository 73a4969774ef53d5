"""Captioned image data: the ``data`` config group instantiates :class:`CaptionedImageData`
(or :class:`SkimagePhotosData`) with a caption source from the ``captions`` group."""

from taco_plus.data.dataset import (BadImageError, CaptionedImageDataset, DatasetPairingError, fit_to_crop, random_crop,
                                    read_image_list)
from taco_plus.data.module import CaptionedImageData, ResumableSampler, SkimagePhotosData, collate_items

__all__ = ["BadImageError", "CaptionedImageData", "CaptionedImageDataset", "DatasetPairingError", "ResumableSampler",
           "SkimagePhotosData", "collate_items", "fit_to_crop", "random_crop", "read_image_list"]
