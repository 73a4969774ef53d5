"""The frozen CLIP text encoder that guides TACO's analysis transform.

Lee et al., "Neural Image Compression with Text-guided Encoding for both Pixel-level
and Perceptual Fidelity", ICML 2024, feed the adapter the per-token hidden states of
CLIP ViT-B/32's text tower (Hugging Face's ``last_hidden_state``) for captions padded
or truncated to 38 tokens. :class:`ClipTextEncoder` computes the same states with
open_clip, in the token layout of :mod:`taco_plus.text.tokenizer`, and adds a chunked
policy for long captions (GPT-4o captions run to 100-250 words).

The CLIP model is deliberately *not* a registered submodule: its weights come from
``pretrained``, not from codec checkpoints (official TACO checkpoints hold no CLIP
weights and load strictly), the optimizer never sees them, a parent's ``.train()`` never
reaches them, and the joint CLIP loss can share the same model object. ``.to()``,
``.cuda()``, ``.half()`` still move it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from taco_plus.text.clip_loading import clip_source, load_clip
from taco_plus.text.tokenizer import (
    CONTEXT_LENGTH,
    PAD_IDS,
    MaxTokens,
    PadPolicy,
    TokenizedCaption,
    check_policy,
    tokenize,
)
from taco_plus.text.tower import TextTower


@dataclass
class TextFeatures:
    """Per-token CLIP text features of a batch of captions.

    Args:
        tokens: (B, L, width) final-layer hidden states after ``ln_final``. With a fixed
            ``max_tokens`` every row has ``L = max_tokens`` positions, padding included
            (pad-token states as Hugging Face's ``CLIPTextModel`` computes them, which
            TACO's unmasked adapter saw); when chunked, rows are right-padded to the
            longest layout with zeros.
        mask: (B, L) bool, True on real tokens (SOT, pieces, EOT).
        layouts: the token layout of each caption (position -> BPE piece).
        num_sequences: how many text-tower sequences were run for the batch.
    """

    tokens: Tensor
    mask: Tensor
    layouts: List[TokenizedCaption]
    num_sequences: int


class ClipTextEncoder(nn.Module):
    """Frozen open_clip text tower returning per-token features.

    Args:
        model_name: open_clip architecture (``"ViT-B-32"`` as in TACO).
        pretrained: weights: tag, file, folder or None (see :func:`load_clip`).
        max_tokens: caption length policy: 38 (TACO), 77, or ``"chunked"``.
        pad: pad id for fixed lengths: ``"eot"`` (49407, as official TACO checkpoints
            were trained) or ``"zero"`` (open_clip's 0).
        device: device of the CLIP model.
        quick_gelu: see :func:`load_clip`.
        cache_dir: see :func:`load_clip`.
        seed: initialisation seed when ``pretrained`` is None.
        sequence_batch: at most this many sequences per text-tower pass (bounds memory
            for very long chunked captions).
        clip_model: an already-loaded open_clip model to use instead of loading one.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: Optional[str] = "openai",
        max_tokens: MaxTokens = 38,
        pad: PadPolicy = "eot",
        device: Union[str, torch.device] = "cpu",
        quick_gelu: Optional[bool] = None,
        cache_dir: Optional[str] = None,
        seed: int = 0,
        sequence_batch: int = 256,
        clip_model: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        check_policy(max_tokens, pad)
        if sequence_batch < 1:
            raise ValueError(f"sequence_batch must be >= 1, got {sequence_batch}")
        if clip_model is None:
            clip_model = load_clip(
                model_name, pretrained, device, quick_gelu=quick_gelu, cache_dir=cache_dir, seed=seed
            )
        tower = TextTower(clip_model)
        if (CONTEXT_LENGTH if max_tokens == "chunked" else max_tokens) > tower.context_length:
            raise ValueError(f"max_tokens={max_tokens!r} needs more than the tower's {tower.context_length} positions")
        clip_model.eval().requires_grad_(False)
        # Plain attributes, not submodules: see the module docstring.
        self.__dict__["clip_model"] = clip_model
        self.__dict__["tower"] = tower
        self.max_tokens = max_tokens
        self.pad = pad
        self.sequence_batch = sequence_batch

    @classmethod
    def from_model(
        cls, clip_model: nn.Module, max_tokens: MaxTokens = 38, pad: PadPolicy = "eot", **kwargs
    ) -> "ClipTextEncoder":
        """Wrap an already-loaded open_clip model (e.g. the one the joint loss uses)."""
        return cls(max_tokens=max_tokens, pad=pad, clip_model=clip_model, **kwargs)

    @property
    def width(self) -> int:
        """Feature width (512 for ViT-B/32)."""
        return self.tower.width

    @property
    def device(self) -> torch.device:
        return self.tower.device

    @property
    def seq_len(self) -> int:
        """Length of each text-tower sequence: ``max_tokens``, or 77 when chunked."""
        return CONTEXT_LENGTH if self.max_tokens == "chunked" else self.max_tokens

    def describe(self) -> str:
        """One line saying which text tower this is; untrained ones say so first."""
        source = clip_source(self.clip_model)
        policy = f"width {self.width}, max_tokens={self.max_tokens!r}, pad={self.pad!r}"
        if source is None:
            return f"open_clip {type(self.clip_model).__name__} text tower (weights of unknown origin), {policy}"
        if source.untrained:
            return (
                f"UNTRAINED random-init text tower ({source.model_name}, seed {source.seed}): "
                f"features carry no meaning; {policy}"
            )
        return f"CLIP text tower {source.describe()}, {policy}"

    def extra_repr(self) -> str:
        return self.describe()

    def train(self, mode: bool = True) -> "ClipTextEncoder":
        super().train(mode)
        self.clip_model.eval()  # frozen: dropout-free inference whatever the parent does
        return self

    def _apply(self, fn: Callable, *args, **kwargs):
        # The CLIP model is not a submodule; move/cast it with us anyway.
        self.clip_model._apply(fn)
        return super()._apply(fn, *args, **kwargs)

    def tokenize(self, captions: Sequence[str]) -> List[TokenizedCaption]:
        """Token layouts of a batch of captions under this encoder's policy."""
        if isinstance(captions, str) or not isinstance(captions, Sequence):
            raise TypeError(f"captions must be a list of str, got {type(captions).__name__}")
        layouts = []
        for i, caption in enumerate(captions):
            if not isinstance(caption, str):
                raise TypeError(f"caption {i} must be a str, got {type(caption).__name__}: {caption!r:.80}")
            layouts.append(tokenize(caption, self.max_tokens, self.pad))
        return layouts

    def forward(self, captions: Sequence[str]) -> TextFeatures:
        """Per-token features of a batch of captions (see :class:`TextFeatures`)."""
        return self.encode_layouts(self.tokenize(captions))

    def _sequences(self, layout: TokenizedCaption) -> List[List[int]]:
        """The text-tower input sequences of one layout, checked against the policy."""
        pad_id = PAD_IDS[self.pad]
        seqs = [layout.ids[a:b] + [pad_id] * (self.seq_len - (b - a)) for a, b in layout.chunks]
        if any(len(s) != self.seq_len for s in seqs):
            raise ValueError(f"a layout chunk is longer than {self.seq_len} tokens")
        if self.max_tokens == "chunked":
            starts, ends = [a for a, _ in layout.chunks], [b for _, b in layout.chunks]
            if not all(layout.mask) or starts != [0] + ends[:-1] or ends[-1] != len(layout):
                raise ValueError("layout is not a chunked layout (padding inside, or chunks not contiguous)")
        elif len(seqs) != 1 or seqs[0] != layout.ids:
            raise ValueError(
                f"layout was not tokenized with max_tokens={self.max_tokens}, pad={self.pad!r}"
            )
        return seqs

    @torch.no_grad()
    def encode_sequences(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """Hidden states (S, seq, width) of token-id sequences (S, seq), in blocks.

        ``lengths`` (S,) counts each sequence's real tokens; the padding after them is
        hidden from every query, as Hugging Face's ``CLIPTextModel`` does with its
        ``attention_mask`` (the reference's pad states).
        """
        key_mask = torch.arange(ids.shape[1], device=ids.device) < lengths[:, None]  # (S, seq)
        blocks = zip(ids.split(self.sequence_batch), key_mask.split(self.sequence_batch))
        return torch.cat([self.tower.token_states(i, None if m.all() else m) for i, m in blocks])

    @torch.no_grad()
    def encode_layouts(self, layouts: Sequence[TokenizedCaption]) -> TextFeatures:
        """Per-token features of already-tokenized captions (this encoder's policy)."""
        if not layouts:
            raise ValueError("no captions to encode")
        seqs = [self._sequences(layout) for layout in layouts]
        ids = torch.tensor([s for per in seqs for s in per], dtype=torch.long, device=self.device)
        lengths = torch.tensor([b - a for layout in layouts for a, b in layout.chunks], device=self.device)
        states = self.encode_sequences(ids, lengths)  # (S, seq_len, width), S = total sequences

        batch, length = len(layouts), max(len(layout) for layout in layouts)
        tokens = states.new_zeros(batch, length, self.width)  # (B, L, width)
        mask = torch.zeros(batch, length, dtype=torch.bool, device=self.device)
        s = 0
        for b, layout in enumerate(layouts):
            if self.max_tokens == "chunked":
                for start, end in layout.chunks:  # real tokens of each 77-slot sequence
                    tokens[b, start:end] = states[s, : end - start]
                    s += 1
            else:  # the whole L-length sequence, pad-token states included
                tokens[b, : self.seq_len] = states[s]
                s += 1
            mask[b, : len(layout)] = torch.tensor(layout.mask, device=self.device)
        return TextFeatures(tokens=tokens, mask=mask, layouts=list(layouts), num_sequences=ids.shape[0])

    @torch.no_grad()
    def eot_embedding(self, features: TextFeatures) -> Tensor:
        """(B, embed_dim) projected state at each caption's first end-of-text token.

        For a caption that fits one sequence this equals open_clip's ``encode_text``.
        """
        eot = torch.tensor([layout.chunks[0][1] - 1 for layout in features.layouts], device=features.tokens.device)
        pooled = features.tokens[torch.arange(len(eot), device=eot.device), eot]  # (B, width)
        return self.tower.project(pooled)
