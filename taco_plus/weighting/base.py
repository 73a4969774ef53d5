"""The token-weighting interface: captions -> per-token weights in the CLIP layout.

A weighting scores *words of the original caption* (character spans) in
``[1, max_weight]``; this base class maps those scores onto CLIP's BPE pieces by
character overlap (:mod:`taco_plus.weighting.alignment`) and then onto the text
layout produced by ``taco_plus.text`` (SOT, pieces, EOT, padding; 38, 77 or
chunked positions). Start/end tokens and pieces outside every scored word get
exactly 1.0; padding gets 1.0 too, but the model masks it, so it gets no attention.

:meth:`TokenWeighting.model_inputs` hands the weights to the model, which applies
them where they survive the adapter's LayerNorms — on the attention logits
(``log w``, :func:`taco_plus.models.attention.base.context_bias`), or in a caption
summary's projection. The naive variant, which scales the features before the model
and is nearly inert, is the option ``tfidf_embedding_scale``
(:class:`~taco_plus.weighting.tfidf.TfidfEmbeddingScale`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from taco_plus.text.tokenizer import simple_tokenizer
from taco_plus.weighting.alignment import Piece, align


@dataclass(frozen=True)
class WordWeight:
    """A weight decided for one span of the original caption.

    Args:
        start: first character of the span.
        end: one past its last character.
        weight: in ``[1, max_weight]``.
        reason: why, for :meth:`TokenWeighting.explain` (e.g. ``"tf-idf 0.61"``).
    """

    start: int
    end: int
    weight: float
    reason: str


@dataclass(frozen=True)
class TokenRow:
    """One row of :meth:`TokenWeighting.explain`: a CLIP token, its weight and why.

    Args:
        token: decoded BPE piece (``<start_of_text>``/``<end_of_text>`` for specials).
        weight: the token's weight.
        reason: the scored words it overlaps (``""`` when none).
        start / end: its character span in the original caption (-1 for specials).
        special: True for start/end-of-text tokens.
    """

    token: str
    weight: float
    reason: str
    start: int = -1
    end: int = -1
    special: bool = False


def as_list(values: Any) -> list[int]:
    """A layout field (tensor, array or sequence) as a flat list of ints."""
    if isinstance(values, Tensor):
        return [int(v) for v in values.reshape(-1).tolist()]
    return [int(v) for v in values]


class TokenWeighting(ABC):
    """Base class of the ``weighting`` config group options.

    Subclasses implement :meth:`word_weights`; everything else is shared.

    Args:
        max_weight: upper bound of every weight (>= 1; 1.5 by default).
    """

    name = "base"

    def __init__(self, max_weight: float = 1.5) -> None:
        max_weight = float(max_weight)
        if not math.isfinite(max_weight) or max_weight < 1.0:
            raise ValueError(f"max_weight must be a finite number >= 1, got {max_weight}")
        self.max_weight = max_weight

    @abstractmethod
    def word_weights(self, captions: Sequence[str]) -> list[list[WordWeight]]:
        """Scored spans of each caption (spans not listed weigh 1.0)."""

    def check_caption_set(self, fingerprint: str) -> None:
        """Raises if this weighting was fitted on another caption set (no-op here)."""

    # ----------------------------------------------------------- pieces
    def piece_rows(self, caption: str, words: Sequence[WordWeight]) -> list[TokenRow]:
        """Weights of the BPE pieces of ``caption`` given its scored words.

        A piece takes the largest weight of the words it overlaps, so a word split
        into several pieces ("coconacci" -> "cocon", "acci") weighs every piece, and
        an apostrophe piece inside a word ("don" "'t") follows the word.
        """
        pieces: tuple[Piece, ...] = align(caption)
        # Character -> indices of the words covering it: linear in caption length.
        covering: dict[int, list[int]] = {}
        for wi, word in enumerate(words):
            for c in range(word.start, word.end):
                covering.setdefault(c, []).append(wi)
        rows = []
        for piece in pieces:
            hit_ids = sorted({wi for c in range(piece.start, piece.end) for wi in covering.get(c, ())})
            hits = [words[wi] for wi in hit_ids]
            weight = max((w.weight for w in hits), default=1.0)
            reason = "; ".join(dict.fromkeys(w.reason for w in hits if w.reason))
            weight = min(max(weight, 1.0), self.max_weight)
            rows.append(TokenRow(piece.text, weight, reason, piece.start, piece.end))
        return rows

    def explain(self, caption: str) -> list[TokenRow]:
        """One row per BPE piece of ``caption`` (no SOT/EOT): token, weight, reason."""
        return self.piece_rows(caption, self.word_weights([caption])[0])

    # ----------------------------------------------------------- layout
    def weights(self, layouts: Sequence[Any], captions: Sequence[str]) -> Tensor:
        """Per-position weights (B, L) for tokenised captions.

        Args:
            layouts: ``taco_plus.text`` ``TokenizedCaption`` objects (``ids``,
                ``mask``, ``piece_index``: index into the caption's BPE pieces for
                each position, -1 for SOT/EOT/padding). Layouts of unequal length
                (chunked) are right-padded with 1.0 to the longest.
            captions: the caption each layout was made from.

        Returns:
            float32 tensor (B, L), 1.0 at SOT/EOT/padding, in [1, max_weight].
        """
        if len(layouts) != len(captions):
            raise ValueError(f"{len(layouts)} layouts for {len(captions)} captions")
        index = [as_list(layout.piece_index) for layout in layouts]
        length = max((len(ix) for ix in index), default=0)
        out = torch.ones(len(layouts), length, dtype=torch.float32)
        for b, (caption, words) in enumerate(zip(captions, self.word_weights(captions))):
            rows = self.piece_rows(caption, words)
            ids = as_list(layouts[b].ids)
            pieces = align(caption)
            row = [1.0] * len(index[b])
            for pos, k in enumerate(index[b]):
                if k < 0:
                    continue
                if k >= len(rows) or ids[pos] != pieces[k].id:
                    raise ValueError(
                        f"layout of caption {b} does not match its BPE pieces at position "
                        f"{pos} (piece {k}): was it tokenised from this caption?"
                    )
                row[pos] = rows[k].weight
            out[b, : len(row)] = torch.tensor(row, dtype=torch.float32)
        return out

    def __call__(self, layouts: Sequence[Any], captions: Sequence[str]) -> Tensor:
        return self.weights(layouts, captions)

    def model_inputs(self, text: Any, captions: Sequence[str]) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(tokens, mask, weights)`` for ``model(x, tokens, mask, weights)`` from the
        ``taco_plus.text`` features ``text`` (``tokens``, ``mask``, ``layouts``) of ``captions``."""
        return text.tokens, text.mask, self.weights(text.layouts, captions)

    def layout_rows(self, layout: Any, caption: str) -> list[TokenRow]:
        """:meth:`explain` laid out like ``layout``: SOT/EOT rows included, padding dropped."""
        rows = self.explain(caption)
        ids, mask, index = as_list(layout.ids), as_list(layout.mask), as_list(layout.piece_index)
        out: list[TokenRow] = []
        for token_id, real, k in zip(ids, mask, index):
            if not real:
                continue
            if k >= 0:
                out.append(rows[k])
            else:
                out.append(TokenRow(_special_name(token_id), 1.0, "", special=True))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_weight={self.max_weight})"


def _special_name(token_id: int) -> str:
    return simple_tokenizer().decoder.get(token_id, f"<id {token_id}>")


def check_weight(value: float, max_weight: float, what: str) -> float:
    """Validates a configured weight against ``[1, max_weight]``."""
    value = float(value)
    if not (1.0 <= value <= max_weight):
        raise ValueError(f"{what} must lie in [1, max_weight={max_weight}], got {value}")
    return value


__all__ = ["TokenRow", "TokenWeighting", "WordWeight", "as_list", "check_weight"]
