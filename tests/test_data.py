"""Captioned image datasets: pairing policies on real edge cases, crops, ordering."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_path
from taco_plus.captions.sources import CaptionSetSource, CocoCaptionsSource
from taco_plus.data import (
    BadImageError,
    CaptionedImageData,
    CaptionedImageDataset,
    DatasetPairingError,
    ResumableSampler,
    SkimagePhotosData,
    collate_items,
    fit_to_crop,
    random_crop,
    read_image_list,
)


def _write_images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)


@pytest.fixture
def small_set(tmp_path):
    """Four images, captions as a string, a list, one missing, one for a missing file."""
    _write_images(tmp_path / "img", {"a.png": (40, 50), "b.png": (70, 90), "c.png": (64, 64), "d.jpg": (30, 80)})
    captions = {
        "a.png": "a red square",
        "b.png": ["first of b", "second of b", "third of b"],
        "d.jpg": "a wide strip",
        "gone.png": "an image that is not there",
    }
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(captions))
    return tmp_path / "img", CaptionSetSource(path)


def test_items_and_report(small_set, caplog):
    folder, source = small_set
    with caplog.at_level(logging.WARNING):
        ds = CaptionedImageDataset(folder, source, crop_size=32)
    assert len(ds) == 3 and ds.report.images == 4
    assert ds.report.without_caption == ["c.png"]
    assert ds.report.without_image == ["gone.png"]
    assert "1 images have no caption: c.png" in caplog.text
    assert "gone.png" in caplog.text
    item = ds[0]
    assert set(item) == {"image", "caption", "captions", "id"}
    assert item["id"] == "a.png" and item["caption"] == "a red square"
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0


def test_policies(small_set):
    folder, source = small_set
    with pytest.raises(DatasetPairingError, match="no caption"):
        CaptionedImageDataset(folder, source, missing_caption="error")
    with pytest.raises(DatasetPairingError, match="no image file"):
        CaptionedImageDataset(folder, source, missing_image="error")
    empty = CaptionedImageDataset(folder, source, missing_caption="empty")
    assert [e[0] for e in empty.entries] == ["a.png", "b.png", "c.png", "d.jpg"]
    assert empty[2]["caption"] == ""
    with pytest.raises(ValueError, match="missing_caption"):
        CaptionedImageDataset(folder, source, missing_caption="ignore")


def test_kodak_garbage_caption_policies():
    kodak = shared_path("data", "kodak")
    source = CaptionSetSource(shared_path("data", "captions", "kodak_ofa.json"))
    skip = CaptionedImageDataset(kodak, source)
    assert len(skip) == 23 and "kodim17.png" in skip.report.bad_captions
    assert "U+FFFD" in skip.report.bad_captions["kodim17.png"][0]
    assert "kodim17.png" not in [e[0] for e in skip.entries]
    keep = CaptionedImageDataset(kodak, source, bad_caption="keep")
    assert dict(keep.entries)["kodim17.png"][0].endswith("\ufffd")
    empty = CaptionedImageDataset(kodak, source, bad_caption="empty")
    assert dict(empty.entries)["kodim17.png"] == [""]
    with pytest.raises(DatasetPairingError, match="kodim17"):
        CaptionedImageDataset(kodak, source, bad_caption="error")


def test_coco_val_images_without_captions():
    root = shared_path("data", "coco_mini")
    source = CocoCaptionsSource(root / "annotations" / "captions_val2017.json")
    ds = CaptionedImageDataset(root / "val2017", source)
    assert ds.report.images == 159 and len(ds.report.without_caption) == 80 and len(ds) == 79
    with pytest.raises(DatasetPairingError, match="80 images have no caption"):
        CaptionedImageDataset(root / "val2017", source, missing_caption="error")
    # Evaluation caption: the first by annotation id, for every image.
    ev = CaptionedImageDataset(root / "val2017", source, caption_choice="first")
    image_id, caps = ev.entries[0]
    assert len(caps) == 5 and caps[0] == source.captions(image_id)[0]


def test_caption_draw_is_seeded_per_epoch(small_set):
    folder, source = small_set
    ds = CaptionedImageDataset(folder, source, crop_size=16, seed=3)
    b = [e[0] for e in ds.entries].index("b.png")
    draws = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        first, second = ds[b], ds[b]
        assert first["caption"] == second["caption"]  # same epoch, same draw
        assert torch.equal(first["image"], second["image"])
        draws.append(first["caption"])
    assert len(set(draws)) > 1  # different epochs draw different captions
    again = CaptionedImageDataset(folder, source, crop_size=16, seed=3)
    again.set_epoch(5)
    assert again[b]["caption"] == draws[5]


def test_small_images_are_upscaled_or_reflected():
    x = torch.rand(3, 30, 80)
    up = fit_to_crop(x, 64, "upscale")
    assert up.shape == (3, 64, 171) and 0 <= up.min() and up.max() <= 1
    refl = fit_to_crop(x, 64, "reflect")
    assert refl.shape == (3, 64, 80)
    assert torch.equal(refl[:, :30], x) and torch.equal(refl[:, 30:59], x.flip(1)[:, 1:])
    tiny = fit_to_crop(torch.rand(3, 1, 5), 8, "reflect")
    assert tiny.shape == (3, 8, 8)
    g = torch.Generator().manual_seed(0)
    assert random_crop(torch.rand(3, 100, 120), 64, g).shape == (3, 64, 64)


def test_min_side_filter_and_limit(small_set):
    folder, source = small_set
    ds = CaptionedImageDataset(folder, source, min_side=40)
    assert [e[0] for e in ds.entries] == ["a.png", "b.png"] and ds.report.too_small == ["d.jpg"]
    assert len(CaptionedImageDataset(folder, source, limit=1)) == 1


def test_resumable_sampler_order():
    data = list(range(10))
    full = ResumableSampler(data, seed=7)
    full.set_epoch(2)
    order = list(full)
    assert sorted(order) == data
    tail = ResumableSampler(data, seed=7)
    tail.set_epoch(2, start=4)
    assert list(tail) == order[4:] and len(tail) == 6
    other = ResumableSampler(data, seed=7)
    other.set_epoch(3)
    assert list(other) != order
    shards = []
    for rank in range(3):
        s = ResumableSampler(data, num_replicas=3, rank=rank, seed=7)
        s.set_epoch(2)
        shards.append(list(s))
    flat = [i for shard in shards for i in shard]
    assert len(flat) == 9 and len(set(flat)) == 9  # disjoint shards, remainder dropped


def test_loaders_and_collate(small_set):
    folder, source = small_set
    data = CaptionedImageData(folder, source, crop_size=24, batch_size=2, num_workers=0)
    ds = data.train_dataset(seed=1)
    loader, sampler = data.train_loader(ds, seed=1)
    sampler.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 1  # 3 images, batch 2, last partial batch dropped
    assert batches[0]["image"].shape == (2, 3, 24, 24) and len(batches[0]["caption"]) == 2
    ev = data.eval_dataset()
    assert [item["image"].shape[-2:] for item in ev] == [(40, 50), (70, 90), (30, 80)]
    assert ev[1]["caption"] == "first of b" and ev[1]["captions"] == ["first of b", "second of b", "third of b"]
    with pytest.raises(ValueError, match="differ in size"):
        collate_items([{"image": torch.zeros(3, 2, 2), "caption": "", "id": "x"},
                       {"image": torch.zeros(3, 2, 3), "caption": "", "id": "y"}])
    with pytest.raises(ValueError, match="fewer than one batch"):
        CaptionedImageData(folder, source, batch_size=8, num_workers=0).train_loader(ds)


def test_skimage_photos_are_exported(tmp_path):
    from taco_plus.captions.skimage_photos import QUICKSTART_CAPTIONS

    data = SkimagePhotosData(tmp_path / "photos", CaptionSetSource(QUICKSTART_CAPTIONS), crop_size=64, num_workers=0)
    ds = data.train_dataset()
    assert len(ds) == 8 and not ds.report.without_caption and not ds.report.bad_captions
    assert ds[0]["image"].shape == (3, 64, 64)


# ------------------------------------------------------------------ unreadable files


def _corrupt_set(tmp_path):
    """Four readable images and four unreadable files (real corruptions), all captioned."""
    folder = tmp_path / "img"
    _write_images(folder, {"a.png": (40, 40), "c.png": (40, 40), "f.png": (40, 40), "g.png": (40, 40)})
    Image.open(folder / "a.png").save(tmp_path / "whole.jpg")
    jpeg, png = (tmp_path / "whole.jpg").read_bytes(), (folder / "a.png").read_bytes()
    (folder / "b_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "d_truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "e_text.png").write_text("not an image\n")
    (folder / "h_empty.png").write_bytes(b"")
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({p.name: f"caption of {p.name}" for p in folder.iterdir()}))
    return folder, CaptionSetSource(path)


BAD = ("b_truncated.jpg", "d_truncated.png", "e_text.png", "h_empty.png")


def test_training_loader_skips_unreadable_images_and_counts_them(tmp_path, caplog):
    folder, source = _corrupt_set(tmp_path)
    data = CaptionedImageData(folder, source, crop_size=16, batch_size=2, num_workers=0)
    ds = data.train_dataset(seed=0)
    loader, sampler = data.train_loader(ds, seed=0)
    with caplog.at_level(logging.WARNING):
        for epoch in range(2):
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)
            batches = list(loader)
            # Every slot is filled (batches keep their size across processes), by readable images.
            assert len(batches) == 4 and all(b["image"].shape == (2, 3, 16, 16) for b in batches)
            assert {i for b in batches for i in b["id"]} <= {"a.png", "c.png", "f.png", "g.png"}
    # Each file reported once, with its path and the reason; counted every time it is skipped.
    assert sorted(next(n for n in BAD if n in r) for r in loader.bad_images) == list(BAD)
    assert all(caplog.text.count(f"cannot read image {folder / n}") == 1 for n in BAD)
    assert "truncated" in caplog.text and sum(loader.bad_images.values()) >= 8
    # The substitutes are deterministic: the same epoch gives the same batches (exact resume).
    sampler.set_epoch(1)
    ds.set_epoch(1)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(list(loader), batches))

    strict = CaptionedImageData(folder, source, crop_size=16, batch_size=2, num_workers=0, bad_image="strict")
    sds = strict.train_dataset()
    with pytest.raises(BadImageError, match="b_truncated.jpg"):
        sds[[e[0] for e in sds.entries].index("b_truncated.jpg")]


def test_unreadable_headers_under_min_side(tmp_path):
    folder, source = _corrupt_set(tmp_path)
    ds = CaptionedImageDataset(folder, source, min_side=8)  # reads every header
    assert ds.report.unreadable == ["e_text.png", "h_empty.png"]  # truncated files have valid headers
    assert "2 unreadable images skipped" in " ".join(ds.report.lines())
    with pytest.raises(BadImageError, match="e_text.png"):
        CaptionedImageDataset(folder, source, min_side=8, bad_image="strict")


def test_image_list_selects_images(tmp_path, small_set):
    folder, source = small_set
    names = tmp_path / "list.json"
    names.write_text(json.dumps(["d.jpg", "a.png", "c.png", "missing.png"]))
    ds = CaptionedImageDataset(folder, source, image_list=names)
    assert ds.ids == ["a.png", "d.jpg"]  # sorted; c.png has no caption
    assert ds.report.without_caption == ["c.png"] and ds.report.without_image == ["missing.png"]
    with pytest.raises(DatasetPairingError, match="missing.png"):
        CaptionedImageDataset(folder, source, image_list=names, missing_image="error")
    for bad, message in ((["a.png", "a.png"], "twice"), (["../a.png"], "relative"), ({"a": 1}, "JSON list")):
        names.write_text(json.dumps(bad))
        with pytest.raises(DatasetPairingError, match=message):
            CaptionedImageDataset(folder, source, image_list=names)


def test_reference_coco30k_list_reads():
    names = read_image_list(shared_path("reference", "mscoco_30k_list.json"))
    assert len(names) == 30504 and names[0].startswith("COCO_val2014_") and names == sorted(names)


def test_tacos_published_training_lists(tmp_path, small_set):
    """Two parallel JSON lists (train2014 names, one caption each) replace the caption source and select
    the images: TACO's materials/mscoco_train_{name,caption}_list_larger_than_256.json, as data keys."""
    folder, source = small_set
    (tmp_path / "names.json").write_text(json.dumps(["d.jpg", "b.png", "missing.png"]))
    (tmp_path / "caps.json").write_text(json.dumps(["a strip", "b's listed caption", "not there"]))
    data = CaptionedImageData(folder, source, train_caption="random", name_list=str(tmp_path / "names.json"),
                              caption_list=str(tmp_path / "caps.json"))
    dataset = data.train_dataset()
    assert dataset.ids == ["b.png", "d.jpg"] and dataset.report.without_image == ["missing.png"]
    assert [dataset[i]["captions"] for i in range(2)] == [["b's listed caption"], ["a strip"]]
    assert data.describe() == f"the 3 images of {tmp_path / 'names.json'}; one caption each from {tmp_path / 'caps.json'}"
    with pytest.raises(DatasetPairingError, match="give both"):
        CaptionedImageData(folder, source, name_list=str(tmp_path / "names.json"))
    (tmp_path / "caps.json").write_text(json.dumps(["one"]))
    with pytest.raises(DatasetPairingError, match="lists 3 names but .*caps.json 1 captions"):
        CaptionedImageData(folder, source, name_list=str(tmp_path / "names.json"),
                           caption_list=str(tmp_path / "caps.json"))


def test_a_gif_is_an_image_as_for_compress(tmp_path):
    """compress codes a GIF's first frame; a dataset folder uses it too (it used to be 'no image file')."""
    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "img" / "anim.gif")
    (tmp_path / "c.json").write_text(json.dumps({"anim.gif": "a grey square"}))
    ds = CaptionedImageDataset(tmp_path / "img", CaptionSetSource(tmp_path / "c.json"))
    assert ds.ids == ["anim.gif"] and not ds.report.without_image and ds[0]["image"].shape == (3, 40, 40)
