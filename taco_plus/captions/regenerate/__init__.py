"""Caption regeneration with GPT-4o or any OpenAI-compatible vision model: the only part of
taco-plus that talks to the network. ``taco-plus captions regenerate`` is its command line."""

from taco_plus.captions.regenerate.config import RegenerateConfig, RegenerateError
from taco_plus.captions.regenerate.run import RegenerateReport, regenerate

__all__ = ["RegenerateConfig", "RegenerateError", "RegenerateReport", "regenerate"]
