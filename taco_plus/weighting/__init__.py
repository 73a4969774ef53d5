"""Per-token text weights for the TACO adapter (config group ``weighting``).

Options: ``none`` (:class:`NoWeighting`), ``tfidf`` (:class:`TfidfWeighting`),
``ner`` (:class:`NerWeighting`), ``tfidf_ner`` (:class:`TfidfNerWeighting`), and the
naive control ``tfidf_embedding_scale`` (:class:`TfidfEmbeddingScale`). Each maps
captions to weights (B, L) in ``[1, max_weight]`` aligned with the ``taco_plus.text``
token layout; ``model_inputs`` gives ``(tokens, mask, weights)`` for ``model(x, ...)``.
"""

from taco_plus.weighting.alignment import Piece, align
from taco_plus.weighting.artefacts import ArtefactError, FingerprintMismatchError
from taco_plus.weighting.base import TokenRow, TokenWeighting, WordWeight
from taco_plus.weighting.combined import NoWeighting, TfidfNerWeighting
from taco_plus.weighting.corpus import CaptionCorpus, load_corpus
from taco_plus.weighting.ner import NerWeighting, PipelineNotInstalledError
from taco_plus.weighting.tfidf import TfidfEmbeddingScale, TfidfStatistics, TfidfWeighting

__all__ = [
    "ArtefactError",
    "CaptionCorpus",
    "FingerprintMismatchError",
    "NerWeighting",
    "NoWeighting",
    "Piece",
    "PipelineNotInstalledError",
    "TfidfEmbeddingScale",
    "TfidfNerWeighting",
    "TfidfStatistics",
    "TfidfWeighting",
    "TokenRow",
    "TokenWeighting",
    "WordWeight",
    "align",
    "load_corpus",
]
