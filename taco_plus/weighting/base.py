"""The token-weighting interface: a weighting scores *words of the original caption* in ``[1, max_weight]``;
this base class maps them onto CLIP's BPE pieces by character overlap, then the token layout (docs/weighting.md)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from taco_plus.text.tokenizer import simple_tokenizer
from taco_plus.weighting.alignment import align


@dataclass(frozen=True)
class WordWeight:
    """A weight in ``[1, max_weight]`` for the span ``[start, end)`` of the original caption, and why."""

    start: int
    end: int
    weight: float
    reason: str


@dataclass(frozen=True)
class TokenRow:
    """One CLIP token of :meth:`TokenWeighting.explain`: the decoded piece (or SOT/EOT), its weight, the reasons
    of the words it overlaps, its character span in the caption (-1 for SOT/EOT) and its open_clip id."""

    token: str
    weight: float
    reason: str
    start: int = -1
    end: int = -1
    special: bool = False
    id: int = -1


class TokenWeighting(ABC):
    """Base class of the ``weighting`` options, which implement :meth:`word_weights`; weights <= ``max_weight``."""

    def __init__(self, max_weight: float = 1.5) -> None:
        if not (math.isfinite(max_weight) and max_weight >= 1.0):
            raise ValueError(f"max_weight must be a finite number >= 1, got {max_weight}")
        self.max_weight = float(max_weight)

    @abstractmethod
    def word_weights(self, captions: Sequence[str]) -> list[list[WordWeight]]:
        """Scored spans of each caption (spans not listed weigh 1.0)."""

    def check_caption_set(self, fingerprint: Optional[str]) -> None:
        """Raises ``FingerprintMismatchError`` if fitted on another caption set (nothing is, here)."""

    def explain(self, caption: str, words: Optional[Sequence[WordWeight]] = None) -> list[TokenRow]:
        """One row per BPE piece of ``caption`` (no SOT/EOT) given its scored ``words`` (default: :meth:`word_weights`);
        a piece takes the largest weight of the words it overlaps (every piece of a split word has the word's)."""
        words = self.word_weights([caption])[0] if words is None else words
        covering: dict[int, list[WordWeight]] = {}  # character -> the words covering it
        for word in words:
            for c in range(word.start, word.end):
                covering.setdefault(c, []).append(word)
        rows = []
        for piece in align(caption):
            hits = list(dict.fromkeys(w for c in range(piece.start, piece.end) for w in covering.get(c, ())))
            weight = min(max([1.0, *(w.weight for w in hits)]), self.max_weight)
            reason = "; ".join(dict.fromkeys(w.reason for w in hits if w.reason))
            rows.append(TokenRow(piece.text, weight, reason, piece.start, piece.end, id=piece.id))
        return rows

    def weights(self, layouts: Sequence[Any], captions: Sequence[str]) -> Tensor:
        """Per-position weights (B, L), float32, 1.0 at SOT/EOT/padding, of the ``taco_plus.text`` ``layouts`` of
        ``captions`` (chunked ones right-padded with 1.0 to the longest)."""
        if len(layouts) != len(captions):
            raise ValueError(f"{len(layouts)} layouts for {len(captions)} captions")
        out = torch.ones(len(layouts), max((len(layout.ids) for layout in layouts), default=0))
        for b, (layout, caption, words) in enumerate(zip(layouts, captions, self.word_weights(captions))):
            rows = self.explain(caption, words)  # the caption's pieces, aligned once
            row = [1.0] * len(layout.ids)
            for pos, (token_id, k) in enumerate(zip(layout.ids, layout.piece_index)):
                if k < 0:
                    continue
                if k >= len(rows) or token_id != rows[k].id:
                    raise ValueError(f"layout of caption {b} does not match its BPE pieces at position {pos} "
                                     f"(piece {k}): was it tokenised from this caption?")
                row[pos] = rows[k].weight
            out[b, : len(row)] = torch.tensor(row)
        return out

    def model_inputs(self, text: Any, captions: Sequence[str]) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(tokens, mask, weights)`` for the model from the text features ``text`` of ``captions``."""
        return text.tokens, text.mask, self.weights(text.layouts, captions)

    def layout_rows(self, layout: Any, caption: str) -> list[TokenRow]:
        """:meth:`explain` laid out like ``layout``: SOT/EOT rows included, padding dropped."""
        rows, names = self.explain(caption), simple_tokenizer().decoder
        return [rows[k] if k >= 0 else TokenRow(names[token_id], 1.0, "", special=True, id=token_id)
                for token_id, real, k in zip(layout.ids, layout.mask, layout.piece_index) if real]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_weight={self.max_weight})"
