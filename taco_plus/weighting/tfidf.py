"""TF-IDF token weighting (ablation 2; Sparck Jones, 1972): distinctive caption words weigh more, by statistics
fitted once on the training caption set, saved as a fingerprinted artefact (docs/weighting.md, "tfidf")."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from torch import Tensor

from taco_plus.weighting.artefacts import ArtefactError, check_fingerprint, load_artefact, save_artefact
from taco_plus.weighting.base import TokenWeighting, WordWeight
from taco_plus.weighting.corpus import CaptionCorpus, PathLike, caption_set_fingerprint

TOKEN_PATTERN = r"[^\W_]+"  # runs of letters and digits: hyphens and apostrophes split words
_TERM = re.compile(TOKEN_PATTERN)
# scikit-learn's English stop words minus words naming visible things, plus contraction fragments.
VISUAL_WORDS = frozenset({"back", "bottom", "empty", "fire", "front", "full", "side", "thick", "thin", "top"})
CONTRACTION_PARTS = frozenset(
    "s t d m ll re ve don doesn didn isn aren wasn weren won wouldn couldn shouldn hasn haven hadn ain".split()
)
STOP_WORDS = frozenset((ENGLISH_STOP_WORDS - VISUAL_WORDS) | CONTRACTION_PARTS)


def caption_terms(caption: str) -> list[tuple[str, int, int]]:
    """Every term of ``caption`` (stop words included), lower-cased, with its character span."""
    return [(m.group().lower(), m.start(), m.end()) for m in _TERM.finditer(caption)]


@dataclass
class TfidfStatistics:
    """Fitted TF-IDF statistics of a caption set: term -> smooth ``idf``, the ``num_documents`` (captions)
    fitted on, the set's ``fingerprint`` and ``source``, and the ``stop_words`` used."""

    idf: dict[str, float]
    num_documents: int
    fingerprint: str
    source: str = ""
    stop_words: frozenset[str] = STOP_WORDS

    @property
    def unseen_idf(self) -> float:
        """Smooth idf of a term in no fitted caption, ``ln(1 + n) + 1``: the largest possible."""
        return math.log(1 + self.num_documents) + 1.0

    @classmethod
    def fit(cls, corpus: CaptionCorpus) -> "TfidfStatistics":
        """Fits idf on every caption of ``corpus`` (one caption = one document)."""

        vectorizer = TfidfVectorizer(analyzer=lambda c: [t for t, _, _ in caption_terms(c) if t not in STOP_WORDS],
                                     norm=None, smooth_idf=True)
        try:
            vectorizer.fit(corpus.captions)
        except ValueError as err:  # "empty vocabulary": only stop words
            raise ValueError(f"cannot fit tf-idf on {corpus.source}: {err}") from None
        idf = {t: float(vectorizer.idf_[i]) for t, i in sorted(vectorizer.vocabulary_.items())}
        return cls(idf, len(corpus.captions), corpus.fingerprint, corpus.source)

    def save(self, path: PathLike) -> None:
        """Writes the fingerprinted JSON artefact."""
        import sklearn

        caption_set = dict(fingerprint=self.fingerprint, source=self.source, num_captions=self.num_documents)
        payload = dict(token_pattern=TOKEN_PATTERN, stop_words=sorted(self.stop_words), smooth_idf=True,
                       num_documents=self.num_documents, idf=self.idf)
        save_artefact(path, "tfidf", caption_set, payload, **{"scikit-learn": sklearn.__version__})

    @classmethod
    def load(cls, path: PathLike, expected_fingerprint: Optional[str] = None,
             allow_mismatch: bool = False) -> "TfidfStatistics":
        """Reads an artefact written by :meth:`save`, checking its caption-set fingerprint."""
        document = load_artefact(path, "tfidf", expected_fingerprint, allow_mismatch)
        p, meta = document["payload"], document["caption_set"]
        if p.get("token_pattern") != TOKEN_PATTERN or not p.get("smooth_idf"):
            raise ArtefactError(f"{path} was fitted with other term settings; refit it")
        try:
            idf = {str(t): float(v) for t, v in p["idf"].items()}
            stats = cls(idf, int(p["num_documents"]), meta["fingerprint"], str(meta.get("source", "")),
                        frozenset(p["stop_words"]))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ArtefactError(f"{path}: malformed tf-idf payload ({err})") from None
        if stats.num_documents < 1 or not all(v >= 1.0 for v in idf.values()):
            raise ArtefactError(f"{path}: tf-idf payload has impossible values")
        return stats


class TfidfWeighting(TokenWeighting):
    """Weights caption words by their TF-IDF in the training caption set (``artefact``: ``taco-plus weights fit``'s
    file or :class:`TfidfStatistics`); ``max_weight`` for each caption's most distinctive word."""

    def __init__(self, artefact: PathLike | TfidfStatistics, max_weight: float = 1.5,
                 caption_set: Optional[PathLike] = None, allow_fingerprint_mismatch: bool = False) -> None:
        super().__init__(max_weight)
        self.allow_fingerprint_mismatch = allow_fingerprint_mismatch
        self.stats = artefact if isinstance(artefact, TfidfStatistics) else TfidfStatistics.load(artefact)
        self.check_caption_set(caption_set_fingerprint(caption_set))

    def check_caption_set(self, fingerprint: Optional[str]) -> None:
        check_fingerprint("tfidf", self.stats.fingerprint, fingerprint, self.allow_fingerprint_mismatch,
                          self.stats.source)

    def word_weights(self, captions: Sequence[str]) -> list[list[WordWeight]]:
        return [self._caption_words(c) for c in captions]

    def _caption_words(self, caption: str) -> list[WordWeight]:
        terms, stop = caption_terms(caption), self.stats.stop_words
        tf = Counter(t for t, _, _ in terms if t not in stop)
        idf = {t: self.stats.idf.get(t, self.stats.unseen_idf) for t in tf}
        scores = {t: tf[t] * idf[t] for t in tf}
        top = max(scores.values(), default=0.0)
        words = []
        for term, start, end in terms:
            if term in stop:
                words.append(WordWeight(start, end, 1.0, "stop word"))
                continue
            share = scores[term] / top
            unseen = "" if term in self.stats.idf else ", unseen word"
            reason = f"tf-idf {scores[term]:.2f} ({share:.0%} of max; idf {idf[term]:.2f}{unseen})"
            words.append(WordWeight(start, end, 1.0 + (self.max_weight - 1.0) * share, reason))
        return words


class TfidfEmbeddingScale(TfidfWeighting):
    """The naive control: CLIP token features multiplied by their TF-IDF weights before the model,
    which gets no weights (nearly inert: docs/weighting.md, "Where the weights act")."""

    def model_inputs(self, text: Any, captions: Sequence[str]) -> tuple[Tensor, Tensor, None]:
        w = self.weights(text.layouts, captions)  # (B, L)
        return text.tokens * w.unsqueeze(-1).to(text.tokens.dtype), text.mask, None
