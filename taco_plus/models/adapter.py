"""TACO's text adapter: the Injector and Extractor blocks of the analysis transform.

Lee et al., "Neural Image Compression with Text-guided Encoding for both Pixel-level and Perceptual Fidelity",
ICML 2024. Parameter names follow the official code (``text_feature_dim_proj``, ``image_norm``, ``text_norm``,
``cross_attn``, ``gamma``), so official checkpoints load unchanged. Token weights (B, L) act in the blocks
(docs/weighting.md): the Injector adds ``log w`` to each text key's logits; in the Extractor, where text tokens
are queries, ``w`` scales each token's residual update.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from taco_plus.models.attention import AttentionFactory, FullCrossAttention


def _projection(in_dim: int, out_dim: int) -> nn.Linear:
    proj = nn.Linear(in_dim, out_dim)
    nn.init.kaiming_normal_(proj.weight)
    return proj


class Injector(nn.Module):
    """Image tokens query text tokens: ``out = LN(img) + gamma * Attn(LN(img), LN(W text))``, ``gamma`` a
    per-channel vector initialised to 0 (a new adapter starts as the identity on LN(img)).

    Args:
        dim: image feature width (N).
        text_dim: text feature width (512 for CLIP ViT-B/32).
        num_heads: attention heads.
        attention: factory ``(dim, num_heads) -> CrossAttention``; full attention by default.
    """

    def __init__(self, dim: int, text_dim: int, num_heads: int = 8,
                 attention: Optional[AttentionFactory] = None) -> None:
        super().__init__()
        self.text_feature_dim_proj = _projection(text_dim, dim)
        self.image_norm, self.text_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross_attn = (attention or FullCrossAttention)(dim, num_heads)
        self.gamma = nn.Parameter(torch.zeros(dim))

    def forward(self, image: Tensor, text: Tensor, text_mask: Optional[Tensor] = None,
                text_weights: Optional[Tensor] = None) -> Tensor:
        b, c, h, w = image.shape
        img = self.image_norm(image.flatten(2).transpose(1, 2))  # (B, HW, N)
        txt = self.text_norm(self.text_feature_dim_proj(text))  # (B, L, N)
        out = img + self.gamma * self.cross_attn(img, txt, context_mask=text_mask, context_weights=text_weights)
        # contiguous NCHW: a channels-last view here would make later convs pick other
        # kernels in training/forward than in compress, breaking bit-exact round trips
        return out.transpose(1, 2).reshape(b, c, h, w).contiguous()


class Extractor(nn.Module):
    """Text tokens query image tokens: ``text' = LN(text) + w * Attn(LN(text), LN(W img))``, ``w`` the token
    weights (1 when not given). Arguments as :class:`Injector`'s; the attention is built at ``text_dim``."""

    def __init__(self, dim: int, text_dim: int, num_heads: int = 8,
                 attention: Optional[AttentionFactory] = None) -> None:
        super().__init__()
        self.image_feature_dim_proj = _projection(dim, text_dim)
        self.image_norm, self.text_norm = nn.LayerNorm(text_dim), nn.LayerNorm(text_dim)
        self.cross_attn = (attention or FullCrossAttention)(text_dim, num_heads)

    def forward(self, text: Tensor, image: Tensor, text_weights: Optional[Tensor] = None) -> Tensor:
        img = self.image_norm(self.image_feature_dim_proj(image.flatten(2).transpose(1, 2)))
        txt = self.text_norm(text)  # (B, L, text_dim)
        attn = self.cross_attn(txt, img)  # image tokens are never padded
        if text_weights is not None:
            attn = attn * text_weights.unsqueeze(-1).to(attn.dtype)
        return txt + attn
