"""TF-IDF and NER combined, and the unweighted baseline.

Combination rule (``tfidf_ner``): ``w = min(max_weight, max(w_tfidf, w_ner))``. The
maximum, not a product: an entity keeps its full weight however common its words are
("Two" is frequent in COCO yet a CARDINAL), a distinctive common noun keeps its
tf-idf weight ("retriever" is no entity), and no token exceeds ``max_weight``.
Both sources score spans of the original caption; the base class already takes the
largest weight over the spans a BPE piece overlaps, so combining is concatenating
the two span lists.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from taco_plus.weighting.base import TokenWeighting, WordWeight, as_list
from taco_plus.weighting.ner import DEFAULT_PIPELINE, NerWeighting
from taco_plus.weighting.tfidf import TfidfStatistics, TfidfWeighting


class NoWeighting(TokenWeighting):
    """Every token weighs exactly 1.0: the unweighted model.

    ``log(1) = 0``, so the attention bias is zero and the Extractor's residual
    scale is 1: the model's output equals the one without ``text_weights`` (tested).

    Args:
        max_weight: kept for a uniform config; unused.
    """

    name = "none"

    def __init__(self, max_weight: float = 1.0) -> None:
        super().__init__(max(float(max_weight), 1.0))

    def word_weights(self, captions: Sequence[str]) -> list[list[WordWeight]]:
        return [[] for _ in captions]

    def weights(self, layouts: Sequence[object], captions: Sequence[str]) -> Tensor:
        if len(layouts) != len(captions):
            raise ValueError(f"{len(layouts)} layouts for {len(captions)} captions")
        length = max((len(as_list(layout.ids)) for layout in layouts), default=0)
        return torch.ones(len(layouts), length, dtype=torch.float32)


class TfidfNerWeighting(TokenWeighting):
    """TF-IDF weights raised to the entity weight inside named entities.

    Args:
        tfidf_artefact: TF-IDF artefact path (or :class:`TfidfStatistics`).
        pipeline: spaCy pipeline name.
        max_weight: upper bound of every weight (shared by both parts).
        entity_weight / label_weights: as for :class:`NerWeighting`.
        ner_cache: NER cache artefact path (optional).
        caption_set: caption file in use; checked against both artefacts.
        allow_fingerprint_mismatch: accept artefacts fitted on another caption set.
    """

    name = "tfidf_ner"

    def __init__(
        self,
        tfidf_artefact: Union[str, "os.PathLike[str]", TfidfStatistics],
        pipeline: str = DEFAULT_PIPELINE,
        max_weight: float = 1.5,
        entity_weight: Optional[float] = None,
        label_weights: Optional[Mapping[str, float]] = None,
        ner_cache: Optional[Union[str, "os.PathLike[str]"]] = None,
        caption_set: Optional[Union[str, "os.PathLike[str]"]] = None,
        allow_fingerprint_mismatch: bool = False,
    ) -> None:
        super().__init__(max_weight)
        self.tfidf = TfidfWeighting(tfidf_artefact, max_weight, caption_set, allow_fingerprint_mismatch)
        self.ner = NerWeighting(
            pipeline, max_weight, entity_weight, label_weights, ner_cache, caption_set,
            allow_fingerprint_mismatch,
        )

    def check_caption_set(self, fingerprint: Optional[str]) -> None:
        self.tfidf.check_caption_set(fingerprint)
        self.ner.check_caption_set(fingerprint)

    def word_weights(self, captions: Sequence[str]) -> list[list[WordWeight]]:
        tfidf, ner = self.tfidf.word_weights(captions), self.ner.word_weights(captions)
        return [t + n for t, n in zip(tfidf, ner)]

    def __repr__(self) -> str:
        return f"TfidfNerWeighting({self.tfidf!r}, {self.ner!r})"
