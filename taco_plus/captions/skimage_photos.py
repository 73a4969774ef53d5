"""Real photographs bundled with scikit-image, for the offline quickstart: exported as PNGs
named after the image ids of ``skimage_quickstart.json`` (one hand-written caption each)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

QUICKSTART_CAPTIONS = Path(__file__).with_name("skimage_quickstart.json")

# Image id -> ``skimage.data`` function: the RGB photographs inside the scikit-image wheel, 451x300 to 1411x1411
# (motorcycle_left: the left image of the stereo pair).
_SOURCES = {"astronaut.png": "astronaut", "chelsea.png": "chelsea", "coffee.png": "coffee", "rocket.png": "rocket",
            "hubble_deep_field.png": "hubble_deep_field", "immunohistochemistry.png": "immunohistochemistry",
            "retina.png": "retina", "motorcycle_left.png": "stereo_motorcycle"}
SKIMAGE_PHOTO_IDS = tuple(_SOURCES)


def export_skimage_photos(out_dir: os.PathLike | str, ids: Optional[Iterable[str]] = None) -> list[Path]:
    """Write the photos (all, or ``ids``) as ``<out_dir>/<id>`` PNGs; returns the paths."""
    from PIL import Image
    from skimage import data

    wanted = list(SKIMAGE_PHOTO_IDS if ids is None else ids)
    unknown = [i for i in wanted if i not in _SOURCES]
    if unknown:
        raise KeyError(f"not a bundled scikit-image photo: {unknown}; choose from {list(SKIMAGE_PHOTO_IDS)}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = [Path(out_dir) / image_id for image_id in wanted]
    for image_id, path in zip(wanted, paths):
        pixels = getattr(data, _SOURCES[image_id])()
        pixels = pixels[0] if isinstance(pixels, tuple) else pixels  # stereo_motorcycle: (left, right, disparity)
        Image.fromarray(pixels).save(path, compress_level=1)  # fast; the pixels are what matters
    return paths
