"""CLIP text features for TACO's text adapter.

* :func:`load_clip` -- frozen open_clip models from a tag, a file, a folder or a seed
  (:mod:`taco_plus.text.clip_loading`; shared with the joint CLIP loss).
* :func:`tokenize` / :func:`bpe_ids` -- the token layout contract
  (:mod:`taco_plus.text.tokenizer`).
* :class:`ClipTextEncoder` -- per-token features ``(B, L, width)`` and mask ``(B, L)``
  (:mod:`taco_plus.text.encoder`).
* :func:`tiny_clip` -- the untrained ``taco-tiny-clip`` model for tests and demos.
"""

from taco_plus.text.clip_loading import (
    ClipSource,
    ClipWeightsUnavailableError,
    clip_source,
    load_clip,
    register_model_configs,
)
from taco_plus.text.encoder import ClipTextEncoder, TextFeatures
from taco_plus.text.tiny import TINY_CLIP_NAME, tiny_clip
from taco_plus.text.tokenizer import (
    CHUNK_PIECES,
    EOT_ID,
    SOT_ID,
    TokenizedCaption,
    bpe_ids,
    bpe_words,
    tokenize,
)

__all__ = [
    "CHUNK_PIECES",
    "EOT_ID",
    "SOT_ID",
    "TINY_CLIP_NAME",
    "ClipSource",
    "ClipTextEncoder",
    "ClipWeightsUnavailableError",
    "TextFeatures",
    "TokenizedCaption",
    "bpe_ids",
    "bpe_words",
    "clip_source",
    "load_clip",
    "register_model_configs",
    "tiny_clip",
    "tokenize",
]
