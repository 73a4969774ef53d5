"""The caption corpus a weighting artefact is fitted on, and the caption-set fingerprint
(``CaptionSource.fingerprint``) that stamps the artefact."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

from taco_plus.captions.sources import open_caption_source

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class CaptionCorpus:
    """Every caption of a caption file in source order (one TF-IDF document each), its fingerprint and source."""

    captions: tuple[str, ...]
    fingerprint: str
    source: str


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
