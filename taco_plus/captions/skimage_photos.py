"""Real photographs shipped with scikit-image, for the offline quickstart.

``skimage.data`` bundles a handful of RGB photographs inside the package, so they load
with no download. :func:`export_skimage_photos` writes them as PNG files whose names
are the image ids of ``taco_plus/captions/skimage_quickstart.json`` (one hand-written caption
per photo), giving the quickstart a real, captioned image set on any machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

# Shipped with the package, beside this file.
QUICKSTART_CAPTIONS = Path(__file__).with_name("skimage_quickstart.json")


# Image id -> ``skimage.data`` function: the RGB photographs that ship inside the
# scikit-image wheel (grayscale, synthetic and download-on-demand images are left out).
_SOURCES = {
    "astronaut.png": "astronaut",  # 512x512
    "chelsea.png": "chelsea",  # 451x300
    "coffee.png": "coffee",  # 600x400
    "rocket.png": "rocket",  # 640x427
    "hubble_deep_field.png": "hubble_deep_field",  # 1000x872
    "immunohistochemistry.png": "immunohistochemistry",  # 512x512
    "retina.png": "retina",  # 1411x1411
    "motorcycle_left.png": "stereo_motorcycle",  # 741x500, left image of the stereo pair
}
SKIMAGE_PHOTO_IDS = tuple(_SOURCES)


def export_skimage_photos(out_dir: os.PathLike | str, ids: Optional[Iterable[str]] = None) -> list[Path]:
    """Write scikit-image's bundled RGB photos as ``<out_dir>/<id>`` PNGs (overwriting: the
    content is deterministic); ``ids`` picks a subset of :data:`SKIMAGE_PHOTO_IDS`. Returns the paths."""
    from PIL import Image
    from skimage import data

    wanted = list(SKIMAGE_PHOTO_IDS if ids is None else ids)
    unknown = [i for i in wanted if i not in _SOURCES]
    if unknown:
        raise KeyError(f"not a bundled scikit-image photo: {unknown}; choose from {list(SKIMAGE_PHOTO_IDS)}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = []
    for image_id in wanted:
        pixels = getattr(data, _SOURCES[image_id])()
        pixels = pixels[0] if isinstance(pixels, tuple) else pixels  # stereo_motorcycle: (left, right, disparity)
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"{image_id}: expected an 8-bit RGB image, got {pixels.dtype} {pixels.shape}")
        Image.fromarray(pixels).save(Path(out_dir) / image_id)
        paths.append(Path(out_dir) / image_id)
    return paths
