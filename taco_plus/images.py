"""Reading, writing and padding images for the codec: every input becomes 8-bit RGB by the rule of
docs/coding.md; the codec zero-pads bottom/right to a multiple of 64 and crops back."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from taco_plus.atomic import atomic_write
from taco_plus.coding.bitstream import MAX_SIDE


class ImageReadError(ValueError):
    """An input file that cannot be read as an image."""


class ImageReadWarning(UserWarning):
    """Part of an image file is not read (frames after the first)."""


def to_rgb8(img: Image.Image) -> np.ndarray:
    """A PIL image of any mode as a (H, W, 3) uint8 array (docs/coding.md)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(img).astype(np.float64 if img.mode == "F" else np.int64)
        if img.mode == "F":
            gray = values.clip(0, 255).round().astype(np.uint8)
        elif img.mode == "I" and values.max(initial=0) <= 255:
            gray = values.clip(0, 255).astype(np.uint8)  # 8-bit data stored as int32
        else:
            gray = (values.clip(0, 65535) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):  # composited over white
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img.convert("RGBA"))
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image(path: str | os.PathLike, max_pixels: Optional[int] = None) -> Tensor:
    """Reads an image file as a float32 tensor (3, H, W) in [0, 1]; with ``max_pixels``, an image a ``.tacoz``
    file cannot hold is refused from its header, before its pixels are decoded."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if not path.is_file():  # reading a FIFO or /dev/zero would block or never end
        kind = "a folder" if path.is_dir() else "a FIFO" if path.is_fifo() else "a device or socket"
        raise ImageReadError(f"cannot read image {path}: it is {kind}, not a regular file")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if max_pixels is not None and (max(w, h) > MAX_SIDE or w * h > max_pixels):
                raise ImageReadError(
                    f"image {path} is {h}x{w} = {h * w:,} pixels: a .tacoz file holds sides up to {MAX_SIDE:,} "
                    f"and decoding refuses more than {max_pixels:,} pixels (--max-pixels N); crop or downscale it")
            img.load()
            array = to_rgb8(img)
            frames = getattr(img, "n_frames", 1)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err
    if frames > 1:
        warnings.warn(f"{path} has {frames} frames: only the first is read; the others are not coded",
                      ImageReadWarning, stacklevel=2)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def to_uint8(x: Tensor) -> Tensor:
    """[0, 1] float (…, 3, H, W) -> uint8, rounding to the nearest 8-bit level."""
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8)


def encode_png(x: Tensor) -> bytes:
    """A (3, H, W) or (1, 3, H, W) [0, 1] tensor as the bytes of an 8-bit RGB PNG."""
    array = to_uint8(x.reshape(x.shape[-3:])).permute(1, 2, 0).cpu().numpy()  # (H, W, 3); one image
    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(x: Tensor, path: str | os.PathLike) -> None:
    """Writes :func:`encode_png` of ``x`` to ``path`` atomically."""
    atomic_write(path, encode_png(x))


def pad_to_multiple(x: Tensor, multiple: int = 64) -> Tensor:
    """Zero-pads (B, C, H, W) at the bottom/right so H and W are multiples of ``multiple``."""
    pad_h, pad_w = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    return F.pad(x, (0, pad_w, 0, pad_h), mode="constant", value=0.0) if pad_h or pad_w else x


def crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Crops (…, H', W') back to the top-left ``size`` = (H, W)."""
    return x[..., : size[0], : size[1]]
