"""The caption-set file format: round trip, atomic writes, loader errors, statistics."""

from __future__ import annotations

import json

import pytest

from taco_plus.captions.format import (
    FORMAT_VERSION,
    CaptionFormatError,
    Provenance,
    build_caption_set,
    caption_stats,
    clip_token_count,
    load_caption_set,
    save_caption_set,
)


def _valid(tmp_path):
    caption_set = build_caption_set(
        "tiny",
        {"a.png": "a red door with a brass knocker", "b.png": ["two boats", "boats on a lake"]},
        Provenance(source="written for a test", usage={"b.png": [None, {"prompt_tokens": 3, "completion_tokens": 4}]}),
    )
    path = tmp_path / "tiny.json"
    save_caption_set(caption_set, path)
    return path


def test_round_trip_keeps_everything(tmp_path):
    path = _valid(tmp_path)
    loaded = load_caption_set(path)
    assert loaded.name == "tiny"
    assert loaded.captions == {"a.png": ["a red door with a brass knocker"], "b.png": ["two boats", "boats on a lake"]}
    assert loaded.provenance.source == "written for a test"
    assert loaded.provenance.usage["b.png"][1] == {"prompt_tokens": 3, "completion_tokens": 4}
    assert loaded.stats["num_images"] == 2 and loaded.stats["num_captions"] == 3
    data = json.loads(path.read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.json"]  # no temporary files left


def test_clip_token_count_includes_start_and_end():
    assert clip_token_count("hello world") == 4  # "hello", "world", SOT, EOT
    assert clip_token_count("") == 2


def test_stats_shares_over_38_and_77_tokens():
    short = "a cat"  # 4 tokens
    mid = " ".join(["cat"] * 50)  # 52 tokens: over 38 only
    long = " ".join(["cat"] * 100)  # 102 tokens: over both
    stats = caption_stats({"a": [short, mid], "b": [long, short]})
    assert stats["num_captions"] == 4
    assert stats["share_over_38_tokens"] == 0.5
    assert stats["share_over_77_tokens"] == 0.25
    assert stats["clip_tokens_per_caption"]["max"] == 102
    assert stats["clip_tokens_per_caption"]["min"] == 4
    assert stats["words_per_caption"]["mean"] == pytest.approx((2 + 50 + 100 + 2) / 4)


def _mutate(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(format="something-else"), '"format" must be'),
        (lambda d: d.update(format_version=99), "format_version 99 is newer"),
        (lambda d: d.update(format_version="1"), '"format_version" must be an integer'),
        (lambda d: d.update(captions={}), "captions: no captions"),
        (lambda d: d.update(captions=["a"]), "expected an object of image id"),
        (lambda d: d["captions"].update({"a.png": "bare string"}), "captions['a.png']: expected a non-empty list"),
        (lambda d: d["captions"].update({"a.png": ["ok", None]}), "captions['a.png'][1]: expected a string, got null"),
        (lambda d: d["captions"].update({"a.png": [3]}), "captions['a.png'][0]"),
        (lambda d: d.pop("provenance"), '"provenance" must be an object'),
        (lambda d: d["provenance"].pop("source"), 'provenance["source"]'),
        (lambda d: d["provenance"].update(surprise=1), "unknown keys ['surprise']"),
        (lambda d: d["provenance"].update(usage={"zzz.png": [None]}), "which has no captions"),
        (lambda d: d["provenance"].update(usage={"b.png": [None]}), "one entry per caption"),
        (lambda d: d["provenance"].update(prompt={"file": "p.txt"}), "sha256"),
        (lambda d: d["stats"].update(num_images=5), 'stats["num_images"] is 5'),
        (lambda d: d["stats"].pop("share_over_77_tokens"), "stats is missing"),
        (lambda d: d.update(issues={"a.png": "x"}), '"issues" must map'),
    ],
)
def test_loader_names_file_and_problem(tmp_path, change, message):
    path = _valid(tmp_path)
    _mutate(path, change)
    with pytest.raises(CaptionFormatError) as info:
        load_caption_set(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_loader_rejects_broken_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"format": "taco-plus-captions",\n "captions": {')
    with pytest.raises(CaptionFormatError, match=r"broken.json: not valid JSON \(line 2"):
        load_caption_set(path)


def test_loader_rejects_non_utf8(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"a.png": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(CaptionFormatError, match="not UTF-8"):
        load_caption_set(path)


def test_save_refuses_invalid_sets(tmp_path):
    caption_set = build_caption_set("x", {"a.png": "fine"}, Provenance(source="test"))
    caption_set.captions["b.png"] = []
    with pytest.raises(CaptionFormatError):
        save_caption_set(caption_set, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
