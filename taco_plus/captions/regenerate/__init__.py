"""Caption regeneration with GPT-4o (or any OpenAI-compatible vision model): the only
part of taco-plus that talks to the network.

``regenerate(RegenerateConfig(...))`` captions a folder of images (online: concurrent
chat completions; batch: the Batch API), resumably through an fsync'd journal, and
writes a versioned caption set. ``taco-plus captions regenerate`` is its command line.
"""

from taco_plus.captions.regenerate.config import RegenerateConfig
from taco_plus.captions.regenerate.run import RegenerateError, RegenerateReport, regenerate

__all__ = ["RegenerateConfig", "RegenerateError", "RegenerateReport", "regenerate"]
