"""TACO model: official-checkpoint equivalence, CompressAI contract, exact round trips."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from taco_plus.models import TACO
from taco_plus.models.official import normalise_state_dict
from tests.conftest import shared_path

TINY = dict(N=32, M=64, slice_ch=(4, 4, 8, 16, 32), text_dim=64, num_heads=4)


def tiny_model(seed: int = 0, **kw) -> TACO:
    torch.manual_seed(seed)
    model = TACO(**{**TINY, **kw}).eval()
    # New adapters start as the identity (gamma = 0); make the text matter in tests.
    for name, p in model.named_parameters():
        if name.endswith("gamma"):
            torch.nn.init.normal_(p, std=0.5)
    model.update(force=True)
    return model


@pytest.fixture(scope="module")
def golden():
    return torch.load(shared_path("reference", "taco_golden_small.pt"), weights_only=False)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_official_golden_outputs(golden):
    model = TACO.from_official(golden["state_dict"]).eval()
    assert model.mask_padding is False  # official behaviour: pad tokens are attended
    with torch.no_grad():
        out = model(golden["x"], golden["text_embeddings"])
    assert rel_err(out["y"], golden["y"]) < 1e-4
    assert rel_err(out["x_hat"], golden["x_hat"]) < 1e-4
    assert rel_err(out["likelihoods"]["y"], golden["y_likelihoods"]) < 1e-4
    assert rel_err(out["likelihoods"]["z"], golden["z_likelihoods"]) < 1e-4


def test_official_bitstream_size_and_roundtrip(golden):
    model = TACO.from_official(golden["state_dict"]).eval()
    model.update(force=True)
    with torch.no_grad():
        forward = model(golden["x"], golden["text_embeddings"])
    enc = model.compress(golden["x"], golden["text_embeddings"])
    n_bytes = sum(len(s) for strings in enc["strings"] for s in strings)
    assert n_bytes == golden["compressed_bytes"]  # same symbols, same order, same coder
    dec = model.decompress(enc["strings"], enc["shape"])
    assert torch.equal(dec["x_hat"], forward["x_hat"])


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "ddp"])
def test_from_official_accepts_wrappers(golden, wrap):
    sd = golden["state_dict"]
    if wrap == "state_dict":
        sd = {"state_dict": sd, "epoch": 3}
    elif wrap == "ddp":
        sd = {f"module.{k}": v for k, v in sd.items()}
    model = TACO.from_official(sd)
    cfg = golden["config"]
    assert (model.N, model.M, model.slice_ch, model.text_dim) == (
        cfg["N"], cfg["M"], cfg["slice_ch"], cfg["text_dim"],
    )


def test_from_official_rejects_foreign_dict():
    with pytest.raises(ValueError, match="not a TACO checkpoint"):
        normalise_state_dict({"conv.weight": torch.zeros(1)})


def test_parameter_shapes_match_official_contract():
    shapes = json.loads(shared_path("reference", "taco_official_shapes.json").read_text())
    model = TACO()  # official sizes
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) == set(shapes)
    # CDF buffers are empty until update(); every other tensor must match exactly.
    mismatched = {k for k in shapes if ours[k] != shapes[k] and 0 not in shapes[k]}
    assert not mismatched


def test_decoder_takes_no_text():
    params = list(inspect.signature(TACO.decompress).parameters)
    assert params == ["self", "strings", "shape"]
    assert not any("text" in p for p in params)


def test_contract_keys_and_shapes():
    model = tiny_model()
    x = torch.rand(2, 3, 64, 128)
    text = torch.randn(2, 7, 64)
    out = model(x, text)
    assert set(out) >= {"x_hat", "likelihoods"}
    assert set(out["likelihoods"]) == {"y", "z"}
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 64, 4, 8)
    assert out["likelihoods"]["z"].shape == (2, 32, 1, 2)
    enc = model.compress(x, text)
    assert set(enc) >= {"strings", "shape"} and len(enc["strings"][0]) == 2
    assert set(model.decompress(enc["strings"], enc["shape"])) == {"x_hat"}


def test_padding_mask_removes_pad_tokens():
    """With masking on, pad-token contents cannot change the latent."""
    model = tiny_model()
    x = torch.rand(1, 3, 64, 64)
    text = torch.randn(1, 10, 64)
    mask = torch.tensor([[True] * 6 + [False] * 4])
    other = text.clone()
    other[:, 6:] = torch.randn(1, 4, 64) * 10
    with torch.no_grad():
        y1 = model.analysis(x, text, mask)
        y2 = model.analysis(x, other, mask)
        y3 = model.analysis(x, text[:, :6])
    torch.testing.assert_close(y1, y2, rtol=0, atol=1e-5)
    torch.testing.assert_close(y1, y3, rtol=0, atol=1e-5)


def test_text_changes_the_encoding():
    model = tiny_model()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = model.analysis(x, torch.randn(1, 5, 64))
        b = model.analysis(x, torch.randn(1, 5, 64))
    assert (a - b).abs().max() > 1e-3


def test_batch_roundtrip_is_exact_per_item():
    model = tiny_model()
    x = torch.rand(2, 3, 64, 64)
    text = torch.randn(2, 5, 64)
    with torch.no_grad():
        forward = model(x, text)["x_hat"]
    enc = model.compress(x, text)
    dec = model.decompress(enc["strings"], enc["shape"])["x_hat"]
    assert torch.equal(dec, forward)


def test_adapter_parameters_are_the_text_adapter():
    model = tiny_model()
    adapter = {id(p) for p in model.adapter_parameters()}
    blocks = tuple(f"g_a.analysis_transform.{i}." for i in (8, 14, 15))
    assert {n for n, p in model.named_parameters() if id(p) in adapter} == {
        n for n, _ in model.named_parameters() if n.startswith(blocks)
    }


@pytest.mark.parametrize("size", [(128, 64), (64, 192)])
def test_encoder_latent_is_the_same_in_training_and_inference(size):
    """g_a runs the same kernels with and without gradients (no inference-only fast path, docs/coding.md):
    the latent the training loss sees is, bit for bit, the one compress codes."""
    model = tiny_model()
    x, text = torch.rand(2, 3, *size), torch.randn(2, 7, 64)
    y_train = model.analysis(x, text)
    with torch.no_grad():
        y_no_grad = model.analysis(x, text)
    with torch.inference_mode():
        y_inference = model.analysis(x, text)
    assert torch.equal(y_train, y_no_grad) and torch.equal(y_train, y_inference)
