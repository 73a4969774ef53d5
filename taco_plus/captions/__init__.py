"""Caption sets (``captions/FORMAT.md``): the file format, sources, converters, statistics, and GPT-4o
regeneration (``regenerate``, the only part that uses the network); docs/captions.md."""

from taco_plus.captions.format import (FORMAT_VERSION, CaptionFormatError, CaptionSet, Provenance, build_caption_set,
                                       load_caption_set, save_caption_set)
from taco_plus.captions.sources import (CaptionSetSource, CaptionSource, CocoCaptionsSource, UnknownImageError,
                                        captions_fingerprint)

__all__ = ["FORMAT_VERSION", "CaptionFormatError", "CaptionSet", "CaptionSetSource", "CaptionSource",
           "CocoCaptionsSource", "Provenance", "UnknownImageError", "build_caption_set", "captions_fingerprint",
           "load_caption_set", "save_caption_set"]
