"""The caption token layout contract (taco_plus.text.tokenizer)."""

from __future__ import annotations

import json
import math

import open_clip
import pytest

from conftest import shared_path
from taco_plus.text.tokenizer import (
    CHUNK_PIECES,
    EOT_ID,
    SOT_ID,
    bpe_ids,
    bpe_words,
    layout_from_pieces,
    tokenize,
)

CAPTIONS = [
    "a brick building with red doors and windows",
    "",
    "   \n\t ",
    "The Eiffel Tower in Paris, at night!",
    "caf\u00e9 na\u00efve \U0001f600 \ufffd\ufffd r\u00e9sum\u00e9",
]
LONG = " ".join(f"word{i % 37} tower{i % 11}" if i % 3 else "lighthouse" for i in range(1000))


def check_layout(layout, pieces):
    """Invariants every layout must satisfy, whatever the policy."""
    n = len(layout.ids)
    assert len(layout.mask) == len(layout.piece_index) == n
    for pos, (tok, real, idx) in enumerate(zip(layout.ids, layout.mask, layout.piece_index)):
        if idx >= 0:
            assert real and tok == pieces[idx], pos
    for start, end in layout.chunks:
        assert layout.ids[start] == SOT_ID and layout.ids[end - 1] == EOT_ID
        assert all(layout.mask[start:end]) and 2 <= end - start <= 77
        assert layout.piece_index[start] == layout.piece_index[end - 1] == -1
        # Pieces inside a chunk are consecutive pieces of the caption.
        inner = layout.piece_index[start + 1 : end - 1]
        assert inner == list(range(inner[0], inner[0] + len(inner))) if inner else True
    assert sum(layout.mask) == sum(end - start for start, end in layout.chunks)


@pytest.mark.parametrize("caption", CAPTIONS)
@pytest.mark.parametrize("max_tokens", [38, 77, "chunked"])
@pytest.mark.parametrize("pad", ["eot", "zero"])
def test_layout_invariants(caption, max_tokens, pad):
    pieces = bpe_ids(caption)
    layout = tokenize(caption, max_tokens, pad)
    check_layout(layout, pieces)
    if max_tokens != "chunked":
        assert len(layout) == max_tokens
        n_real = sum(layout.mask)
        assert layout.mask == [True] * n_real + [False] * (max_tokens - n_real)
        assert set(layout.ids[n_real:]) <= {EOT_ID if pad == "eot" else 0}
        assert layout.truncated == max(0, len(pieces) - (max_tokens - 2))


def test_bpe_ids_is_open_clip_encode():
    tok = open_clip.SimpleTokenizer()
    for caption in CAPTIONS:
        assert bpe_ids(caption) == tok.encode(caption)
    # whitespace runs and case are cleaned away (NFC, as Hugging Face's CLIP tokenizer)
    assert bpe_ids("  A   PHOTO\n") == bpe_ids("a photo")


@pytest.mark.parametrize("caption", CAPTIONS + [LONG])
def test_zero_pad_77_matches_open_clip_tokenize(caption):
    """With pad='zero' and 77 tokens the layout is exactly open_clip's tokenizer output."""
    assert tokenize(caption, 77, "zero").ids == open_clip.tokenize([caption])[0].tolist()


def test_empty_caption_is_sot_eot():
    for caption in ["", "  "]:
        chunked = tokenize(caption, "chunked")
        assert chunked.ids == [SOT_ID, EOT_ID] and chunked.chunks == [(0, 2)]
        fixed = tokenize(caption, 38, "eot")
        assert fixed.ids[:2] == [SOT_ID, EOT_ID] and sum(fixed.mask) == 2 and fixed.truncated == 0


def test_truncation_keeps_eot_last_and_reports_dropped():
    pieces = bpe_ids(LONG)
    for length in (38, 77):
        layout = tokenize(LONG, length)
        assert layout.ids == [SOT_ID, *pieces[: length - 2], EOT_ID]
        assert layout.truncated == len(pieces) - (length - 2)
        assert all(layout.mask)


def test_chunked_long_caption_keeps_every_piece():
    pieces = bpe_ids(LONG)
    assert len(pieces) > 1000
    layout = tokenize(LONG, "chunked")
    assert layout.truncated == 0
    assert sorted(i for i in layout.piece_index if i >= 0) == list(range(len(pieces)))
    windows = math.ceil(len(pieces) / CHUNK_PIECES)
    assert len(layout.chunks) == windows
    assert len(layout) == len(pieces) + 2 * windows
    # Windows are full except the last, and the chunks tile the layout.
    assert [end - start for start, end in layout.chunks[:-1]] == [77] * (windows - 1)
    assert layout.chunks[0][0] == 0 and layout.chunks[-1][1] == len(layout)
    check_layout(layout, pieces)


@pytest.mark.parametrize("n", [0, 1, 74, 75, 76, 150, 151])
def test_chunk_boundaries(n):
    pieces = list(range(100, 100 + n))
    layout = layout_from_pieces(pieces, "chunked")
    assert len(layout.chunks) == max(1, math.ceil(n / 75))
    assert [i for i in layout.piece_index if i >= 0] == list(range(n))


def test_bpe_words_tile_the_pieces():
    for caption in CAPTIONS + [LONG]:
        pieces = bpe_ids(caption)
        words = bpe_words(caption)
        assert [p for _, a, b in words for p in pieces[a:b]] == pieces
        assert all(b > a for _, a, b in words)
    words = [w for w, _, _ in bpe_words("The Eiffel Tower, in Paris!")]
    assert words == ["the", "eiffel", "tower", ",", "in", "paris", "!"]


def test_kodak_caption_with_replacement_characters():
    captions = json.loads(shared_path("data", "captions", "kodak_ofa.json").read_text(encoding="utf-8"))
    caption = captions["kodim17.png"]
    assert "\ufffd" in caption
    layout = tokenize(caption, 38)
    check_layout(layout, bpe_ids(caption))
    assert sum(layout.mask) > 2


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["a list"]])
def test_non_string_caption_raises_type_error(bad):
    with pytest.raises(TypeError, match="must be a str"):
        tokenize(bad)
    with pytest.raises(TypeError):
        bpe_ids(bad)


@pytest.mark.parametrize("max_tokens", [0, 1, 249, 300, "38", "chunk", True, 38.0])
def test_bad_max_tokens(max_tokens):
    with pytest.raises(ValueError, match="max_tokens"):
        tokenize("a cat", max_tokens)


def test_bad_pad():
    with pytest.raises(ValueError, match="pad"):
        tokenize("a cat", 38, pad="hf")
