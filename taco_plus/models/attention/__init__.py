"""Cross-attention implementations for the TACO adapter (config group ``attention``)."""

from taco_plus.models.attention.base import AttentionFactory, CrossAttention, context_bias
from taco_plus.models.attention.full import FullCrossAttention

__all__ = ["AttentionFactory", "CrossAttention", "FullCrossAttention", "context_bias"]
