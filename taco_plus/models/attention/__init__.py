"""Cross-attention implementations for the TACO adapter (config group ``attention``)."""

from taco_plus.models.attention.base import AttentionFactory, CrossAttention, context_bias
from taco_plus.models.attention.full import FullCrossAttention
from taco_plus.models.attention.pooled import PooledLinformerCrossAttention
from taco_plus.models.attention.summary import CaptionSummary

__all__ = [
    "AttentionFactory",
    "CaptionSummary",
    "CrossAttention",
    "FullCrossAttention",
    "PooledLinformerCrossAttention",
    "context_bias",
]
