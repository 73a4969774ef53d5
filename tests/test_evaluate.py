"""Evaluation over a few Kodak images with a tiny codec: real files, metrics, results."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from taco_plus.checkpoint import LoadedCodec
from taco_plus.codec import TacoCodec
from taco_plus.evaluate import caption_sensitivity, evaluate_dataset
from taco_plus.images import load_image
from taco_plus.metrics import FidAccumulator, FidUnavailable
from taco_plus.models import TACO
from taco_plus.results.format import load_results
from taco_plus.results.per_image import CSV_COLUMNS, read_per_image_csv
from tests.conftest import shared_path

TINY_TEXT = {
    "_target_": "taco_plus.text.ClipTextEncoder",
    "model_name": "taco-tiny-clip",
    "pretrained": None,
    "max_tokens": 38,
    "pad": "eot",
}
# Small sizes keep the tiny codec fast; 40x60 is odd: the codec pads to 64x64 and crops back.
SIZES = {"kodim01.png": (64, 64), "kodim04.png": (60, 40), "kodim23.png": (64, 64)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny convolutions gain nothing from threads, and on a shared 2-core machine
    # thread contention makes them 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model() -> TACO:
    torch.manual_seed(0)
    model = TACO(N=32, M=64, slice_ch=(4, 4, 8, 16, 32), text_dim=64, num_heads=4)
    # The adapter's gammas start at 0 (text has no effect); give them values so the
    # caption reaches the latents, as in a trained model.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.0)
    model.eval().update(force=True)
    return model


@pytest.fixture(scope="module")
def codec() -> TacoCodec:
    return TacoCodec(LoadedCodec(tiny_model(), dict(TINY_TEXT)))


@pytest.fixture(scope="module")
def dataset() -> list[dict]:
    kodak = shared_path("data", "kodak")
    captions = json.loads(shared_path("data", "captions", "kodak_ofa.json").read_text())
    items = []
    for image_id, size in SIZES.items():
        x = F.interpolate(load_image(kodak / image_id)[None], size=size, mode="bilinear", antialias=True)[0]
        items.append({"image": x.clamp(0, 1), "caption": captions[image_id], "id": image_id})
    return items


@pytest.fixture(scope="module")
def lpips():
    from taco_plus.losses.lpips import build_lpips

    return build_lpips("alex", "correct", pretrained=False)  # random backbone stand-in


@pytest.fixture(scope="module")
def clip():
    from taco_plus.metrics import ClipScore

    return ClipScore.load("taco-tiny-clip", None)


def small_fid() -> FidAccumulator:
    """torchmetrics' FID over a small feature net that takes uint8 images, as the FID Inception does."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net = nn.Sequential(Uint8ToFloat(), features)
    return FidAccumulator(FrechetInceptionDistance(feature=net, input_img_size=(3, 32, 32)), patch_size=32)


class Uint8ToFloat(nn.Module):
    def forward(self, x):
        return x.float() / 255


def test_evaluate_dataset_real_files_and_metrics(tmp_path, codec, dataset, lpips, clip):
    from compressai.utils.plot.__main__ import parse_json_file

    results = evaluate_dataset(codec, dataset, tmp_path, name="tiny", lpips=lpips, clip=clip, fid=small_fid())
    rows = read_per_image_csv(tmp_path / "per_image.csv")
    assert (tmp_path / "per_image.csv").read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    assert [r["id"] for r in rows] == list(SIZES)
    for row, item in zip(rows, dataset):
        path = tmp_path / "bitstreams" / f"{row['id']}.tacoz"
        h, w = SIZES[row["id"]]
        assert (row["height"], row["width"]) == (h, w)
        assert row["bytes"] == path.stat().st_size
        assert row["bpp"] == 8 * path.stat().st_size / (h * w)
        # PSNR recomputed by hand from the decoded file, on 8-bit values.
        x_hat = codec.decode(path.read_bytes())[0]
        ref = (item["image"] * 255).round().clamp(0, 255).double()
        rec = (x_hat * 255).round().clamp(0, 255).double()
        assert row["psnr"] == pytest.approx(10 * math.log10(255**2 / float((ref - rec).pow(2).mean())), rel=1e-6)
        assert math.isnan(row["ms_ssim"])  # under 161 px
        assert 0 < row["lpips"] and 0 <= row["clip_score"] <= 100 and row["enc_ms"] > 0 and row["dec_ms"] > 0
        # Both LPIPS conventions, each in its own column: [0, 1] mapped to [-1, 1], and TACO's [0, 1] as is.
        x8, rec8 = (ref / 255).float()[None], (rec / 255).float()[None]
        assert row["lpips_correct"] == row["lpips"] == pytest.approx(float(lpips.metric(rec8, x8, normalize=True)))
        assert row["lpips_reference"] == pytest.approx(float(lpips.metric(rec8, x8, normalize=False)), rel=1e-6)
        assert row["lpips_reference"] != pytest.approx(row["lpips_correct"], rel=1e-3)

    # results.json: one rate point, the means of the CSV, in CompressAI's format.
    loaded = load_results(tmp_path / "results.json")
    assert loaded == json.loads(json.dumps(results))
    r = loaded["results"]
    assert r["bpp"] == [pytest.approx(sum(x["bpp"] for x in rows) / 3)]
    assert r["psnr-rgb"] == [pytest.approx(sum(x["psnr"] for x in rows) / 3)]
    assert r["ms-ssim-rgb"] == [None] and "161 px" in loaded["meta"]["notes"][0]
    assert r["encoding_time"] == [pytest.approx(sum(x["enc_ms"] for x in rows) / 3000)]
    assert set(r) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "lpips", "lpips-reference", "lpips-correct", "clip_score",
                      "encoding_time", "decoding_time", "fid"}
    assert r["lpips-reference"] == [pytest.approx(sum(x["lpips_reference"] for x in rows) / 3)]
    assert r["fid"][0] >= 0 and loaded["meta"]["skipped"] == {}
    assert loaded["meta"]["lpips_convention"] == "correct" and "RANDOM" in loaded["meta"]["lpips"]
    assert loaded["meta"]["decode_vs_encoder_max_abs_diff"] < 1e-4
    assert loaded["meta"]["clip_score"].startswith("UNTRAINED")
    parsed = parse_json_file(tmp_path / "results.json", "psnr")
    assert parsed["xs"] == r["bpp"] and parsed["name"] == "tiny"


def test_caption_sensitivity_table(tmp_path, codec, dataset, lpips):
    table = caption_sensitivity(codec, dataset, tmp_path, name="tiny", lpips=lpips, save_bitstreams=True)
    assert [r["caption"] for r in table] == ["real", "empty", "other"]
    assert table[0]["delta_bpp"] == 0.0 and table[0]["delta_lpips"] == 0.0
    rows = {m: read_per_image_csv(tmp_path / m / "per_image.csv") for m in ("real", "empty", "other")}
    assert load_results(tmp_path / "other" / "results.json")["meta"]["caption_mode"] == "other"
    # With non-zero adapter gammas the caption changes the bitstreams.
    assert [r["bytes"] for r in rows["real"]] != [r["bytes"] for r in rows["empty"]]
    assert table[1]["delta_psnr"] == pytest.approx(
        sum(e["psnr"] - r["psnr"] for r, e in zip(rows["real"], rows["empty"])) / 3
    )
    md = (tmp_path / "sensitivity.md").read_text()
    assert [line.split("|")[1].strip() for line in md.splitlines()[2:]] == ["real", "empty", "other"]
    assert len((tmp_path / "sensitivity.csv").read_text().splitlines()) == 4
    # "other": sorted ids kodim01 -> kodim04 -> kodim23 -> kodim01. kodim23 was coded
    # with kodim01's caption: re-encoding it so gives the same bytes.
    expected = codec.encode(dataset[2]["image"], dataset[0]["caption"]).data
    assert (tmp_path / "other" / "bitstreams" / "kodim23.png.tacoz").read_bytes() == expected


def test_without_saved_bitstreams_bpp_counts_the_same_bytes(tmp_path, codec, dataset):
    evaluate_dataset(codec, dataset[:1], tmp_path, name="e", caption_mode="empty", save_bitstreams=False)
    assert not (tmp_path / "bitstreams").exists()
    row = read_per_image_csv(tmp_path / "per_image.csv")[0]
    assert row["bytes"] == len(codec.encode(dataset[0]["image"], "").data)
    assert load_results(tmp_path / "results.json")["meta"]["bpp_from"].startswith("bitstream lengths")


def test_bad_items_are_rejected(tmp_path, codec):
    with pytest.raises(ValueError, match="missing"):
        evaluate_dataset(codec, [{"image": torch.rand(3, 8, 8), "id": "a"}], tmp_path, name="x")
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        evaluate_dataset(codec, [{"image": torch.rand(8, 8), "caption": "c", "id": "a"}], tmp_path, name="x")
    with pytest.raises(ValueError, match="relative path"):
        evaluate_dataset(codec, [{"image": torch.rand(3, 8, 8), "caption": "c", "id": "../a"}], tmp_path, name="x")
    with pytest.raises(ValueError, match="caption_mode"):
        evaluate_dataset(codec, [], tmp_path, name="x", caption_mode="none")
    with pytest.raises(ValueError, match="no images"):
        evaluate_dataset(codec, [], tmp_path, name="x")
    item = {"image": torch.rand(3, 8, 8), "caption": "c", "id": "a"}
    with pytest.raises(ValueError, match="appears twice"):
        evaluate_dataset(codec, [item, item], tmp_path, name="x")
    with pytest.raises(ValueError, match="at least two"):
        evaluate_dataset(codec, [{"image": torch.rand(3, 8, 8), "caption": "c", "id": "a"}], tmp_path, name="x",
                         caption_mode="other")


def _folder(tmp_path, dataset, n=2):
    """The first ``n`` test images as PNG files + a caption file."""
    from taco_plus.images import save_png

    captions = {}
    for item in dataset[:n]:
        save_png(item["image"], tmp_path / "images" / item["id"])
        captions[item["id"]] = item["caption"]
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    return [
        "data=folder", f"data.image_dir={tmp_path / 'images'}", "captions=file", f"captions.path={tmp_path / 'captions.json'}",
        "device=cpu", "metrics.lpips.pretrained=false", "metrics.clip_score.model_name=taco-tiny-clip",
        "metrics.clip_score.pretrained=null", f"metrics.fid.weights={tmp_path / 'no_inception.pth'}",
        "coding_workers=0",
    ]


def test_run_from_eval_config_with_checkpoint(tmp_path, dataset):
    from taco_plus.checkpoint import save_codec
    from taco_plus.schemas import compose
    from taco_plus.evaluate import run
    from taco_plus.atomic import file_sha256

    model = tiny_model()
    model_config = {"_target_": "taco_plus.models.TACO", "N": 32, "M": 64, "slice_ch": [4, 4, 8, 16, 32],
                    "text_dim": 64, "num_heads": 4}
    save_codec(tmp_path / "tiny.pt", model, model_config, TINY_TEXT, None)
    out = tmp_path / "out"
    overrides = _folder(tmp_path, dataset) + [f"checkpoint={tmp_path / 'tiny.pt'}", f"out_dir={out}", "name=tiny-ckpt"]
    # FID weights absent: the run stops before coding anything, saying what to download.
    start = time.perf_counter()
    with pytest.raises(FidUnavailable, match=r"no_inception\.pth: run `taco-plus download fid` \(or download https://\S+-2015-12-05-6726825d"):
        run(compose(overrides, config_name="eval"))
    assert time.perf_counter() - start < 5 and not out.exists()
    results = run(compose(overrides + ["metrics.fid.enabled=false"], config_name="eval"))
    assert load_results(out / "results.json") == json.loads(json.dumps(results))
    meta = results["meta"]
    assert meta["checkpoint_sha256"] == file_sha256(tmp_path / "tiny.pt") and meta["checkpoint_format"] == "taco-plus"
    assert meta["skipped"]["fid"].startswith("disabled") and "fid" not in results["results"]
    assert meta["caption_set"]["fingerprint"] and meta["config"]["name"] == "tiny-ckpt"
    assert "git_commit" in meta["environment"]
    rows = read_per_image_csv(out / "per_image.csv")
    assert [r["id"] for r in rows] == ["kodim01.png", "kodim04.png"]
    assert all((out / "bitstreams" / f"{r['id']}.tacoz").stat().st_size == r["bytes"] for r in rows)
    # The loaded checkpoint codes exactly like the in-memory model.
    codec = TacoCodec(LoadedCodec(tiny_model(), dict(TINY_TEXT)))
    image = load_image(tmp_path / "images" / "kodim04.png")
    assert (out / "bitstreams" / "kodim04.png.tacoz").read_bytes() == codec.encode(image, dataset[1]["caption"]).data


def test_run_without_checkpoint_is_a_labelled_random_init_smoke(tmp_path, dataset):
    from taco_plus.schemas import compose
    from taco_plus.evaluate import run

    overrides = _folder(tmp_path, dataset) + [
        "model=tiny", "text_encoder=tiny", f"out_dir={tmp_path / 'out'}", "metrics.lpips=null",
        "metrics.clip_score=null", "metrics.fid.enabled=false", "save_bitstreams=false",
    ]
    results = run(compose(overrides, config_name="eval"))
    assert results["meta"]["random_init"] is True and results["meta"]["checkpoint"] is None
    assert set(results["results"]) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert results["meta"]["skipped"]["fid"].startswith("disabled")
