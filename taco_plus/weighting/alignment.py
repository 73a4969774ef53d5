"""Character spans of CLIP's BPE pieces in the *original* caption: the tokenizer's steps rerun, cleaned positions
mapped back by a :class:`difflib.SequenceMatcher` alignment (docs/weighting.md, "From words to CLIP tokens")."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from functools import lru_cache

from taco_plus.text.tokenizer import simple_tokenizer

_END_OF_WORD = "</w>"
_NON_SPACE = re.compile(r"\S+")


@dataclass(frozen=True)
class Piece:
    """One CLIP BPE piece of a caption: its open_clip id, decoded text (U+FFFD for part of a character) and
    span ``[start, end)`` in the original caption (empty only for text the cleaner inserted)."""

    id: int
    text: str
    start: int
    end: int


def cleaned_to_original(original: str, cleaned: str) -> list[tuple[int, int]]:
    """Span ``(start, end)`` in ``original`` of every character of its cleaned, lower-cased version."""
    # str.lower may lengthen a character ("İ" -> "i̇"): track the source of each lowered one.
    lowered = original.lower()
    sources = [i for i, ch in enumerate(original) for _ in ch.lower()]
    n_orig = len(original)

    def orig_span(i0: int, i1: int) -> tuple[int, int]:
        # Lowered range [i0, i1) -> original range; empty ranges stay empty.
        if i1 <= i0:
            pos = sources[i0] if i0 < len(sources) else n_orig
            return pos, pos
        return sources[i0], sources[i1 - 1] + 1

    # Fast path: usually cleaning only lower-cases and collapses whitespace.
    words = list(_NON_SPACE.finditer(lowered))
    if " ".join(m.group() for m in words) == cleaned:
        spans = []
        for wi, m in enumerate(words):
            if wi:
                spans.append(orig_span(m.start() - 1, m.start() - 1))  # the joining space
            spans.extend(orig_span(i, i + 1) for i in range(m.start(), m.end()))
        return spans

    spans = [(0, 0)] * len(cleaned)
    # autojunk off: its popularity heuristic would discard spaces and common letters
    # in captions longer than 200 characters.
    matcher = difflib.SequenceMatcher(None, lowered, cleaned, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(j2 - j1):
                spans[j1 + k] = orig_span(i1 + k, i1 + k + 1)
        elif tag in ("replace", "insert"):
            # Spread the cleaned run over the original run proportionally, so an
            # unchanged length ("ﬁ" -> "fi" is not, "é" NFC is) maps one to one.
            n_src, n_dst = i2 - i1, j2 - j1
            for k in range(n_dst):
                a = i1 + (k * n_src) // n_dst
                b = i1 + math.ceil((k + 1) * n_src / n_dst)
                spans[j1 + k] = orig_span(a, max(b, a + 1) if n_src else a)
        # "delete": original characters with no cleaned counterpart (spaces).
    return spans


@lru_cache(maxsize=65536)
def align(caption: str) -> tuple[Piece, ...]:
    """CLIP BPE pieces of ``caption`` (ids equal to ``bpe_ids(caption)``) with their character spans in it;
    cached: training sees the same captions every epoch."""
    if not isinstance(caption, str):
        raise TypeError(f"caption must be a str, got {type(caption).__name__}")
    tok = simple_tokenizer()
    cleaned = tok.clean_fn(caption)
    spans = cleaned_to_original(caption, cleaned)
    pieces: list[Piece] = []
    for match in tok.pat.finditer(cleaned):
        word = match.group()
        char_of_byte = [ci for ci, ch in enumerate(word) for _ in ch.encode("utf-8")]  # byte -> character in the match
        byte_word = "".join(tok.byte_encoder[b] for b in word.encode("utf-8"))
        byte_pos = 0
        for piece in tok.bpe(byte_word).split(" "):
            n_bytes = len(piece) - (len(_END_OF_WORD) if piece.endswith(_END_OF_WORD) else 0)
            if byte_pos + n_bytes > len(char_of_byte):  # special token: one piece, whole match
                c0, c1 = 0, len(word)
            else:
                c0, c1 = char_of_byte[byte_pos], char_of_byte[byte_pos + n_bytes - 1] + 1
            byte_pos += n_bytes
            # Cleaned span [start + c0, start + c1) -> union of its original spans.
            orig = [spans[match.start() + c] for c in range(c0, c1)]
            nonempty = [s for s in orig if s[1] > s[0]]
            if nonempty:
                start, end = min(s[0] for s in nonempty), max(s[1] for s in nonempty)
                # A replaced run may drag in a collapsed space; pieces never hold one.
                while end - start > 1 and caption[start].isspace():
                    start += 1
                while end - start > 1 and caption[end - 1].isspace():
                    end -= 1
            else:
                start = end = orig[0][0]
            token_id = tok.encoder[piece]  # decode writes "</w>" as a space
            pieces.append(Piece(token_id, tok.decode([token_id]).removesuffix(" "), start, end))
    return tuple(pieces)
