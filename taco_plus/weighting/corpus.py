"""The caption corpus a weighting artefact is fitted on, and the caption-set fingerprint
(``CaptionSource.fingerprint``) that stamps the artefact."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from taco_plus.captions.format import read_json
from taco_plus.captions.sources import CaptionSetSource, CaptionSource, CocoCaptionsSource

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class CaptionCorpus:
    """Every caption of a caption file in source order (COCO: 5 per image; one TF-IDF
    document each), the file's caption-set fingerprint, and where it was read from."""

    captions: tuple[str, ...]
    fingerprint: str
    source: str


def open_caption_source(path: PathLike) -> CaptionSource:
    """Opens a caption file, telling a COCO captions file from a caption set by its keys."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"caption file not found: {path}")
    data = read_json(path)
    coco = isinstance(data, dict) and "annotations" in data and "images" in data
    return CocoCaptionsSource(path) if coco else CaptionSetSource(path)


def load_corpus(path: PathLike) -> CaptionCorpus:
    """Every caption of the caption file ``path`` (a caption set, a plain mapping or COCO)."""
    source = open_caption_source(path)
    captions = tuple(c for image_id in source.ids() for c in source.captions(image_id))
    if not captions:
        raise ValueError(f"{path} holds no captions")
    return CaptionCorpus(captions, source.fingerprint, str(path))


def caption_set_fingerprint(path: Optional[PathLike]) -> Optional[str]:
    """Fingerprint of the caption file ``path`` (what artefacts are checked against); None for None."""
    return None if path is None else open_caption_source(path).fingerprint
