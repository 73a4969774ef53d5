"""Images as sent to a vision model: downscaled, JPEG-encoded, as a base64 data URL."""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class EncodedImage:
    """An image ready for a chat-completions ``image_url`` part.

    Args:
        data_url: ``data:image/jpeg;base64,...``.
        width, height: size of the encoded (downscaled) image, which is what the
            server sees and bills for.
    """

    data_url: str
    width: int
    height: int


def encode_image(path: os.PathLike | str, max_side: int, jpeg_quality: int = 90) -> EncodedImage:
    """Load an image, apply its EXIF orientation, downscale to ``max_side``, JPEG-encode.

    Images already within ``max_side`` keep their size (the model gains nothing from
    upscaling, and billing grows with size).
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        img = img.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # keeps the aspect ratio
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=jpeg_quality)
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    return EncodedImage(f"data:image/jpeg;base64,{b64}", img.width, img.height)
