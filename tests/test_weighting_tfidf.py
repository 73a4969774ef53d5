"""TF-IDF weighting: fitted statistics, weights, fingerprinted artefacts."""

from __future__ import annotations

import json
import math

import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from taco_plus.text.tokenizer import tokenize
from taco_plus.weighting import (
    ArtefactError,
    FingerprintMismatchError,
    TfidfStatistics,
    TfidfWeighting,
    load_corpus,
)
from taco_plus.weighting.corpus import CaptionCorpus
from taco_plus.weighting.tfidf import STOP_WORDS, caption_terms

CORPUS = {"1.png": ["a red bus", "a red car"], "2.png": "a blue bus"}


@pytest.fixture
def caption_file(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(CORPUS), encoding="utf-8")
    return path


@pytest.fixture
def artefact(tmp_path, caption_file):
    path = tmp_path / "tfidf.json"
    TfidfStatistics.fit(load_corpus(caption_file)).save(path)
    return path


def by_token(rows):
    return {r.token: r.weight for r in rows}


def test_hand_computed_weights(artefact):
    stats = TfidfStatistics.load(artefact)
    assert stats.num_documents == 3
    # smooth idf = ln((1 + n) / (1 + df)) + 1
    assert stats.idf == pytest.approx(
        {"red": math.log(4 / 3) + 1, "bus": math.log(4 / 3) + 1, "car": math.log(2) + 1,
         "blue": math.log(2) + 1}
    )
    w = by_token(TfidfWeighting(artefact, max_weight=1.5).explain("A blue bus."))
    assert w["a"] == 1.0 and w["."] == 1.0  # stop word, punctuation
    assert w["blue"] == pytest.approx(1.5)  # the caption's most distinctive word
    assert w["bus"] == pytest.approx(1 + 0.5 * (math.log(4 / 3) + 1) / (math.log(2) + 1))


def test_idf_matches_scikit_learn_on_coco(tmp_path):
    from conftest import shared_path

    corpus = load_corpus(shared_path("data", "coco_mini", "annotations", "captions_train2017.json"))
    assert len(corpus.captions) == 400
    stats = TfidfStatistics.fit(corpus)
    reference = TfidfVectorizer(token_pattern=r"(?u)[^\W_]+", stop_words=sorted(STOP_WORDS))
    reference.fit(corpus.captions)
    assert set(stats.idf) == set(reference.vocabulary_)
    for term, col in reference.vocabulary_.items():
        assert stats.idf[term] == pytest.approx(reference.idf_[col])


def test_unseen_words_get_the_largest_idf(artefact):
    weighting = TfidfWeighting(artefact)
    assert weighting.stats.unseen_idf == pytest.approx(math.log(4) + 1)
    rows = {r.token: r for r in weighting.explain("a red zeppelin")}
    assert rows["zeppelin"].weight == pytest.approx(1.5) and "unseen" in rows["zeppelin"].reason
    assert rows["red"].weight == pytest.approx(1 + 0.5 * (math.log(4 / 3) + 1) / (math.log(4) + 1))


@pytest.mark.parametrize("max_weight", [1.0, 1.5, 3.0])
def test_weights_bounded_and_one_on_specials(artefact, max_weight):
    captions = ["A red bus, don't you think? It's 3-D!", "", "bus bus bus car", "the of and"]
    weighting = TfidfWeighting(artefact, max_weight=max_weight)
    layouts = [tokenize(c, 38) for c in captions]
    w = weighting.weights(layouts, captions)
    assert w.shape == (4, 38)
    assert float(w.min()) == 1.0 and float(w.max()) <= max_weight + 1e-6
    for b, layout in enumerate(layouts):
        for pos, k in enumerate(layout.piece_index):
            if k < 0:  # SOT, EOT, padding
                assert w[b, pos].item() == 1.0
    rows = weighting.explain(captions[0])
    assert {r.token: r.weight for r in rows if r.token in ("a", "'t", "you", "it", "'s", ",", "?")} == {
        "a": 1.0, "'t": 1.0, "you": 1.0, "it": 1.0, "'s": 1.0, ",": 1.0, "?": 1.0
    }
    assert float(weighting.weights([layouts[3]], [captions[3]]).max()) == 1.0  # only stop words


def test_repeated_word_counts_term_frequency(artefact):
    w = by_token(TfidfWeighting(artefact).explain("bus bus car"))
    # tf-idf(bus) = 2 * 1.288 > tf-idf(car) = 1.693: bus is the maximum.
    assert w["bus"] == pytest.approx(1.5)
    assert w["car"] == pytest.approx(1 + 0.5 * (math.log(2) + 1) / (2 * (math.log(4 / 3) + 1)))


def test_terms_split_hyphens_and_apostrophes():
    assert [t for t, _, _ in caption_terms("Don't wear a T-shirt, it's 30°C")] == [
        "don", "t", "wear", "a", "t", "shirt", "it", "s", "30", "c"
    ]


def test_artefact_round_trip_and_fingerprint(tmp_path, artefact, caption_file):
    stats = TfidfStatistics.load(artefact)
    corpus = load_corpus(caption_file)
    assert stats.fingerprint == corpus.fingerprint and len(stats.fingerprint) == 64
    document = json.loads(artefact.read_text("utf-8"))
    assert document["format"] == "taco-plus/weighting/tfidf"
    assert document["caption_set"]["fingerprint"] == corpus.fingerprint
    # Same caption file: accepted; a changed caption set: refused unless allowed.
    TfidfWeighting(artefact, caption_set=caption_file)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"1.png": "a green tram"}), encoding="utf-8")
    with pytest.raises(FingerprintMismatchError, match="weights fit"):
        TfidfWeighting(artefact, caption_set=other)
    with pytest.raises(FingerprintMismatchError):
        TfidfStatistics.load(artefact, expected_fingerprint="0" * 64)
    TfidfWeighting(artefact, caption_set=other, allow_fingerprint_mismatch=True)
    weighting = TfidfWeighting(artefact)
    weighting.check_caption_set(corpus.fingerprint)
    with pytest.raises(FingerprintMismatchError):
        weighting.check_caption_set("1" * 64)


def test_bad_artefacts_are_clear_errors(tmp_path, artefact):
    with pytest.raises(ArtefactError, match="taco-plus weights fit"):
        TfidfWeighting(tmp_path / "missing.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtefactError, match="not a JSON"):
        TfidfWeighting(garbage)
    document = json.loads(artefact.read_text("utf-8"))
    wrong_kind = tmp_path / "ner.json"
    wrong_kind.write_text(json.dumps({**document, "format": "taco-plus/weighting/ner"}), "utf-8")
    with pytest.raises(ArtefactError, match="expected a taco-plus tfidf artefact"):
        TfidfWeighting(wrong_kind)
    document["payload"]["idf"]["bus"] = 0.1
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document), "utf-8")
    with pytest.raises(ArtefactError, match="impossible"):
        TfidfWeighting(broken)


def test_invalid_settings():
    stats = TfidfStatistics({"bus": 2.0}, 1, "0" * 64)
    with pytest.raises(ValueError, match="max_weight"):
        TfidfWeighting(stats, max_weight=0.5)
    with pytest.raises(ValueError, match="cannot fit"):
        TfidfStatistics.fit(CaptionCorpus(("the of", "and"), "0" * 64, "stop words only"))
