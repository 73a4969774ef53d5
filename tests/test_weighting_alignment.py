"""BPE pieces -> character spans of the original caption (taco_plus.weighting.alignment)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import shared_path
from taco_plus.text.tokenizer import bpe_ids, tokenize
from taco_plus.weighting import NoWeighting, TfidfStatistics, TfidfWeighting, align
from taco_plus.weighting.alignment import cleaned_to_original
from taco_plus.weighting.corpus import CaptionCorpus

# caption -> expected (piece text, original substring) pairs.
CASES = {
    "A golden retriever runs past the Eiffel Tower in Paris.": [
        ("a", "A"), ("golden", "golden"), ("retriever", "retriever"), ("runs", "runs"),
        ("past", "past"), ("the", "the"), ("eiffel", "Eiffel"), ("tower", "Tower"),
        ("in", "in"), ("paris", "Paris"), (".", "."),
    ],
    "Don't  touch it's 3-D T-shirt!!": [
        ("don", "Don"), ("'t", "'t"), ("touch", "touch"), ("it", "it"), ("'s", "'s"),
        ("3", "3"), ("-", "-"), ("d", "D"), ("t", "T"), ("-", "-"), ("shirt", "shirt"),
        ("!!", "!!"),
    ],
    "1,024 cats\tin\n2023": [
        ("1", "1"), (",", ","), ("0", "0"), ("2", "2"), ("4", "4"), ("cats", "cats"),
        ("in", "in"), ("2", "2"), ("0", "0"), ("2", "2"), ("3", "3"),
    ],
    # Decomposed accent (NFC-composed), curly quotes, ligature, full-width: cleaned as
    # the reference's Hugging Face tokenizer does (NFC only), so the last three stay
    # multi-byte characters whose byte pieces each span the whole character.
    "Cre\u0300me \u201cbr\u00fbl\u00e9e\u201d \ufb01sh \uff21\uff22": [
        ("cr", "Cr"), ("è", "e\u0300"), ("me", "me"), ("\ufffd", "\u201c"), ("\ufffd", "\u201c"), ("br", "br"),
        # "û" is two UTF-8 bytes, BPE-split in two pieces: each spans the whole "û".
        ("\ufffd", "û"), ("\ufffd", "û"), ("l", "l"), ("ée", "ée"), ("\ufffd", "\u201d"), ("\ufffd", "\u201d"),
        *[("\ufffd", "\ufb01")] * 3, ("sh", "sh"), *[("\ufffd", "\uff21")] * 3, *[("\ufffd", "\uff22")] * 3,
    ],
    # An emoji is 4 UTF-8 bytes: a piece made of some of them spans the whole emoji.
    "dog \U0001f436 run": [("dog", "dog"), ("\U0001f436", "\U0001f436"), ("run", "run")],
    # No HTML unescaping (the reference's tokenizer does none).
    "Fish &amp; chips": [("fish", "Fish"), ("&", "&"), ("amp", "amp"), (";", ";"), ("chips", "chips")],
    "  ": [],
}


@pytest.mark.parametrize("caption", list(CASES))
def test_pieces_and_spans(caption):
    pieces = align(caption)
    assert [p.id for p in pieces] == bpe_ids(caption)
    got = [(p.text, caption[p.start : p.end]) for p in pieces]
    assert got == CASES[caption]


def test_kodim17_replacement_characters():
    captions = json.loads(shared_path("data", "captions", "kodak_ofa.json").read_text("utf-8"))
    caption = captions["kodim17.png"]
    assert "\ufffd" in caption
    pieces = align(caption)
    assert [p.id for p in pieces] == bpe_ids(caption)
    bad = [p for p in pieces if caption[p.start : p.end] == "\ufffd"]
    assert len(bad) == caption.count("\ufffd")
    assert [caption[p.start : p.end] for p in pieces[-4:]] == ["K", "\ufffd", "F", "\ufffd"]


def _check_spans(caption):
    pieces = align(caption)
    assert [p.id for p in pieces] == bpe_ids(caption)
    for prev, piece in zip(pieces, pieces[1:]):
        assert prev.start <= piece.start
    for piece in pieces:
        assert 0 <= piece.start < piece.end <= len(caption)
        if piece.text.isascii() and piece.text.isalnum():
            assert caption[piece.start : piece.end].lower() == piece.text


def test_every_real_caption_aligns():
    files = [shared_path("data", "captions", "kodak_ofa.json"), shared_path("data", "captions", "clic_ofa.json")]
    captions = [c for f in files for c in json.loads(f.read_text("utf-8")).values()]
    coco = shared_path("data", "coco_mini", "annotations", "captions_val2017.json")
    captions += [a["caption"] for a in json.loads(coco.read_text("utf-8"))["annotations"]]
    assert len(captions) > 800
    for caption in captions:
        _check_spans(caption)


def test_lowercase_that_lengthens():
    # "İ".lower() is two characters: both cleaned characters map back to "İ".
    caption = "\u0130stanbul"
    spans = cleaned_to_original(caption, "i\u0307stanbul")
    assert spans[0] == spans[1] == (0, 1) and spans[2] == (1, 2)
    pieces = align(caption)
    assert [p.id for p in pieces] == bpe_ids(caption)
    assert [(p.text, caption[p.start : p.end]) for p in pieces] == [
        ("i", "\u0130"), ("\u0307", "\u0130"), ("stanbul", "stanbul")
    ]


def test_long_caption_chunked_weights():
    words = [f"lighthouse{i % 7} near harbour-wall, boat's mast" for i in range(60)]
    caption = " ".join(words)
    stats = TfidfStatistics.fit(CaptionCorpus((caption, "a boat"), "f" * 64, "test"))
    weighting = TfidfWeighting(stats)
    layout = tokenize(caption, "chunked")
    assert len(align(caption)) > 3 * 75 and layout.truncated == 0
    w = weighting.weights([layout], [caption])[0]
    rows = weighting.explain(caption)
    assert w.shape == (len(layout.ids),)
    for pos, k in enumerate(layout.piece_index):
        assert w[pos].item() == pytest.approx(rows[k].weight if k >= 0 else 1.0)
    for start, end in layout.chunks:  # every chunk's SOT and EOT weigh exactly 1
        assert w[start].item() == w[end - 1].item() == 1.0
    assert w.max().item() == pytest.approx(1.5) and w.min().item() == 1.0
    # 38-token truncation keeps the first pieces' weights.
    short = tokenize(caption, 38)
    w38 = weighting.weights([short], [caption])[0]
    assert torch.equal(w38[1:37], w[1:37]) and w38[37].item() == 1.0


def test_layout_from_another_caption_is_an_error():
    weighting = TfidfWeighting(TfidfStatistics({"cat": 2.0}, 1, "0" * 64))
    with pytest.raises(ValueError, match="does not match"):
        weighting.weights([tokenize("a cat", 38)], ["a dog"])
    with pytest.raises(ValueError, match="2 layouts for 1 captions"):
        weighting.weights([tokenize("a cat", 38)] * 2, ["a cat"])


def test_none_weights_are_ones_in_layout_shape():
    layouts = [tokenize("a cat", 38), tokenize("a dog " * 50, "chunked")]
    w = NoWeighting().weights(layouts, ["a cat", "a dog " * 50])
    assert w.shape == (2, max(len(l.ids) for l in layouts)) and bool((w == 1.0).all())


def test_weights_align_each_caption_once(monkeypatch):
    import taco_plus.weighting.base as base

    caption = "A golden retriever runs past the Eiffel Tower in Paris."
    weighting = TfidfWeighting(TfidfStatistics({"retriever": 3.0, "paris": 2.5}, 4, "0" * 64))
    expected = weighting.weights([tokenize(caption, 38)], [caption])
    calls = []
    monkeypatch.setattr(base, "align", lambda c: calls.append(c) or align(c))
    w = weighting.weights([tokenize(caption, 38)], [caption])
    assert calls == [caption], f"the caption was aligned {len(calls)} times"
    assert torch.equal(w, expected) and w.max().item() > 1.0
