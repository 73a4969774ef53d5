"""Per-token hidden states from an open_clip text tower.

open_clip's ``encode_text`` returns one pooled vector per caption; TACO's adapter needs
the hidden state of every token (Hugging Face's ``last_hidden_state``). These are the
tower's own pieces run in order::

    x = token_embedding(ids) + positional_embedding[:L]   # (S, L, width)
    x = transformer(x, attn_mask=causal[:L, :L])           # (S, L, width)
    x = ln_final(x)                                        # (S, L, width)

and ``encode_text`` is ``x[eot] @ text_projection``. With a key mask, masked keys are
also removed from every query's attention (Hugging Face's ``CLIPTextModel`` with an
``attention_mask``): real tokens are unchanged (the causal mask already hides later
positions from them), pad tokens attend to the real tokens only. Two open_clip layouts
hold these pieces: :class:`open_clip.CLIP` keeps them on the model itself, while
:class:`open_clip.CustomTextCLIP` keeps them on ``model.text`` (a ``TextTransformer``).
Towers without a causal mask (SigLIP-style), with an appended class token (CoCa), or
backed by a Hugging Face text model are rejected: padding would then change the real
tokens' features, or the BPE layout would not apply.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from taco_plus.text.tokenizer import VOCAB_SIZE


class TextTower:
    """A read-only view of the text-tower modules of an open_clip model.

    Not an ``nn.Module``: it only points at the model's own modules, so moving or
    casting the model moves what it points at.

    Args:
        model: an open_clip ``CLIP`` or ``CustomTextCLIP`` with a ``TextTransformer``.
    """

    def __init__(self, model: nn.Module) -> None:
        # CLIP keeps the text modules on the model; CustomTextCLIP on model.text.
        owner = model if hasattr(model, "token_embedding") else getattr(model, "text", None)
        kind = type(model).__name__
        if owner is None or not hasattr(owner, "token_embedding") or not hasattr(owner, "ln_final"):
            raise ValueError(
                f"{kind} has no open_clip TextTransformer text tower "
                f"(text module: {type(getattr(model, 'text', None)).__name__}); "
                "per-token features need a CLIP-style tower (token_embedding, transformer, ln_final)"
            )
        if getattr(owner, "attn_mask", None) is None:
            raise ValueError(f"{kind}'s text tower has no causal mask: padding would change real-token features")
        if getattr(owner, "cls_emb", None) is not None:
            raise ValueError(f"{kind}'s text tower appends a class token (CoCa-style); not supported")
        if owner.token_embedding.num_embeddings != VOCAB_SIZE:
            raise ValueError(
                f"{kind}'s text tower has a vocabulary of {owner.token_embedding.num_embeddings}, "
                f"not CLIP's BPE vocabulary of {VOCAB_SIZE}"
            )
        self.owner = owner

    @property
    def width(self) -> int:
        return self.owner.token_embedding.embedding_dim

    @property
    def context_length(self) -> int:
        return self.owner.positional_embedding.shape[0]

    @property
    def device(self):
        return self.owner.token_embedding.weight.device

    @property
    def dtype(self):
        return self.owner.transformer.get_cast_dtype()

    def token_states(self, ids: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        """Final-layer, ``ln_final``-normalised hidden states of every token.

        Args:
            ids: token ids (S, L), ``L <= context_length``.
            key_mask: optional (S, L) bool, False on keys no query may attend to.

        Returns:
            (S, L, width) hidden states; position ``i`` depends on the unmasked ids
            among ``[:i+1]`` and on its own id only.
        """
        length = ids.shape[1]
        if length > self.context_length:
            raise ValueError(f"sequence of {length} tokens exceeds the tower's {self.context_length} positions")
        tower = self.owner
        x = tower.token_embedding(ids).to(self.dtype)  # (S, L, width)
        x = x + tower.positional_embedding[:length].to(self.dtype)
        mask = tower.attn_mask[:length, :length].to(self.dtype)  # (L, L) additive, causal
        if key_mask is not None:  # (S, 1, L) + (L, L) -> (S, L, L), one copy per head
            pad = torch.zeros(key_mask.shape, dtype=self.dtype, device=x.device).masked_fill(~key_mask, float("-inf"))
            heads = tower.transformer.resblocks[0].attn.num_heads
            mask = (pad[:, None, :] + mask).repeat_interleave(heads, dim=0)
        x = tower.transformer(x, attn_mask=mask)
        return tower.ln_final(x)

    def project(self, pooled: Tensor) -> Tensor:
        """Map pooled (EOT) states (..., width) to the joint embedding space."""
        proj = self.owner.text_projection
        if proj is None:
            return pooled
        return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj
