"""Per-token CLIP text features (taco_plus.text.encoder) on the tiny untrained tower (the same
in every process: test_losses.py::test_joint_loss_over_two_processes_equals_one_process)."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
from torch import nn

from taco_plus.text import ClipTextEncoder, bpe_ids, tiny_clip, tokenize
from taco_plus.text.tokenizer import CHUNK_PIECES

CAPTIONS = [
    "a brick building with red doors and windows",
    "",
    "The Eiffel Tower in Paris, at night",
    "caf\u00e9 \U0001f600 \ufffd\ufffd na\u00efve",
]
LONG = " ".join(f"a red boat number {i} near the old lighthouse" for i in range(120))  # ~1,000 words


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


def encoder(clip, max_tokens=38, pad="eot", **kwargs):
    return ClipTextEncoder.from_model(clip, max_tokens=max_tokens, pad=pad, **kwargs)


@pytest.mark.parametrize("max_tokens", [38, 77, "chunked"])
def test_shapes_and_masks(clip, max_tokens):
    enc = encoder(clip, max_tokens)
    feats = enc(CAPTIONS + [LONG])
    lengths = [len(tokenize(c, max_tokens)) for c in CAPTIONS + [LONG]]
    batch, length = len(lengths), max(lengths)
    assert feats.tokens.shape == (batch, length, enc.width) == (batch, length, 64)
    assert feats.mask.shape == (batch, length) and feats.mask.dtype == torch.bool
    for b, layout in enumerate(feats.layouts):
        assert feats.mask[b].tolist() == layout.mask + [False] * (length - len(layout))
    if max_tokens == "chunked":
        # Right-padding of the batch is zero; real tokens are not.
        assert torch.all(feats.tokens[~feats.mask] == 0)
        assert torch.all(feats.tokens[feats.mask].abs().sum(-1) > 0)
    else:
        assert length == max_tokens
        assert feats.layouts[-1].truncated == len(bpe_ids(LONG)) - (max_tokens - 2)
    assert not feats.tokens.requires_grad


@pytest.mark.parametrize("pad", ["zero", "eot"])
def test_eot_pooled_times_projection_is_encode_text(clip, pad):
    enc = encoder(clip, 77, pad)
    feats = enc(CAPTIONS)
    ids = torch.tensor([layout.ids for layout in feats.layouts])
    reference = clip.encode_text(ids)  # open_clip pools at argmax(ids) = the first EOT
    eot = [layout.chunks[0][1] - 1 for layout in feats.layouts]
    pooled = feats.tokens[torch.arange(len(eot)), eot] @ clip.text_projection
    torch.testing.assert_close(pooled, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(enc.eot_embedding(feats), reference, atol=1e-5, rtol=0)
    # open_clip's own tokenizer (zero padding) gives the same embedding.
    torch.testing.assert_close(clip.encode_text(open_clip.tokenize(CAPTIONS)), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("max_tokens", [38, 77, "chunked"])
def test_padding_policy_never_changes_real_tokens(clip, max_tokens):
    eot = encoder(clip, max_tokens, "eot")(CAPTIONS + [LONG])
    zero = encoder(clip, max_tokens, "zero")(CAPTIONS + [LONG])
    assert torch.equal(eot.mask, zero.mask)
    torch.testing.assert_close(eot.tokens[eot.mask], zero.tokens[zero.mask], atol=1e-6, rtol=0)
    if max_tokens != "chunked":  # pad states themselves differ: different pad tokens
        assert not torch.allclose(eot.tokens[~eot.mask], zero.tokens[~zero.mask])


def test_38_tokens_equal_the_first_38_of_77(clip):
    short = encoder(clip, 38)(CAPTIONS)
    full = encoder(clip, 77)(CAPTIONS)
    torch.testing.assert_close(short.tokens[short.mask], full.tokens[:, :38][short.mask], atol=1e-5, rtol=0)


def test_chunked_keeps_every_piece_and_matches_per_window_encoding(clip):
    enc = encoder(clip, "chunked")
    feats = enc([LONG, "a cat"])
    layout = feats.layouts[0]
    pieces = bpe_ids(LONG)
    assert {i for i in layout.piece_index if i >= 0} == set(range(len(pieces)))
    # Chunk k is exactly the 77-token encoding of window k on its own.
    for k, (start, end) in enumerate(layout.chunks):
        window = pieces[k * CHUNK_PIECES : (k + 1) * CHUNK_PIECES]
        ids = torch.tensor([[49406, *window, 49407] + [49407] * (75 - len(window))])
        expected = enc.tower.token_states(ids)[0, : end - start]
        torch.testing.assert_close(feats.tokens[0, start:end], expected, atol=1e-6, rtol=0)


def test_chunked_cost_is_linear_in_caption_length(clip, monkeypatch):
    enc = encoder(clip, "chunked")
    calls = []
    real = enc.tower.token_states
    monkeypatch.setattr(enc.tower, "token_states", lambda ids, m: calls.append(tuple(ids.shape)) or real(ids, m))
    captions = [LONG, LONG[:2000], "a cat", ""]
    feats = enc(captions)
    expected = sum(max(1, math.ceil(len(bpe_ids(c)) / 75)) for c in captions)
    assert feats.num_sequences == expected == sum(n for n, _ in calls)
    assert all(length == 77 for _, length in calls)
    assert len(calls) == 1  # all windows of the batch in one pass


def test_sequence_batch_bounds_each_pass(clip, monkeypatch):
    enc = encoder(clip, "chunked", sequence_batch=4)
    calls = []
    real = enc.tower.token_states
    monkeypatch.setattr(enc.tower, "token_states", lambda ids, m: calls.append(ids.shape[0]) or real(ids, m))
    feats = enc([LONG])
    assert max(calls) <= 4 and sum(calls) == feats.num_sequences == math.ceil(len(bpe_ids(LONG)) / 75)
    torch.testing.assert_close(feats.tokens, encoder(clip, "chunked")([LONG]).tokens, atol=1e-6, rtol=0)


def test_tiny_tower_is_deterministic_and_leaves_global_rng_alone(clip):
    torch.manual_seed(1234)
    state = torch.random.get_rng_state()
    other = tiny_clip()
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.rand(1000)  # a different global RNG state must not matter
    again = tiny_clip()
    for model in (other, again):
        for (name, a), (_, b) in zip(clip.state_dict().items(), model.state_dict().items()):
            assert torch.equal(a, b), name
    assert not torch.equal(tiny_clip(seed=1).token_embedding.weight, clip.token_embedding.weight)


def test_frozen_and_not_part_of_parent_state(clip):
    enc = encoder(clip)
    parent = nn.ModuleDict({"text": enc, "head": nn.Linear(64, 2)})
    parent.train()
    assert enc.training and not clip.training
    assert list(enc.parameters()) == [] and enc.state_dict() == {}
    assert set(parent.state_dict()) == {"head.weight", "head.bias"}
    assert not any(p.requires_grad for p in clip.parameters())
    assert "UNTRAINED random-init text tower" in enc.describe()
    assert "UNTRAINED" in repr(parent)


def test_casting_moves_the_clip_model():
    clip = tiny_clip()
    enc = encoder(clip)
    enc.to(torch.float64)
    assert clip.token_embedding.weight.dtype == torch.float64
    assert enc(["a cat"]).tokens.dtype == torch.float64


@pytest.mark.gpu
def test_cuda_device():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    enc = ClipTextEncoder("taco-tiny-clip", None, max_tokens="chunked", device="cuda")
    feats = enc(["a cat", LONG])
    assert feats.tokens.device.type == "cuda" and feats.mask.device.type == "cuda"
    cpu = ClipTextEncoder("taco-tiny-clip", None, max_tokens="chunked")(["a cat", LONG])
    torch.testing.assert_close(feats.tokens.cpu(), cpu.tokens, atol=1e-4, rtol=0)


def test_hydra_instantiate():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {"_target_": "taco_plus.text.ClipTextEncoder", "model_name": "taco-tiny-clip",
         "pretrained": None, "max_tokens": "chunked", "pad": "zero"}
    )
    enc = instantiate(cfg)
    assert isinstance(enc, ClipTextEncoder) and enc.max_tokens == "chunked" and enc.width == 64


def test_bad_inputs(clip):
    enc = encoder(clip)
    with pytest.raises(TypeError, match="list of str"):
        enc("a single string")
    with pytest.raises(TypeError, match="caption 1"):
        enc(["ok", None])
    with pytest.raises(TypeError):
        enc(None)
    with pytest.raises(ValueError, match="no captions"):
        enc([])
    with pytest.raises(ValueError, match="max_tokens"):
        encoder(clip, 100)
    with pytest.raises(ValueError, match="pad"):
        encoder(clip, 38, "hf")
    # A layout made under another policy is refused, not silently misread.
    with pytest.raises(ValueError, match="max_tokens=38"):
        enc.encode_layouts([tokenize("a cat", 77)])
    with pytest.raises(ValueError, match="max_tokens=38"):
        enc.encode_layouts([tokenize("a cat", 38, "zero")])
    with pytest.raises(ValueError, match="chunked"):
        encoder(clip, "chunked").encode_layouts([tokenize("a cat", 38)])


def test_empty_and_unicode_captions(clip):
    feats = encoder(clip, "chunked")(["", "\ufffd\ufffd", "\U0001f600 caf\u00e9"])
    assert feats.layouts[0].ids == [49406, 49407]
    assert feats.mask.sum(1).tolist() == [len(layout) for layout in feats.layouts]
    assert torch.isfinite(feats.tokens).all()


def _tiny_custom_text(**text_overrides):
    import json

    from taco_plus.text.clip_loading import MODEL_CONFIG_DIR

    text_cfg = {**json.loads((MODEL_CONFIG_DIR / "taco-tiny-clip.json").read_text())["text_cfg"], **text_overrides}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return open_clip.create_model("taco-tiny-clip", force_custom_text=True, text_cfg=text_cfg).eval()


def test_custom_text_clip_tower(clip):
    """CustomTextCLIP keeps the tower on model.text; per-token states still pool to encode_text."""
    custom = _tiny_custom_text()
    assert type(custom).__name__ == "CustomTextCLIP"
    enc = ClipTextEncoder.from_model(custom, max_tokens=77, pad="eot")
    feats = enc(CAPTIONS)
    ids = torch.tensor([layout.ids for layout in feats.layouts])
    torch.testing.assert_close(enc.eot_embedding(feats), custom.encode_text(ids), atol=1e-5, rtol=0)
    assert "unknown origin" in enc.describe()


def test_tower_without_causal_mask_is_refused():
    with pytest.raises(ValueError, match="causal mask"):
        ClipTextEncoder.from_model(_tiny_custom_text(no_causal_mask=True))
