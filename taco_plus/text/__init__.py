"""CLIP text features for TACO's text adapter (docs/text.md): :func:`load_clip`, :func:`tokenize` (the token
layout), :class:`ClipTextEncoder` (per-token features and mask), :func:`tiny_clip` (untrained, for tests)."""

from taco_plus.text.clip_loading import (ClipWeightsUnavailableError, clip_source, load_clip, register_model_configs,
                                         tiny_clip)
from taco_plus.text.encoder import ClipEmbedding, ClipTextEncoder, TextFeatures, text_inputs
from taco_plus.text.tokenizer import TokenizedCaption, bpe_ids, bpe_words, tokenize

__all__ = ["ClipEmbedding", "ClipTextEncoder", "ClipWeightsUnavailableError", "TextFeatures", "TokenizedCaption", "bpe_ids",
           "bpe_words", "clip_source", "load_clip", "register_model_configs", "text_inputs", "tiny_clip", "tokenize"]
