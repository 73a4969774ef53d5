"""Caption sources used by training and evaluation."""

from __future__ import annotations

import json

import pytest
from conftest import shared_path

from taco_plus.captions import (
    CaptionFormatError,
    CaptionSetSource,
    CocoCaptionsSource,
    Provenance,
    UnknownImageError,
    build_caption_set,
    save_caption_set,
)


def test_plain_and_versioned_files_give_the_same_source(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"b.png": "two boats", "a.png": ["a door", "a red door"]}))
    versioned = tmp_path / "versioned.json"
    save_caption_set(
        build_caption_set("v", {"b.png": ["two boats"], "a.png": ["a door", "a red door"]}, Provenance(source="t")),
        versioned,
    )
    s1, s2 = CaptionSetSource(plain), CaptionSetSource(versioned)
    assert s1.captions("a.png") == s2.captions("a.png") == ["a door", "a red door"]
    assert s1.captions("b.png") == ["two boats"]
    assert len(s1) == len(s2) == 2 and set(s1.ids()) == {"a.png", "b.png"}
    assert "a.png" in s1 and "c.png" not in s1
    assert s1.fingerprint == s2.fingerprint and len(s1.fingerprint) == 64
    assert s2.name == "v" and s1.name == "plain"


def test_fingerprint_changes_with_any_caption(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"a.png": "a door"}))
    before = CaptionSetSource(path).fingerprint
    path.write_text(json.dumps({"a.png": "a doors"}))
    assert CaptionSetSource(path).fingerprint != before


def test_unknown_id_is_a_clear_key_error(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"a.png": "a door"}))
    source = CaptionSetSource(path)
    with pytest.raises(KeyError) as info:
        source.captions("zzz.png")
    assert isinstance(info.value, UnknownImageError)
    assert str(info.value) == "no captions for image 'zzz.png' in caption source 'p'"


def test_returned_lists_are_copies(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"a.png": "a door"}))
    source = CaptionSetSource(path)
    source.captions("a.png").append("mutated")
    assert source.captions("a.png") == ["a door"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('["a", "b"]', "top level: expected an object"),
        ('{"a.png": 3}', "'a.png': expected a caption string"),
        ('{"a.png": [""]}', None),  # empty text is a broken caption to flag, not a broken file
        ('{"a.png": [7]}', r"'a.png'\[0\]: expected a string, got int"),
        ("{}", "no captions"),
    ],
)
def test_malformed_plain_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    if message is None:
        assert CaptionSetSource(path).captions("a.png") == [""]
        return
    with pytest.raises(CaptionFormatError, match=message):
        CaptionSetSource(path)


def test_coco_source_on_shared_annotations():
    train = CocoCaptionsSource(shared_path("data", "coco_mini", "annotations", "captions_train2017.json"))
    assert len(train) == 80
    assert all(len(train.captions(i)) == 5 for i in train.ids())
    assert all(i.endswith(".jpg") for i in train.ids())
    assert train.uncaptioned == []


def test_coco_uncaptioned_image_error(tmp_path):
    path = tmp_path / "captions_x.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}],
        "annotations": [{"id": 10, "image_id": 1, "caption": "b second "}, {"id": 5, "image_id": 1, "caption": "a first"}],
    }))
    source = CocoCaptionsSource(path)
    assert source.ids() == ["1.jpg"]
    assert source.captions("1.jpg") == ["a first", "b second"]  # annotation-id order, stripped
    with pytest.raises(UnknownImageError, match="'2.jpg' is listed in captions_x.json but has no caption"):
        source.captions("2.jpg")


def test_coco_malformed(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "1.jpg"}],
                                "annotations": [{"image_id": 7, "caption": "x"}]}))
    with pytest.raises(CaptionFormatError, match="unknown image id 7"):
        CocoCaptionsSource(path)
    path.write_text(json.dumps({"a.png": "x"}))
    with pytest.raises(CaptionFormatError, match="not a COCO captions file"):
        CocoCaptionsSource(path)


@pytest.mark.parametrize("kind", ["set", "coco"])
def test_open_caption_source_reads_the_file_once(tmp_path, monkeypatch, kind):
    import taco_plus.captions.format as fmt
    import taco_plus.captions.sources as sources

    path = tmp_path / "captions.json"
    if kind == "coco":
        path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                    "annotations": [{"id": 5, "image_id": 1, "caption": " a door "}]}))
    else:
        path.write_text(json.dumps({"a.png": "a door"}))
    reads = []
    monkeypatch.setattr(sources, "read_json", lambda p: reads.append(p) or fmt.read_json(p))
    source = sources.open_caption_source(path)
    assert len(reads) == 1, "the caption file was read and parsed more than once"
    assert type(source) is (CocoCaptionsSource if kind == "coco" else CaptionSetSource)
    assert source.captions("a.png") == ["a door"] and source.path == path and source.name == "captions"


def test_sources_keep_their_constructor_arguments(tmp_path):
    """The ``captions`` configs instantiate the sources by keyword."""
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"a.png": "a door"}))
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                "annotations": [{"image_id": 1, "caption": "a door"}]}))
    assert CaptionSetSource(path=plain).captions("a.png") == CocoCaptionsSource(annotations_json=coco).captions("a.png")
