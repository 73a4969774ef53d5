"""TACO's transforms: text-guided analysis g_a, synthesis g_s, hyperprior h_a / h_s. Only g_a sees text.
Module indices in the ``nn.Sequential`` containers follow the official code (``g_a.analysis_transform.8.gamma``
etc. load unchanged)."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from compressai.layers import AttentionBlock
from torch import Tensor, nn

from taco_plus.models.adapter import Extractor, Injector
from taco_plus.models.attention import AttentionFactory
from taco_plus.models.layers import ResidualBottleneck, conv, deconv


def _res3(N: int) -> list[nn.Module]:
    return [ResidualBottleneck(N) for _ in range(3)]


class AnalysisTransform(nn.Module):
    """g_a: image (B, 3, H, W) + text (B, L, D) -> y (B, M, H/16, W/16)::

        conv/2, 3xRB, conv/2, 3xRB            (H/4, N)
        Injector                              image queries text
        AttentionBlock, conv/2, 3xRB          (H/8, N)
        Extractor                             text queries image -> updated text
        Injector                              with the updated text
        conv/2, AttentionBlock(M)             (H/16, M)

    Arguments as :class:`~taco_plus.models.TACO`'s; ``caption_summary`` projects the caption to k summaries
    once, before the first Injector (mask and token weights act there); None keeps every token (the paper).
    """

    def __init__(self, N: int, M: int, text_dim: int, num_heads: int = 8,
                 injector_attention: Optional[AttentionFactory] = None,
                 extractor_attention: Optional[AttentionFactory] = None,
                 caption_summary: Optional[Callable[[int], nn.Module]] = None) -> None:
        super().__init__()
        # The adapter draws from its own stream (seeded from the global one, which it leaves
        # as it was), so every attention option starts from the same ELIC backbone at a seed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (), device="cpu")))  # CPU even when built on meta
            # A module only when used (official state dicts have no such key).
            self.caption_summary = caption_summary and caption_summary(text_dim)
            blocks = [Injector(N, text_dim, num_heads, injector_attention),
                      Extractor(N, text_dim, num_heads, extractor_attention),
                      Injector(N, text_dim, num_heads, injector_attention)]
        self.analysis_transform = nn.Sequential(
            conv(3, N), *_res3(N),
            conv(N, N), *_res3(N),
            blocks[0],  # 8: Injector
            AttentionBlock(N),
            conv(N, N), *_res3(N),
            blocks[1],  # 14: Extractor
            blocks[2],  # 15: Injector
            conv(N, M),
            AttentionBlock(M),
        )  # fmt: skip

    def forward(self, x: Tensor, text: Tensor, text_mask: Optional[Tensor] = None,
                text_weights: Optional[Tensor] = None, real_mask: Optional[Tensor] = None) -> Tensor:
        """``text_mask``: the positions attended; ``real_mask``: the real tokens (means of weights)."""
        if self.caption_summary is not None:  # (B, L, D) -> (B, k, D), mask and weights used up
            text = self.caption_summary(text, text_mask, text_weights, real_mask)
            text_mask = text_weights = None
        for layer in self.analysis_transform:
            if isinstance(layer, Injector):
                x = layer(x, text, text_mask, text_weights)
            elif isinstance(layer, Extractor):
                text = layer(text, x, text_weights)
            else:
                x = layer(x)
        return x

    def is_adapter(self, name: str) -> bool:
        """Whether a state-dict key of g_a (``name`` relative to it) is text adapter: an Injector/Extractor
        block, whatever its attention, or any module beside the ELIC stack (a caption summary, present or not)."""
        head, _, rest = name.partition(".")
        index = rest.partition(".")[0]
        return head != "analysis_transform" or (
            index.isdigit() and isinstance(self.analysis_transform[int(index)], (Injector, Extractor)))


class SynthesisTransform(nn.Module):
    """g_s: y_hat (B, M, h, w) -> x_hat (B, 3, 16h, 16w). Takes no text."""

    def __init__(self, N: int, M: int) -> None:
        super().__init__()
        self.synthesis_transform = nn.Sequential(
            AttentionBlock(M),
            deconv(M, N), *_res3(N),
            deconv(N, N),
            AttentionBlock(N), *_res3(N),
            deconv(N, N), *_res3(N),
            deconv(N, 3),
        )  # fmt: skip

    def forward(self, y_hat: Tensor) -> Tensor:
        # Channels-last: oneDNN's convolutions (transposed ones most) run without layout reorders, ~25% faster
        # on a CPU. Every path (forward, compress, decompress) comes here: reconstructions stay bit-identical.
        return self.synthesis_transform(y_hat.contiguous(memory_format=torch.channels_last))


class HyperAnalysis(nn.Module):
    """h_a: y (B, M, h, w) -> z (B, N, h/4, w/4)."""

    def __init__(self, N: int, M: int) -> None:
        super().__init__()
        self.reduction = nn.Sequential(
            conv(M, N, kernel_size=3, stride=1), nn.ReLU(inplace=True),
            conv(N, N), nn.ReLU(inplace=True),
            conv(N, N),
        )  # fmt: skip

    def forward(self, y: Tensor) -> Tensor:
        return self.reduction(y)


class HyperSynthesis(nn.Module):
    """h_s: z_hat (B, N, h/4, w/4) -> hyper parameters (B, 2M, h, w) (CompressAI's ELIC outputs 2N)."""

    def __init__(self, N: int, M: int) -> None:
        super().__init__()
        self.increase = nn.Sequential(
            deconv(N, M), nn.ReLU(inplace=True),
            deconv(M, M * 3 // 2), nn.ReLU(inplace=True),
            deconv(M * 3 // 2, M * 2, kernel_size=3, stride=1),
        )  # fmt: skip

    def forward(self, z_hat: Tensor) -> Tensor:
        return self.increase(z_hat)
