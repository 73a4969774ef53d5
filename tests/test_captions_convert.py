"""Converters on the real originals, the command line around them, and the quickstart set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO_ROOT, shared_path
from PIL import Image

from taco_plus.captions import CaptionSetSource, load_caption_set
from taco_plus.captions.checks import caption_problems
from taco_plus.captions.convert import convert_coco, convert_ofa
from taco_plus.captions.skimage_photos import SKIMAGE_PHOTO_IDS, export_skimage_photos
from taco_plus.cli import main


def test_kodak_ofa_flags_kodim17():
    caption_set = convert_ofa(shared_path("data", "captions", "kodak_ofa.json"))
    assert caption_set.name == "kodak_ofa" and len(caption_set.captions) == 24
    assert list(caption_set.issues) == ["kodim17.png"]
    assert "U+FFFD" in caption_set.issues["kodim17.png"][0]
    assert "\ufffd" in caption_set.captions["kodim17.png"][0]  # kept verbatim by default
    assert caption_set.provenance.model == "OFA"
    assert len(caption_set.provenance.origin["sha256"]) == 64
    assert caption_set.stats["share_over_38_tokens"] == 0.0


def test_drop_bad_removes_broken_captions():
    caption_set = convert_ofa(shared_path("data", "captions", "kodak_ofa.json"), drop_bad=True)
    assert "kodim17.png" not in caption_set.captions and len(caption_set.captions) == 23
    assert caption_set.issues == {}
    (note,) = caption_set.provenance.notes
    assert "(kodim17.png: contains 2 U+FFFD" in note and "1 of them left without any: ['kodim17.png']" in note


def test_clic_ofa_converts():
    caption_set = convert_ofa(shared_path("data", "captions", "clic_ofa.json"))
    assert len(caption_set.captions) == 428 and len(caption_set.issues) == 1
    assert all(caption_problems(caption_set.captions[i][0]) for i in caption_set.issues)


def test_coco_val_reports_images_without_captions(capsys, tmp_path):
    root = shared_path("data", "coco_mini")
    caption_set = convert_coco(root / "annotations" / "captions_val2017.json", image_dir=root / "val2017")
    assert caption_set.name == "coco_captions_val2017"
    assert len(caption_set.captions) == 79
    assert caption_set.stats["num_captions"] == 395
    assert len(caption_set.provenance.missing_images) == 80
    assert main(["captions", "convert", "coco", str(root / "annotations" / "captions_val2017.json"),
                 "--image-dir", str(root / "val2017"), "--out", str(tmp_path / "coco.json")]) == 0
    assert "80 images without captions: " in capsys.readouterr().out


def test_cli_convert_then_stats(tmp_path, capsys):
    out = tmp_path / "kodak.json"
    assert main(["captions", "convert", "ofa", str(shared_path("data", "captions", "kodak_ofa.json")),
                 "--out", str(out)]) == 0
    assert "kodim17.png" in capsys.readouterr().out
    assert CaptionSetSource(out).captions("kodim01.png") == ["a brick building with red doors and windows"]
    assert main(["captions", "stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert "caption set 'kodak_ofa'" in text and "images: 24" in text and "suspicious caption: kodim17.png" in text


def test_cli_convert_bad_input_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert main(["captions", "convert", "ofa", str(bad), "--out", str(tmp_path / "o.json")]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_quickstart_set_matches_exported_photos(tmp_path):
    caption_set = load_caption_set(REPO_ROOT / "taco_plus" / "captions" / "skimage_quickstart.json")
    assert list(caption_set.captions) == list(SKIMAGE_PHOTO_IDS)
    assert caption_set.provenance.source == "written for taco-plus"
    assert caption_set.issues == {}
    paths = export_skimage_photos(tmp_path)
    assert [p.name for p in paths] == list(SKIMAGE_PHOTO_IDS)
    for path in paths:
        pixels = np.asarray(Image.open(path))
        assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8 and pixels.std() > 10
    assert Image.open(tmp_path / "chelsea.png").size == (451, 300)
    assert export_skimage_photos(tmp_path / "two", ids=["coffee.png"]) == [tmp_path / "two" / "coffee.png"]
    with pytest.raises(KeyError, match="not a bundled"):
        export_skimage_photos(tmp_path, ids=["lena.png"])


BAD = '{"a.png": "a red door", "b.png": "", "c.png": "bad \\ud800 text", "d.png": ["", "two boats"]}'


def test_empty_and_surrogate_captions_are_reported_not_fatal(tmp_path, capsys):
    src, out, clean = tmp_path / "bad.json", tmp_path / "set.json", tmp_path / "clean.json"
    src.write_text(BAD)
    assert main(["captions", "convert", "ofa", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "b.png: empty caption" in text and "c.png: contains lone surrogates" in text
    loaded = load_caption_set(out)
    assert loaded.captions["c.png"] == ["bad \ud800 text"]  # kept verbatim: the file round-trips it
    assert sorted(loaded.issues) == ["b.png", "c.png", "d.png"]
    assert CaptionSetSource(out).fingerprint == CaptionSetSource(src).fingerprint
    assert main(["captions", "convert", "ofa", str(src), "--out", str(clean), "--drop-bad"]) == 0
    assert load_caption_set(clean).captions == {"a.png": ["a red door"], "d.png": ["two boats"]}
    for path in (src, out):
        capsys.readouterr()
        assert main(["captions", "stats", str(path)]) == 0
        text = capsys.readouterr().out
        assert "suspicious caption: b.png: empty caption" in text and "c.png: contains lone surrogates" in text


def test_empty_coco_caption_is_flagged(tmp_path):
    path = tmp_path / "captions_x.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "1.jpg"}],
                                "annotations": [{"id": 1, "image_id": 1, "caption": "  "},
                                                {"id": 2, "image_id": 1, "caption": "a cat"}]}))
    assert convert_coco(path).issues == {"1.jpg": ["caption 0: empty caption"]}
    assert convert_coco(path, drop_bad=True).captions == {"1.jpg": ["a cat"]}


@pytest.mark.parametrize("policy, expected", [
    ("skip", {"a.png": ["a red door"], "d.png": ["two boats"]}),
    ("empty", {"a.png": ["a red door"], "b.png": [""], "c.png": [""], "d.png": ["two boats"]}),
    ("keep", {"a.png": ["a red door"], "b.png": [""], "c.png": ["bad \ud800 text"], "d.png": ["two boats"]}),
])
def test_training_data_applies_the_bad_caption_policy(tmp_path, policy, expected):
    from taco_plus.data.dataset import CaptionedImageDataset, DatasetPairingError

    (tmp_path / "bad.json").write_text(BAD)
    (tmp_path / "images").mkdir()
    for name in "abcd":
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / f"{name}.png")
    source = CaptionSetSource(tmp_path / "bad.json")
    assert dict(CaptionedImageDataset(tmp_path / "images", source, bad_caption=policy).entries) == expected
    with pytest.raises(DatasetPairingError, match="empty/garbage captions"):
        CaptionedImageDataset(tmp_path / "images", source, bad_caption="error")
