"""TF-IDF and NER combined, and the unweighted baseline."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor

from taco_plus.weighting.base import TokenWeighting, WordWeight
from taco_plus.weighting.corpus import PathLike
from taco_plus.weighting.ner import PIPELINE, NerWeighting
from taco_plus.weighting.tfidf import TfidfStatistics, TfidfWeighting


class NoWeighting(TokenWeighting):
    """Every token weighs exactly 1.0 (``log 1 = 0``: the unweighted model); ``max_weight`` unused."""

    def __init__(self, max_weight: float = 1.0) -> None:
        super().__init__(max(float(max_weight), 1.0))

    def word_weights(self, captions: Sequence[str]) -> list[list[WordWeight]]:
        return [[] for _ in captions]

    def weights(self, layouts: Sequence[Any], captions: Sequence[str]) -> Tensor:  # nothing to align
        return torch.ones(len(layouts), max((len(layout.ids) for layout in layouts), default=0))


class TfidfNerWeighting(TokenWeighting):
    """``w = min(max_weight, max(w_tfidf, w_ner))`` (docs/weighting.md, "tfidf_ner"): the parts' scored spans
    concatenated; arguments as :class:`TfidfWeighting`'s and :class:`NerWeighting`'s."""

    def __init__(self, tfidf_artefact: PathLike | TfidfStatistics, pipeline: str = PIPELINE, max_weight: float = 1.5,
                 entity_weight: Optional[float] = None, label_weights: Optional[Mapping[str, float]] = None,
                 ner_cache: Optional[PathLike] = None, caption_set: Optional[PathLike] = None,
                 allow_fingerprint_mismatch: bool = False) -> None:
        super().__init__(max_weight)
        self.tfidf = TfidfWeighting(tfidf_artefact, max_weight, caption_set, allow_fingerprint_mismatch)
        self.ner = NerWeighting(pipeline, max_weight, entity_weight, label_weights, ner_cache, caption_set,
                                allow_fingerprint_mismatch)

    def check_caption_set(self, fingerprint: Optional[str]) -> None:
        self.tfidf.check_caption_set(fingerprint)
        self.ner.check_caption_set(fingerprint)

    def word_weights(self, captions: Sequence[str]) -> list[list[WordWeight]]:
        return [t + n for t, n in zip(self.tfidf.word_weights(captions), self.ner.word_weights(captions))]
