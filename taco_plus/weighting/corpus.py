"""The caption corpus a weighting artefact is fitted on.

A corpus is every caption of a caption source (``taco_plus.captions.sources``): a
taco-plus caption set, a plain ``{"image": "caption" | ["captions"]}`` JSON mapping,
or an official MS-COCO captions file. Each caption is one document for TF-IDF, and
the source's sha256 fingerprint stamps the fitted artefact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from taco_plus.captions.format import read_json
from taco_plus.captions.sources import CaptionSetSource, CaptionSource, CocoCaptionsSource


@dataclass(frozen=True)
class CaptionCorpus:
    """All captions of one caption source, in source order.

    Args:
        captions: every caption of every image (COCO: 5 per image).
        fingerprint: the source's fingerprint (``CaptionSource.fingerprint``).
        source: where it was read from.
    """

    captions: tuple[str, ...]
    fingerprint: str
    source: str

    @classmethod
    def from_source(cls, source: CaptionSource, origin: str = "") -> "CaptionCorpus":
        """Collects the captions of an already opened caption source."""
        captions = tuple(c for image_id in source.ids() for c in source.captions(image_id))
        return cls(captions, source.fingerprint, origin or getattr(source, "name", ""))


def open_caption_source(path: os.PathLike | str) -> CaptionSource:
    """Opens a caption file, telling a COCO captions file from a caption set by its keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption file not found: {path}")
    data = read_json(path)
    if isinstance(data, dict) and "annotations" in data and "images" in data:
        return CocoCaptionsSource(path)
    return CaptionSetSource(path)


def load_corpus(path: os.PathLike | str) -> CaptionCorpus:
    """Every caption of the caption file ``path`` with the file's caption-set fingerprint."""
    corpus = CaptionCorpus.from_source(open_caption_source(path), str(path))
    if not corpus.captions:
        raise ValueError(f"{path} holds no captions")
    return corpus


def corpus_fingerprint(path: os.PathLike | str) -> str:
    """Fingerprint of the caption file ``path`` (what artefacts are checked against)."""
    return open_caption_source(path).fingerprint
