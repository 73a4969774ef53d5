"""Per-token text weights for the TACO adapter (config group ``weighting``; docs/weighting.md):
captions -> weights (B, L) in ``[1, max_weight]`` in the ``taco_plus.text`` token layout."""

from taco_plus.weighting.alignment import Piece, align
from taco_plus.weighting.artefacts import ArtefactError, FingerprintMismatchError
from taco_plus.weighting.base import TokenRow, TokenWeighting, WordWeight
from taco_plus.weighting.combined import NoWeighting, TfidfNerWeighting
from taco_plus.weighting.corpus import CaptionCorpus, load_corpus
from taco_plus.weighting.ner import NerWeighting, PipelineNotInstalledError
from taco_plus.weighting.tfidf import TfidfEmbeddingScale, TfidfStatistics, TfidfWeighting

__all__ = ["ArtefactError", "CaptionCorpus", "FingerprintMismatchError", "NerWeighting", "NoWeighting", "Piece",
           "PipelineNotInstalledError", "TfidfEmbeddingScale", "TfidfNerWeighting", "TfidfStatistics", "TfidfWeighting",
           "TokenRow", "TokenWeighting", "WordWeight", "align", "load_corpus"]
