"""Caption tokenization for the CLIP text tower, with an explicit token layout.

The layout is a contract: token weightings (TF-IDF, NER) map per-word weights onto
exactly these positions, and the adapter receives features in exactly this order.

* ``bpe_ids(text)`` are the BPE ids of the cleaned caption without start/end-of-text:
  open_clip's ``SimpleTokenizer.encode`` with Hugging Face's ``CLIPTokenizer`` cleaning
  (NFC, whitespace runs to one space, lower-case), the tokenizer of the TACO reference.
  open_clip's own cleaning also runs ftfy and unescapes HTML, which changes the ids of
  captions with curly quotes, ligatures, full-width letters or entities (``&amp;``).
* ``tokenize(text, max_tokens)`` places them in a layout:

  - fixed ``L`` (38 as in TACO, or 77): ``[SOT, pieces[:L-2]..., EOT, pad...]`` of
    length ``L``. End-of-text stays the last real token when a caption is truncated,
    as in Hugging Face's CLIP tokenizer and open_clip's. The pad id is a policy:
    ``"eot"`` (49407, Hugging Face's choice, what official TACO checkpoints saw) or
    ``"zero"`` (open_clip's 0, the token "!").
  - ``"chunked"``: the pieces are split into consecutive windows of at most 75; the
    layout concatenates ``[SOT, window..., EOT]`` over windows (no padding), so no
    piece of a long caption is dropped. Each window is encoded as its own 77-slot
    sequence, so the text tower's cost grows linearly with caption length.

A caption with no pieces (empty or whitespace only) gives ``[SOT, EOT]``.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import List, Literal, Tuple, Union

from open_clip.tokenizer import SimpleTokenizer

# open_clip's BPE vocabulary: 49,406 byte/merge tokens, then the two specials.
SOT_ID = 49406
EOT_ID = 49407
ZERO_PAD_ID = 0
VOCAB_SIZE = 49408
# CLIP's positional embedding has 77 slots; a chunk holds SOT + 75 pieces + EOT.
CONTEXT_LENGTH = 77
CHUNK_PIECES = CONTEXT_LENGTH - 2

PAD_IDS = {"eot": EOT_ID, "zero": ZERO_PAD_ID}
MaxTokens = Union[int, Literal["chunked"]]
PadPolicy = Literal["eot", "zero"]


def hf_clean(text: str) -> str:
    """Hugging Face ``CLIPTokenizer``'s normaliser: NFC, whitespace runs to one space, lower-case."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip().lower()


@functools.lru_cache(maxsize=1)
def simple_tokenizer() -> SimpleTokenizer:
    """open_clip's BPE tokenizer (vocabulary shipped with open_clip; loaded once),
    cleaning captions as the reference's Hugging Face tokenizer does."""
    tok = SimpleTokenizer()
    tok.clean_fn = hf_clean
    if (tok.sot_token_id, tok.eot_token_id, tok.vocab_size) != (SOT_ID, EOT_ID, VOCAB_SIZE):
        raise RuntimeError(  # pragma: no cover - guards against a changed open_clip vocabulary
            "open_clip's SimpleTokenizer vocabulary changed: "
            f"sot={tok.sot_token_id}, eot={tok.eot_token_id}, size={tok.vocab_size}"
        )
    return tok


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"a caption must be a str, got {type(text).__name__}: {text!r:.80}")
    return text


def bpe_ids(text: str) -> List[int]:
    """open_clip BPE ids of the cleaned caption, without start/end-of-text.

    Args:
        text: the caption, cleaned as Hugging Face's CLIP tokenizer does (:func:`hf_clean`).
    """
    return simple_tokenizer().encode(_check_text(text))


def bpe_words(text: str) -> List[Tuple[str, int, int]]:
    """The pre-tokenized words of the cleaned caption and their BPE piece ranges.

    Each entry is ``(word, start, end)``: the word as CLIP's regex splits the cleaned
    text (lower-case; punctuation runs are words too), and the range
    ``bpe_ids(text)[start:end]`` of its pieces. The ranges tile ``bpe_ids(text)``
    exactly, which lets a word-level weighting assign a weight to every piece.

    Args:
        text: the caption.
    """
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
    """One caption in the token layout the text encoder produces features for.

    Args:
        ids: token ids of the layout, length ``L`` (fixed) or ``sum(len(w) + 2)``
            over windows (chunked).
        mask: True for real positions (SOT, pieces, EOT), False for padding.
        piece_index: per position, the index into ``bpe_ids(text)`` of the piece
            there, or -1 for SOT, EOT and padding.
        chunks: ``(start, end)`` layout positions (end exclusive) of the real tokens,
            SOT to EOT, of each encoded sequence: one for a fixed length, one per
            75-piece window when chunked.
        truncated: number of BPE pieces dropped (always 0 when chunked).
    """

    ids: List[int]
    mask: List[bool]
    piece_index: List[int]
    chunks: List[Tuple[int, int]]
    truncated: int

    def __len__(self) -> int:
        return len(self.ids)


def check_policy(max_tokens: object, pad: object) -> None:
    """Raise a clear error for an unknown caption-length or padding policy."""
    if max_tokens != "chunked" and not (
        isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and 2 <= max_tokens <= CONTEXT_LENGTH
    ):
        raise ValueError(
            f"max_tokens must be an int in [2, {CONTEXT_LENGTH}] (38 as in TACO, or 77) "
            f"or 'chunked', got {max_tokens!r}"
        )
    if pad not in PAD_IDS:
        raise ValueError(f"pad must be one of {sorted(PAD_IDS)}, got {pad!r}")


def layout_from_pieces(pieces: List[int], max_tokens: MaxTokens = 38, pad: PadPolicy = "eot") -> TokenizedCaption:
    """Place already-computed BPE ids in the layout (see :func:`tokenize`)."""
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
    n_real = kept + 2
    n_pad = max_tokens - n_real
    return TokenizedCaption(
        ids=[SOT_ID, *pieces[:kept], EOT_ID] + [PAD_IDS[pad]] * n_pad,
        mask=[True] * n_real + [False] * n_pad,
        piece_index=[-1, *range(kept), -1] + [-1] * n_pad,
        chunks=[(0, n_real)],
        truncated=len(pieces) - kept,
    )


def tokenize(text: str, max_tokens: MaxTokens = 38, pad: PadPolicy = "eot") -> TokenizedCaption:
    """Tokenize one caption into the layout described in the module docstring.

    Args:
        text: the caption (any Unicode; ``None`` or non-str raises ``TypeError``).
        max_tokens: 38 (TACO), 77, any length in [2, 77], or ``"chunked"``.
        pad: padding id policy for fixed lengths, ``"eot"`` (49407) or ``"zero"`` (0).
    """
    check_policy(max_tokens, pad)
    return layout_from_pieces(bpe_ids(text), max_tokens, pad)


def num_sequences(n_pieces: int, max_tokens: MaxTokens) -> int:
    """How many text-tower sequences a caption of ``n_pieces`` BPE pieces costs."""
    if max_tokens == "chunked":
        return max(1, math.ceil(n_pieces / CHUNK_PIECES))
    return 1
