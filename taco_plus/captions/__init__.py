"""Caption sets: a versioned file format, sources for training and evaluation,
converters from the original caption files, statistics, and GPT-4o caption
regeneration (``taco_plus.captions.regenerate``, the only part that uses the network).

Importing this package is cheap: the CLIP tokenizer (statistics) and the openai SDK
(regeneration) load only when used.
"""

from taco_plus.captions.format import (FORMAT_VERSION, CaptionFormatError, CaptionSet, Provenance, build_caption_set,
                                       load_caption_set, save_caption_set)
from taco_plus.captions.sources import (CaptionSetSource, CaptionSource, CocoCaptionsSource, UnknownImageError,
                                        captions_fingerprint)

__all__ = ["FORMAT_VERSION", "CaptionFormatError", "CaptionSet", "CaptionSetSource", "CaptionSource",
           "CocoCaptionsSource", "Provenance", "UnknownImageError", "build_caption_set", "captions_fingerprint",
           "load_caption_set", "save_caption_set"]
