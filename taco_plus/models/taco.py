"""TACO: Text-Adaptive COmpression on an ELIC backbone.

Lee et al., "Neural Image Compression with Text-guided Encoding for both
Pixel-level and Perceptual Fidelity", ICML 2024 (arXiv 2403.02944).

``g_a`` (with the text adapter) -> ``y``; ``h_a`` -> ``z`` coded by an
``EntropyBottleneck``; ``h_s(z_hat)`` -> hyper parameters (2M channels); ``y`` is
split into uneven channel groups, each coded with a checkerboard + channel context
by a ``GaussianConditional``; ``g_s(y_hat)`` -> ``x_hat``. Text reaches the encoder
only: :meth:`TACO.decompress` takes no text.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.models import CompressionModel
from compressai.models.base import get_scale_table
from compressai.ops import quantize_ste
from torch import Tensor, nn

from taco_plus.coding.checkerboard import DecodingCoder, EncodingCoder, LatentCoder, RoundingCoder, code_group
from taco_plus.coding.rans import BucketizedGaussianConditional, decode_bottleneck, encode_bottleneck
from taco_plus.models.attention import AttentionFactory
from taco_plus.models.layers import ChannelContext, EntropyParameters
from taco_plus.models.transforms import AnalysisTransform, HyperAnalysis, HyperSynthesis, SynthesisTransform


class TACO(CompressionModel):
    """TACO codec.

    Args:
        N: width of the transforms and of z (192 in the paper).
        M: channels of y (320).
        slice_ch: uneven channel groups of y, summing to M ([16, 16, 32, 64, 192]).
        text_dim: width of the text features (512 for CLIP ViT-B/32).
        num_heads: heads of every adapter attention block.
        injector_attention / extractor_attention: attention factories for the
            adapter blocks (``taco_plus.models.attention``); full attention by default.
        caption_summary: optional factory ``text_dim -> CaptionSummary`` projecting the
            caption to k summaries before the adapter (the Linformer ablation's text side).
        mask_padding: honour the text padding mask (default). Official checkpoints
            were trained attending to padding tokens; :meth:`from_official` sets False.
        scale_table_levels: levels of the entropy coder's Gaussian scale table (log-spaced over [0.11, 256]);
            more levels cost less rate over the likelihood estimate (docs/coding.md). Official checkpoints
            keep the reference's 64, so their bitstreams match the reference code's.
    """

    def __init__(
        self,
        N: int = 192,
        M: int = 320,
        slice_ch: Sequence[int] = (16, 16, 32, 64, 192),
        text_dim: int = 512,
        num_heads: int = 8,
        injector_attention: Optional[AttentionFactory] = None,
        extractor_attention: Optional[AttentionFactory] = None,
        caption_summary: Optional[Callable[[int], nn.Module]] = None,
        mask_padding: bool = True,
        scale_table_levels: int = 512,
    ) -> None:
        super().__init__()
        slice_ch = [int(c) for c in slice_ch]
        if sum(slice_ch) != M:
            raise ValueError(f"slice_ch {slice_ch} must sum to M={M}")
        self.N, self.M, self.slice_ch, self.text_dim = N, M, slice_ch, text_dim
        self.mask_padding = mask_padding
        if scale_table_levels < 2:
            raise ValueError("scale_table_levels must be >= 2")
        self.scale_table_levels = int(scale_table_levels)

        self.g_a = AnalysisTransform(
            N, M, text_dim, num_heads, injector_attention, extractor_attention, caption_summary
        )
        self.g_s = SynthesisTransform(N, M)
        self.h_a = HyperAnalysis(N, M)
        self.h_s = HyperSynthesis(N, M)

        # Group i sees the hyper parameters (2M), the channel context of groups < i
        # (2 c_i, i > 0) and, for non-anchors, the local context of its anchors (2 c_i).
        self.local_context = nn.ModuleList(nn.Conv2d(c, 2 * c, 5, padding=2) for c in slice_ch)
        self.channel_context = nn.ModuleList(
            ChannelContext(sum(slice_ch[:i]), 2 * c) if i else None for i, c in enumerate(slice_ch)
        )
        self.entropy_parameters_anchor = nn.ModuleList(
            EntropyParameters(2 * M + (2 * c if i else 0), 2 * c) for i, c in enumerate(slice_ch)
        )
        self.entropy_parameters_nonanchor = nn.ModuleList(
            EntropyParameters(2 * M + (4 * c if i else 2 * c), 2 * c) for i, c in enumerate(slice_ch)
        )
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = BucketizedGaussianConditional(None)

    # ------------------------------------------------------------------ text
    def analysis(self, x: Tensor, text_embeddings: Tensor, text_mask: Optional[Tensor] = None,
                 text_weights: Optional[Tensor] = None, text_lengths: Optional[Tensor] = None) -> Tensor:
        """g_a with the text adapter: x (B, 3, H, W) -> y (B, M, H/16, W/16).

        ``text_mask`` (B, L): True on real tokens. ``text_lengths`` (B,): positions of each caption's own
        sequence (``TextFeatures.lengths``); later ones only pad the batch and are never attended (None: all
        L). Without ``mask_padding`` a caption's own pads are attended (the reference). ``text_weights``
        (B, L) act inside the adapter (``adapter.py``).
        """
        if text_embeddings.dim() != 3 or text_embeddings.shape[-1] != self.text_dim:
            raise ValueError(f"text_embeddings must be (B, L, {self.text_dim}), got {tuple(text_embeddings.shape)}")
        mask = text_mask if self.mask_padding else None
        if text_lengths is not None:
            own = torch.arange(text_embeddings.shape[1], device=x.device) < text_lengths.to(x.device)[:, None]
            mask = own if mask is None else mask.to(torch.bool) & own
        if mask is not None and not mask.any(dim=1).all():
            raise ValueError("every caption needs at least one unmasked token (its SOT/EOT)")
        return self.g_a(x, text_embeddings, mask, text_weights, text_mask)

    # --------------------------------------------------------------- latents
    def _code_latents(self, coder: LatentCoder, hyper: Tensor, y: Optional[Tensor]) -> tuple[Tensor, list, list]:
        """Codes every channel group in order; returns y_hat and per-group scales/means."""
        # One memory layout on every path, so forward, compress and decompress run
        # the same conv kernels and reconstruct bit-identical latents.
        y_slices = [None] * len(self.slice_ch) if y is None else y.contiguous().split(self.slice_ch, dim=1)
        hyper = hyper.contiguous()
        y_hat_slices, scales, means = [], [], []
        for i, y_slice in enumerate(y_slices):
            context = [self.channel_context[i](torch.cat(y_hat_slices, dim=1)), hyper] if i else [hyper]
            y_hat_slice, s, m = code_group(coder, y_slice, context, self.entropy_parameters_anchor[i],
                                           self.entropy_parameters_nonanchor[i], self.local_context[i])
            y_hat_slices.append(y_hat_slice)
            scales.append(s)
            means.append(m)
        return torch.cat(y_hat_slices, dim=1), scales, means

    # ------------------------------------------------------------- contract
    def forward(self, x: Tensor, text_embeddings: Tensor, text_mask: Optional[Tensor] = None,
                text_weights: Optional[Tensor] = None, text_lengths: Optional[Tensor] = None) -> dict[str, Any]:
        """Returns ``{"x_hat", "likelihoods": {"y", "z"}}`` (CompressAI's contract)."""
        y = self.analysis(x, text_embeddings, text_mask, text_weights, text_lengths)
        z = self.h_a(y)
        # The entropy model stays fp32 under mixed precision (autocast): likelihoods,
        # rounding around the means and the networks that predict them, as compress and
        # decompress compute them. Only the transforms run in bf16.
        with torch.autocast(x.device.type, enabled=False):
            y, z = y.float(), z.float()
            _, z_likelihoods = self.entropy_bottleneck(z)
            z_offset = self.entropy_bottleneck._get_medians()
            z_hat = quantize_ste(z - z_offset) + z_offset
            y_hat, scales, means = self._code_latents(RoundingCoder(), self.h_s(z_hat), y)
            y_likelihoods = torch.cat([self.gaussian_conditional(y_i, s, m)[1]
                                       for y_i, s, m in zip(y.split(self.slice_ch, 1), scales, means)], 1)
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "y": y, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    @torch.no_grad()
    def compress(self, x: Tensor, text_embeddings: Tensor, text_mask: Optional[Tensor] = None,
                 text_weights: Optional[Tensor] = None, text_lengths: Optional[Tensor] = None) -> dict[str, Any]:
        """Returns ``{"strings": [y_strings, z_strings], "shape": z.shape[-2:], "y_hat"}``, one string per item
        in each list; ``g_s(y_hat)`` is the image the decoder will produce. Requires :meth:`update` first."""
        y = self.analysis(x, text_embeddings, text_mask, text_weights, text_lengths)
        z = self.h_a(y)
        z_strings, z_hat = encode_bottleneck(self.entropy_bottleneck, z)
        coder = EncodingCoder(self.gaussian_conditional)
        y_hat, _, _ = self._code_latents(coder, self.h_s(z_hat), y)
        return {"strings": [coder.flush(), z_strings], "shape": z.shape[-2:], "y_hat": y_hat}

    @torch.no_grad()
    def decompress(self, strings: Sequence[Sequence[bytes]], shape: Sequence[int]) -> dict[str, Tensor]:
        """Returns ``{"x_hat"}``; the decoder never sees text. A string that does not decode to exactly the
        symbols of a latent of this ``shape`` raises :class:`~taco_plus.coding.bitstream.BitstreamError`."""
        y_strings, z_strings = strings
        if len(y_strings) != len(z_strings):
            raise ValueError("y and z string lists differ in length")
        z_hat = decode_bottleneck(self.entropy_bottleneck, list(z_strings), tuple(shape))
        y_symbols = self.M * (4 * shape[0]) * (4 * shape[1])  # y is 4x z in each side
        coder = DecodingCoder(self.gaussian_conditional, list(y_strings), y_symbols)
        y_hat, _, _ = self._code_latents(coder, self.h_s(z_hat), None)
        coder.finish()
        return {"x_hat": self.g_s(y_hat)}

    def update(self, scale_table: Optional[Tensor] = None, force: bool = False, **kwargs: Any) -> bool:
        """Builds the entropy coders' CDF tables (before compress/decompress), ``scale_table_levels`` levels."""
        if scale_table is None:
            scale_table = get_scale_table(levels=self.scale_table_levels)
        return super().update(scale_table=scale_table, force=force, **kwargs)

    # ------------------------------------------------------------- loading
    @classmethod
    def from_official(cls, checkpoint: Mapping[str, Any], **overrides: Any) -> "TACO":
        """A model built from an official TACO checkpoint (a state dict, maybe wrapped under ``"state_dict"``,
        DDP ``module.`` prefixes allowed; sizes from tensor shapes), attending to padding tokens as it does."""
        from taco_plus.models.official import infer_official_config, normalise_state_dict

        state_dict = normalise_state_dict(checkpoint)
        model = cls(**{**infer_official_config(state_dict), "mask_padding": False, "scale_table_levels": 64,
                       **overrides})
        model.load_state_dict(state_dict)
        return model

    def is_adapter_key(self, key: str) -> bool:
        """Whether a state-dict key belongs to the text adapter (:meth:`AnalysisTransform.is_adapter`): what
        adapter-only fine-tuning trains and a checkpoint of another attention option may differ in. The rest is
        ELIC."""
        head, _, rest = key.partition(".")
        return head == "g_a" and self.g_a.is_adapter(rest)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """Parameters of the text adapter (:meth:`is_adapter_key`)."""
        return [p for name, p in self.named_parameters() if self.is_adapter_key(name)]
