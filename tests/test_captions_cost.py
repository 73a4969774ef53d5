"""Dry runs: image-token rule, token and cost arithmetic checked by hand, no key, no network."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from PIL import Image, ImageFile

from taco_plus.captions.regenerate.config import load_prompt
from taco_plus.captions.regenerate import RegenerateConfig, regenerate
from taco_plus.captions.regenerate.run import image_tokens, load_prices
from taco_plus.captions.regenerate.journal import open_journal
from taco_plus.cli import main


@pytest.mark.parametrize(
    "size, detail, tokens",
    [
        ((1024, 1024), "high", 765),  # OpenAI's example: scaled to 768x768, 4 tiles
        ((2048, 4096), "high", 1105),  # fit 1024x2048, then 768x1536: 6 tiles
        ((4096, 8192), "low", 85),
        ((512, 512), "high", 255),  # small images are not scaled up: 1 tile
        ((768, 512), "high", 425),  # a Kodak image: 2 tiles
        ((1000, 800), "high", 765),  # shortest side 800 -> 768: 960x768, 4 tiles
    ],
)
def test_image_tokens(size, detail, tokens):
    assert image_tokens(*size, detail) == tokens


def test_bundled_prices_load():
    prices = load_prices()
    assert prices["batch_discount"] == 0.5
    assert prices["models"]["gpt-4o"]["input_per_1m"] > 0


def _setup(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((800, 1000, 3), 90, np.uint8)).save(images / "big.png")
    Image.fromarray(np.full((200, 300, 3), 200, np.uint8)).save(images / "small.png")
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("# name: hand\n# expected_words: 75\n---\n" + "x" * 400 + "\n")
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"batch_discount": 0.5, "models": {"test-model": {
        "input_per_1m": 2.0, "output_per_1m": 8.0, "image_base_tokens": 85, "image_tile_tokens": 170}}}))
    return RegenerateConfig(out=tmp_path / "out.json", image_root=images, model="test-model", prompt=str(prompt),
                            prices=prices, max_side=2048, max_tokens=300, dry_run=True, progress=False)


def test_dry_run_arithmetic_by_hand(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a dry run needs no key
    cfg = _setup(tmp_path)
    report = regenerate(cfg)
    est = report.estimate
    # Per request: 400 characters / 4 = 100 text tokens + 7 chat overhead = 107.
    # Images: 1000x800 -> 960x768 -> 2x2 tiles -> 85 + 4*170 = 765; 300x200 -> 1 tile -> 255.
    assert est["requests"] == 2
    assert est["input_tokens"] == 2 * 107 + 765 + 255 == 1234
    # Expected answer: 75 words / 0.75 words per token = 100 tokens; at most max_tokens=300.
    assert est["output_tokens"] == 200 and est["max_output_tokens"] == 600
    online, batch = est["usd"]["online"], est["usd"]["batch"]
    assert online[0] == pytest.approx((1234 * 2.0 + 200 * 8.0) / 1e6)  # $0.004068
    assert batch[0] == pytest.approx(0.002034)
    assert online[1] == pytest.approx((1234 * 2.0 + 600 * 8.0) / 1e6)
    assert "cost online (test-model): $0.00 expected, at most $0.01" in report.summary()  # rounded to cents

    low = regenerate(RegenerateConfig(**{**vars(cfg), "detail": "low"})).estimate
    assert low["input_tokens"] == 2 * 107 + 2 * 85

    assert report.request_files == [] and not cfg.batch_dir.exists()  # estimated from the headers alone

    # --write-requests encodes every image: the same estimate, and one Batch API line per image.
    written = regenerate(RegenerateConfig(**{**vars(cfg), "write_requests": True}))
    assert written.estimate == est
    (path,) = written.request_files
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == ["big.png", "small.png"]
    assert lines[0]["url"] == "/v1/chat/completions" and lines[0]["body"]["model"] == "test-model"
    assert lines[0]["body"]["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert not cfg.journal_path.exists()  # a dry run starts nothing


def test_dry_run_skips_captioned_images_and_unknown_prices(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = _setup(tmp_path)
    from taco_plus.captions.regenerate.runner import request_signature

    with open_journal(cfg.journal_path, request_signature(cfg, load_prompt(cfg.prompt), []), False) as journal:
        journal.append({"type": "caption", "image_id": "big.png", "caption": "done"})
    assert regenerate(cfg).estimate["requests"] == 1

    rc = main(["captions", "regenerate", "--images", str(cfg.image_root), "--out", str(tmp_path / "o2.json"),
               "--model", "some-local-model", "--dry-run", "--base-url", "http://127.0.0.1:9/v1"])
    out = capsys.readouterr().out
    assert rc == 0 and "requests:              2" in out and "no price for model 'some-local-model'" in out


def test_dry_run_reads_only_image_headers(tmp_path, monkeypatch, capsys):
    """A COCO-sized folder is estimated in seconds: no pixel is decoded (measured: docs/captions.md)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    images = tmp_path / "train"
    images.mkdir()
    Image.fromarray(np.full((480, 640, 3), 90, np.uint8)).save(tmp_path / "one.jpg")  # COCO's usual size
    for i in range(300):
        os.link(tmp_path / "one.jpg", images / f"{i:012d}.jpg")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("a dry run decoded pixels"))
    assert main(["captions", "regenerate", "--images", str(images), "--out", str(tmp_path / "coco.json"),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    prompt = load_prompt()
    per_image = math.ceil(len(prompt.render()) / 4) + 7 + 425  # 640x480: 2 tiles
    assert "requests:              300" in out and f"input tokens (est.):   {300 * per_image:,}" in out
