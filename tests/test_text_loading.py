"""Where CLIP weights come from (taco_plus.text.clip_loading). Runs with HF_HUB_OFFLINE=1 (conftest)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from taco_plus.text import ClipTextEncoder, ClipWeightsUnavailableError, clip_source, load_clip, tiny_clip
from taco_plus.text.clip_loading import MODEL_CONFIG_DIR

TINY = "taco-tiny-clip"


@pytest.fixture(scope="module")
def seed1():
    """A tiny model whose weights differ from the default seed's: loading must reproduce them."""
    return tiny_clip(seed=1)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def uses_quick_gelu(model) -> bool:
    return type(model.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def tiny_model_cfg(**overrides) -> dict:
    return {**json.loads((MODEL_CONFIG_DIR / f"{TINY}.json").read_text()), **overrides}


def fake_hub_cache(cache: Path, repo: str, files: dict) -> Path:
    """A Hugging Face hub cache entry as ``hf download`` leaves it."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0" * 40)
    for name, write in files.items():
        write(snapshot / name)
    return snapshot


def test_offline_openai_fails_fast_with_download_hint(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ClipWeightsUnavailableError) as info:
        # An empty cache_dir: a developer's real cache must not turn this into a load.
        load_clip("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    for needle in (
        "HF_HUB_OFFLINE",
        "hf download timm/vit_base_patch32_clip_224.openai open_clip_model.safetensors open_clip_config.json",
        "pretrained='/path/to/clip'",
        "pretrained='/path/to/clip/open_clip_model.safetensors', quick_gelu=True",
        "models--timm--vit_base_patch32_clip_224.openai",
    ):
        assert needle in message, needle


def test_encoder_default_fails_fast_offline(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ClipWeightsUnavailableError, match="vit_base_patch32_clip_224.openai"):
        ClipTextEncoder(cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_local_weights_file(tmp_path, seed1, suffix):
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        save_file(seed1.state_dict(), str(path))
    else:
        torch.save(seed1.state_dict(), path)
    model = load_clip(TINY, pretrained=str(path))
    assert same_weights(model, seed1) and not same_weights(model, tiny_clip(seed=0))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    source = clip_source(model)
    assert source.checkpoint == str(path) and not source.untrained
    enc = ClipTextEncoder(TINY, str(path), max_tokens=38)
    assert "UNTRAINED" not in enc.describe() and str(path) in enc.describe()


def test_local_folder_without_config(tmp_path, seed1):
    save_file(seed1.state_dict(), str(tmp_path / "open_clip_model.safetensors"))
    for pretrained in (str(tmp_path), f"local-dir:{tmp_path}"):
        model = load_clip(TINY, pretrained=pretrained)
        assert same_weights(model, seed1)
        assert clip_source(model).checkpoint == str(tmp_path / "open_clip_model.safetensors")


def test_local_folder_with_open_clip_config_uses_its_architecture(tmp_path):
    # The folder says QuickGELU; the registered taco-tiny-clip config does not.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        reference = open_clip.create_model(TINY, quick_gelu=True)
    (tmp_path / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": tiny_model_cfg(quick_gelu=True), "preprocess_cfg": {}})
    )
    save_file(reference.state_dict(), str(tmp_path / "open_clip_model.safetensors"))
    model = load_clip(TINY, pretrained=str(tmp_path))
    assert uses_quick_gelu(model) and same_weights(model, reference)
    # A bare file beside that config takes its QuickGELU flag too.
    assert uses_quick_gelu(load_clip(TINY, pretrained=str(tmp_path / "open_clip_model.safetensors")))
    assert not uses_quick_gelu(load_clip(TINY, pretrained=str(tmp_path), quick_gelu=False))


def test_cached_tag_loads_offline_with_tag_settings(monkeypatch, tmp_path, seed1):
    """A tag whose weights sit in the HF cache loads without the network, QuickGELU from the tag."""
    tags = {"cached": {"hf_hub": "taco-test/tiny-clip/", "quick_gelu": True}}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY, tags)
    fake_hub_cache(tmp_path, "taco-test/tiny-clip",
                   {"open_clip_model.safetensors": lambda p: save_file(seed1.state_dict(), str(p))})
    start = time.perf_counter()
    model = load_clip(TINY, pretrained="cached", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0
    assert same_weights(model, seed1) and uses_quick_gelu(model)
    assert clip_source(model).describe() == f"{TINY} pretrained='cached'"

    with pytest.raises(ClipWeightsUnavailableError, match="taco-test/tiny-clip"):
        load_clip(TINY, pretrained="cached", cache_dir=str(tmp_path / "empty"))


def test_cached_hf_hub_id_loads_offline(tmp_path, seed1):
    config = json.dumps({"model_cfg": tiny_model_cfg(), "preprocess_cfg": {}})
    fake_hub_cache(tmp_path, "taco-test/tiny-hub", {
        "open_clip_config.json": lambda p: p.write_text(config),
        "open_clip_model.safetensors": lambda p: save_file(seed1.state_dict(), str(p)),
    })
    model = load_clip("hf-hub:taco-test/tiny-hub", cache_dir=str(tmp_path))
    assert same_weights(model, seed1)
    with pytest.raises(ClipWeightsUnavailableError, match="model_name='local-dir:/path/to/clip'"):
        load_clip("hf-hub:taco-test/absent", cache_dir=str(tmp_path))


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="tags"):
        load_clip(TINY, pretrained="no-such-tag")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_clip("ViT-Nope", pretrained=None)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_clip(TINY, pretrained=str(tmp_path / "missing.safetensors"))
    (tmp_path / "weights.txt").write_text("not weights")
    with pytest.raises(ValueError, match="must end with"):
        load_clip(TINY, pretrained=str(tmp_path / "weights.txt"))
    with pytest.raises(FileNotFoundError, match="no CLIP weights"):
        load_clip(TINY, pretrained=str(tmp_path))  # a folder holding only weights.txt


def test_random_init_is_labelled_untrained(caplog):
    model = load_clip(TINY, pretrained=None, seed=7)
    source = clip_source(model)
    assert source.untrained and source.seed == 7
    assert "UNTRAINED" in source.describe()
    assert any("UNTRAINED" in r.getMessage() for r in caplog.records)
