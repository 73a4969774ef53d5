"""Codec models (CompressAI contract: forward / compress / decompress)."""

from taco_plus.models.taco import TACO

__all__ = ["TACO"]
