"""The frozen CLIP text encoder that guides TACO's analysis transform, and the CLIP embeddings.

TACO (Lee et al., ICML 2024) feeds the adapter the per-token hidden states of CLIP ViT-B/32's text
tower (Hugging Face's ``last_hidden_state``) for captions padded or cut to 38 tokens.
:class:`ClipTextEncoder` computes the same states with open_clip, in the token layout of
:mod:`taco_plus.text.tokenizer`, plus a chunked policy for long captions; the pad rule is in
docs/text.md. :func:`text_inputs` turns captions into the model's inputs; :class:`ClipEmbedding`
is the joint loss's and the CLIP score's embedding path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from taco_plus.text.clip_loading import clip_source, load_clip
from taco_plus.text.tokenizer import (CONTEXT_LENGTH, PAD_IDS, VOCAB_SIZE, MaxTokens, PadPolicy, TokenizedCaption,
                                      check_policy, tokenize)


@dataclass
class TextFeatures:
    """Per-token CLIP text features of a batch of captions."""

    tokens: Tensor  # (B, L, width) ln_final states; L = max_tokens (pads included), or chunked rows zero-padded
    mask: Tensor  # (B, L) bool, True on real tokens (SOT, pieces, EOT)
    layouts: List[TokenizedCaption]  # each caption's token layout (position -> BPE piece)
    num_sequences: int  # text-tower sequences run for the batch

    @property
    def lengths(self) -> Tensor:
        """(B,) positions of each caption's own layout (real tokens, and the pads of a fixed
        length); later positions only pad the batch (chunked captions of unequal lengths)."""
        return torch.tensor([len(layout) for layout in self.layouts], device=self.tokens.device)


class TextTower:
    """A view of the text-tower modules of an open_clip ``CLIP`` (on the model) or
    ``CustomTextCLIP`` (on ``model.text``); not a module, so moving the model moves it.

    Towers without a causal mask, with a class token (CoCa) or another vocabulary are
    refused: padding would change the real tokens' states, or the BPE layout not apply.
    """

    def __init__(self, model: nn.Module) -> None:
        owner = model if hasattr(model, "token_embedding") else getattr(model, "text", None)
        kind = type(model).__name__
        if owner is None or not hasattr(owner, "token_embedding") or not hasattr(owner, "ln_final"):
            raise ValueError(f"{kind} has no open_clip TextTransformer text tower (token_embedding, ln_final)")
        if getattr(owner, "attn_mask", None) is None:
            raise ValueError(f"{kind}'s text tower has no causal mask: padding would change real-token features")
        if getattr(owner, "cls_emb", None) is not None:
            raise ValueError(f"{kind}'s text tower appends a class token (CoCa-style); not supported")
        if owner.token_embedding.num_embeddings != VOCAB_SIZE:
            raise ValueError(f"{kind}'s text tower has a vocabulary of {owner.token_embedding.num_embeddings}, "
                             f"not CLIP's BPE vocabulary of {VOCAB_SIZE}")
        self.owner = owner
        self.width = owner.token_embedding.embedding_dim
        self.context_length = owner.positional_embedding.shape[0]

    def token_states(self, ids: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        """(S, L) ids -> (S, L, width) ``ln_final`` states; ``key_mask`` (S, L) is False on
        keys no query may attend to (Hugging Face's ``attention_mask``)."""
        tower, length = self.owner, ids.shape[1]
        dtype = tower.transformer.get_cast_dtype()
        x = tower.token_embedding(ids).to(dtype) + tower.positional_embedding[:length].to(dtype)  # (S, L, width)
        mask = tower.attn_mask[:length, :length].to(dtype)  # (L, L) additive, causal
        if key_mask is not None:  # (S, 1, L) + (L, L) -> (S, L, L), one copy per head
            pad = torch.zeros(key_mask.shape, dtype=dtype, device=x.device).masked_fill(~key_mask, float("-inf"))
            heads = tower.transformer.resblocks[0].attn.num_heads
            mask = (pad[:, None, :] + mask).repeat_interleave(heads, dim=0)
        return tower.ln_final(tower.transformer(x, attn_mask=mask))

    def project(self, pooled: Tensor) -> Tensor:
        """Pooled (EOT) states (..., width) -> the joint embedding space."""
        proj = self.owner.text_projection
        if proj is None:
            return pooled
        return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj


class ClipTextEncoder(nn.Module):
    """Frozen open_clip text tower returning per-token features. The CLIP model is *not* a submodule:
    its weights come from ``pretrained``, not from codec checkpoints, the optimiser and a parent's
    ``.train()`` never reach it, the joint loss can share it; ``.to()`` and casts still move it.

    Args:
        model_name, pretrained, device, quick_gelu, cache_dir, seed: see :func:`load_clip`.
        max_tokens: 38 (TACO), 77, 248 (Long-CLIP towers), or ``"chunked"``.
        pad: pad id for fixed lengths: ``"eot"`` (49407, official TACO's) or ``"zero"`` (open_clip's).
        sequence_batch: at most this many sequences per text-tower pass (memory bound).
        clip_model: an already-loaded open_clip model instead of loading one.
    """

    def __init__(self, model_name: str = "ViT-B-32", pretrained: Optional[str] = "openai", max_tokens: MaxTokens = 38,
                 pad: PadPolicy = "eot", *,  # not config keys (a checkpoint must not choose them): set by code
                 device: Union[str, torch.device] = "cpu", quick_gelu: Optional[bool] = None,
                 cache_dir: Optional[str] = None, seed: int = 0, sequence_batch: int = 256,
                 clip_model: Optional[nn.Module] = None) -> None:
        super().__init__()
        check_policy(max_tokens, pad)
        if sequence_batch < 1:
            raise ValueError(f"sequence_batch must be >= 1, got {sequence_batch}")
        if clip_model is None:
            clip_model = load_clip(model_name, pretrained, device, quick_gelu=quick_gelu, cache_dir=cache_dir, seed=seed)
        tower = TextTower(clip_model)
        self.seq_len = CONTEXT_LENGTH if max_tokens == "chunked" else max_tokens  # of each tower sequence
        if self.seq_len > tower.context_length:
            raise ValueError(f"max_tokens={max_tokens!r} needs more than the tower's {tower.context_length} positions")
        clip_model.eval().requires_grad_(False)
        self.__dict__["clip_model"] = clip_model  # plain attributes, not submodules (see above)
        self.__dict__["tower"] = tower
        self.max_tokens, self.pad, self.sequence_batch = max_tokens, pad, sequence_batch

    @classmethod
    def from_model(cls, clip_model: nn.Module, max_tokens: MaxTokens = 38, pad: PadPolicy = "eot",
                   **kwargs) -> "ClipTextEncoder":
        """Wraps an already-loaded open_clip model (e.g. the one the joint loss uses)."""
        return cls(max_tokens=max_tokens, pad=pad, clip_model=clip_model, **kwargs)

    @property
    def width(self) -> int:
        """Feature width (512 for ViT-B/32)."""
        return self.tower.width

    @property
    def device(self) -> torch.device:
        return self.tower.owner.token_embedding.weight.device

    def describe(self) -> str:
        """One line saying which text tower this is; untrained ones say so first."""
        source = clip_source(self.clip_model)
        policy = f"width {self.width}, max_tokens={self.max_tokens!r}, pad={self.pad!r}"
        if source is None:
            return f"open_clip {type(self.clip_model).__name__} text tower (weights of unknown origin), {policy}"
        if source.untrained:
            return f"UNTRAINED random-init text tower ({source.model_name}, seed {source.seed}): " \
                   f"features carry no meaning; {policy}"
        return f"CLIP text tower {source.describe()}, {policy}"

    def extra_repr(self) -> str:
        return self.describe()

    def train(self, mode: bool = True) -> "ClipTextEncoder":
        super().train(mode)
        self.clip_model.eval()  # frozen: dropout-free inference whatever the parent does
        return self

    def _apply(self, fn: Callable, *args, **kwargs):
        self.clip_model._apply(fn)  # not a submodule: move/cast it with us anyway
        return super()._apply(fn, *args, **kwargs)

    def tokenize(self, captions: Sequence[str]) -> List[TokenizedCaption]:
        """Token layouts of a batch of captions under this encoder's policy."""
        if isinstance(captions, str) or not isinstance(captions, Sequence):
            raise TypeError(f"captions must be a list of str, got {type(captions).__name__}")
        for i, caption in enumerate(captions):
            if not isinstance(caption, str):
                raise TypeError(f"caption {i} must be a str, got {type(caption).__name__}: {caption!r:.80}")
        return [tokenize(caption, self.max_tokens, self.pad) for caption in captions]

    def forward(self, captions: Sequence[str]) -> TextFeatures:
        """Per-token features of a batch of captions (see :class:`TextFeatures`)."""
        return self.encode_layouts(self.tokenize(captions))

    def _sequences(self, layout: TokenizedCaption) -> List[List[int]]:
        """The text-tower input sequences of one layout, checked against the policy."""
        seqs = [layout.ids[a:b] + [PAD_IDS[self.pad]] * (self.seq_len - (b - a)) for a, b in layout.chunks]
        if self.max_tokens == "chunked":
            starts, ends = [a for a, _ in layout.chunks], [b for _, b in layout.chunks]
            if not all(layout.mask) or starts != [0] + ends[:-1] or ends[-1] != len(layout) \
                    or any(len(s) != self.seq_len for s in seqs):
                raise ValueError("layout is not a chunked layout (padding inside, chunks not contiguous or too long)")
        elif len(seqs) != 1 or seqs[0] != layout.ids:
            raise ValueError(f"layout was not tokenized with max_tokens={self.max_tokens}, pad={self.pad!r}")
        return seqs

    @torch.no_grad()
    def encode_layouts(self, layouts: Sequence[TokenizedCaption]) -> TextFeatures:
        """Per-token features of already-tokenized captions (this encoder's policy)."""
        if not layouts:
            raise ValueError("no captions to encode")
        ids = torch.tensor([s for layout in layouts for s in self._sequences(layout)], device=self.device)
        lengths = torch.tensor([b - a for layout in layouts for a, b in layout.chunks], device=self.device)
        # Padding after each sequence's real tokens is hidden from every query (the reference's pad states).
        key_mask = torch.arange(self.seq_len, device=self.device) < lengths[:, None]  # (S, seq_len)
        blocks = zip(ids.split(self.sequence_batch), key_mask.split(self.sequence_batch))
        states = torch.cat([self.tower.token_states(i, None if m.all() else m) for i, m in blocks])  # (S, seq, width)

        tokens = states.new_zeros(len(layouts), max(len(layout) for layout in layouts), self.width)  # (B, L, width)
        mask = torch.zeros(tokens.shape[:2], dtype=torch.bool, device=self.device)
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
        """(B, embed_dim) projected state at each caption's first end-of-text token (equals
        open_clip's ``encode_text`` for a caption that fits one sequence)."""
        eot = torch.tensor([layout.chunks[0][1] - 1 for layout in features.layouts], device=features.tokens.device)
        pooled = features.tokens[torch.arange(len(eot), device=eot.device), eot]  # (B, width)
        return self.tower.project(pooled)


@torch.no_grad()
def text_inputs(text_encoder: ClipTextEncoder, weighting: Any, captions: Sequence[str],
                device: Optional[torch.device] = None) -> tuple[Tensor, Tensor, Optional[Tensor], Tensor]:
    """The one caption -> model input step of training, evaluation and the codec: ``(tokens (B, L, D),
    mask (B, L), weights (B, L) or None, lengths (B,))`` on ``device`` for ``model(x, *inputs)``; the
    lengths keep the padding of unequal captions unattended. ``weighting``: a token weighting or None."""
    text = text_encoder(captions)
    tokens, mask, weights = text.tokens, text.mask, None
    if weighting is not None:
        tokens, mask, weights = weighting.model_inputs(text, captions)
    return tuple(None if t is None else t.to(device) for t in (tokens, mask, weights, text.lengths))


class ClipEmbedding(nn.Module):
    """L2-normalised CLIP embeddings (B, D) of images and captions from a frozen open_clip model ``clip``:
    the one path of the joint loss and the CLIP score.

    Images (B, 3, H, W) in [0, 1]: short side resized, centre crop, the model's normalisation; bilinear
    (TACO's joint loss, differentiable) or, with ``eval_transform``, open_clip's evaluation transform
    (bicubic, clamped to [0, 1]). Captions: :func:`tokenize`'s layout cut to ``context_length`` tokens
    (None: the model's), zero-padded to the model's context; :meth:`cut` sees what the cut drops.
    """

    def __init__(self, clip: nn.Module, context_length: Optional[int] = None, eval_transform: bool = False) -> None:
        super().__init__()
        import open_clip

        self.clip = clip.eval().requires_grad_(False)
        self.full_context = int(getattr(clip, "context_length", CONTEXT_LENGTH))
        if context_length is not None and not 2 <= context_length <= self.full_context:
            raise ValueError(f"context_length must lie in [2, {self.full_context}], got {context_length}")
        self.context_length, self.eval_transform = context_length or self.full_context, eval_transform
        cfg = open_clip.get_model_preprocess_cfg(clip)
        size = cfg.get("size", 224)
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = list(cfg.get("mean") or open_clip.OPENAI_DATASET_MEAN)
        self.std = list(cfg.get("std") or open_clip.OPENAI_DATASET_STD)

    def train(self, mode: bool = True) -> "ClipEmbedding":
        super().train(mode)
        self.clip.eval()  # frozen towers
        return self

    def source_name(self, fallback: str) -> str:
        """Where the CLIP weights come from (:func:`clip_source`), else ``fallback``."""
        source = clip_source(self.clip)
        return source.describe() if source is not None else fallback

    def preprocess(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, S, S) CLIP input."""
        mode = TF.InterpolationMode.BICUBIC if self.eval_transform else TF.InterpolationMode.BILINEAR
        x = TF.center_crop(TF.resize(x, [min(self.image_size)], interpolation=mode, antialias=True), list(self.image_size))
        mean, std = (torch.tensor(v, device=x.device).view(3, 1, 1) for v in (self.mean, self.std))  # fp32
        return ((x.clamp(0.0, 1.0) if self.eval_transform else x) - mean) / std

    def image_embedding(self, x: Tensor) -> Tensor:
        """(B, D); differentiable in ``x``."""
        return F.normalize(self.clip.encode_image(self.preprocess(x)), dim=-1)

    @torch.no_grad()
    def text_embedding(self, captions: Sequence[str]) -> Tensor:
        """(B, D) of ``captions`` cut to ``context_length`` tokens (end-of-text kept)."""
        layouts = [tokenize(c, self.context_length, pad="zero") for c in captions]
        self.cut(captions, layouts)
        # encode_text adds all positional embeddings: pad with 0 after the EOT; the causal mask keeps
        # those positions out of the pooled (EOT) state.
        tokens = torch.tensor([t.ids + [0] * (self.full_context - len(t)) for t in layouts])
        return F.normalize(self.clip.encode_text(tokens.to(next(self.clip.parameters()).device)), dim=-1)

    def cut(self, captions: Sequence[str], layouts: Sequence[TokenizedCaption]) -> None:
        """Called with each batch's layouts (``layout.truncated``: BPE pieces cut); reports nothing here."""
