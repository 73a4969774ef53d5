"""Caption tokenization: open_clip's BPE with the cleaning of Hugging Face's ``CLIPTokenizer`` (the reference's),
in the token layout that weightings and the adapter share (docs/text.md, "The token layout contract")."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, List, Literal, Tuple, Union

from open_clip.tokenizer import SimpleTokenizer

# open_clip's BPE vocabulary: 49,406 byte/merge tokens, then the two specials.
SOT_ID = 49406
EOT_ID = 49407
ZERO_PAD_ID = 0
VOCAB_SIZE = 49408
# CLIP's positional embedding has 77 slots; a chunk holds SOT + 75 pieces + EOT.
CONTEXT_LENGTH = 77
CHUNK_PIECES = CONTEXT_LENGTH - 2
LONG_CONTEXT_LENGTH = 248  # Long-CLIP's stretched positional embedding (taco_plus.text.longclip)

PAD_IDS = {"eot": EOT_ID, "zero": ZERO_PAD_ID}
MaxTokens = Union[int, Literal["chunked"]]
PadPolicy = Literal["eot", "zero"]


def hf_clean(text: str) -> str:
    """Hugging Face ``CLIPTokenizer``'s normaliser: NFC, whitespace runs to one space, lower-case."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip().lower()


@functools.lru_cache(maxsize=1)
def simple_tokenizer() -> SimpleTokenizer:
    """open_clip's BPE tokenizer, cleaning captions as the reference's Hugging Face tokenizer does."""
    tok = SimpleTokenizer()
    tok.clean_fn = hf_clean
    return tok


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"a caption must be a str, got {type(text).__name__}: {text!r:.80}")
    return text


def bpe_ids(text: str) -> List[int]:
    """open_clip BPE ids of the caption cleaned by :func:`hf_clean`, without start/end-of-text."""
    return simple_tokenizer().encode(_check_text(text))


def bpe_words(text: str) -> List[Tuple[str, int, int]]:
    """``(word, start, end)`` per word of CLIP's regex split, ``bpe_ids(text)[start:end]`` its pieces: the ranges
    tile ``bpe_ids(text)``, so a word-level weighting weights every piece."""
    tok = simple_tokenizer()
    cleaned = tok.clean_fn(_check_text(text))
    words, start = [], 0
    # Same loop as SimpleTokenizer.encode, keeping the word boundaries.
    for word in tok.pat.findall(cleaned):
        byte_word = "".join(tok.byte_encoder[b] for b in word.encode("utf-8"))
        n = len(tok.bpe(byte_word).split(" "))
        words.append((word, start, start + n))
        start += n
    return words


@dataclass
class TokenizedCaption:
    """One caption in the token layout the text encoder produces features for."""

    ids: List[int]  # length L (fixed), or sum(len(window) + 2) over windows (chunked)
    mask: List[bool]  # True for real positions (SOT, pieces, EOT), False for padding
    piece_index: List[int]  # per position, its index into bpe_ids(text); -1 for SOT, EOT, pad
    chunks: List[Tuple[int, int]]  # (start, end) of each encoded sequence's SOT..EOT
    truncated: int  # BPE pieces dropped (0 when chunked)

    def __len__(self) -> int:
        return len(self.ids)


def check_policy(max_tokens: object, pad: object) -> None:
    """Raises a clear error for an unknown caption-length or padding policy."""
    if max_tokens != "chunked" and not (type(max_tokens) is int and 2 <= max_tokens <= LONG_CONTEXT_LENGTH):
        raise ValueError(f"max_tokens must be an int in [2, {LONG_CONTEXT_LENGTH}] (38 as in TACO, 77 for CLIP, 248 "
                         f"for Long-CLIP; at most the text tower's positions) or 'chunked', got {max_tokens!r}")
    if pad not in PAD_IDS:
        raise ValueError(f"pad must be one of {sorted(PAD_IDS)}, got {pad!r}")


def layout_from_pieces(pieces: List[int], max_tokens: MaxTokens = 38, pad: PadPolicy = "eot") -> TokenizedCaption:
    """Places already-computed BPE ids in the layout (see :func:`tokenize`)."""
    check_policy(max_tokens, pad)
    if max_tokens == "chunked":
        windows = [range(i, min(i + CHUNK_PIECES, len(pieces))) for i in range(0, len(pieces), CHUNK_PIECES)]
        ids, piece_index, chunks = [], [], []
        for window in windows or [range(0)]:
            start = len(ids)
            ids += [SOT_ID, *(pieces[i] for i in window), EOT_ID]
            piece_index += [-1, *window, -1]
            chunks.append((start, len(ids)))
        return TokenizedCaption(ids, [True] * len(ids), piece_index, chunks, truncated=0)

    kept = min(len(pieces), max_tokens - 2)
    n_pad = max_tokens - kept - 2
    return TokenizedCaption(ids=[SOT_ID, *pieces[:kept], EOT_ID] + [PAD_IDS[pad]] * n_pad,
                            mask=[True] * (kept + 2) + [False] * n_pad,
                            piece_index=[-1, *range(kept), -1] + [-1] * n_pad, chunks=[(0, kept + 2)],
                            truncated=len(pieces) - kept)


def tokenize(text: str, max_tokens: MaxTokens = 38, pad: PadPolicy = "eot") -> TokenizedCaption:
    """One caption's layout: ``max_tokens`` 38 (TACO), 77, 248 (Long-CLIP), any length in [2, 248], or
    ``"chunked"``; ``pad`` ``"eot"`` (49407) or ``"zero"`` (0) for fixed lengths."""
    return layout_from_pieces(bpe_ids(text), max_tokens, pad)


def real_lengths(captions: Iterable[str], max_tokens: MaxTokens = 38) -> List[int]:
    """Real tokens (SOT, pieces, EOT; padding not counted) of each caption's layout."""
    return [sum(layout_from_pieces(bpe_ids(c), max_tokens).mask) for c in captions]
