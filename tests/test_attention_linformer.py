"""Linformer cross-attention: equivalences, padding, token weights, validation."""

from __future__ import annotations

import pytest
import torch

from taco_plus.models.attention import (
    FullCrossAttention,
    LinformerCrossAttention,
    PooledLinformerCrossAttention,
)

D, HEADS = 32, 4


def linformer_as_full(full: FullCrossAttention, length: int) -> LinformerCrossAttention:
    """A Linformer with k = context length, identity projections and ``full``'s weights."""
    lin = LinformerCrossAttention(D, HEADS, k=length, max_context_len=length)
    w_q, w_k, w_v = full.in_proj_weight.detach().chunk(3)
    with torch.no_grad():
        lin.linformer.to_q.weight.copy_(w_q)
        lin.linformer.to_k.weight.copy_(w_k)
        lin.linformer.to_v.weight.copy_(w_v)
        lin.linformer.proj_k.copy_(torch.eye(length))
        lin.linformer.proj_v.copy_(torch.eye(length))
        lin.linformer.to_out.load_state_dict(full.out_proj.state_dict())
    return lin


@pytest.fixture
def full() -> FullCrossAttention:
    torch.manual_seed(0)
    attn = FullCrossAttention(D, HEADS)
    with torch.no_grad():  # the package's key/value maps have no bias
        attn.in_proj_bias.zero_()
    return attn


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("use_weights", [False, True])
def test_identity_projection_equals_full_attention(full, use_mask, use_weights):
    torch.manual_seed(1)
    length = 12
    lin = linformer_as_full(full, length)
    query, context = torch.randn(2, 20, D), torch.randn(2, length, D)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[0, 3:5] = False  # padding in the middle (e.g. between caption chunks)
    mask[1, 9:] = False  # and at the end
    weights = torch.rand(2, length) * 1.5 + 0.25
    kw = dict(
        context_mask=mask if use_mask else None,
        context_weights=weights if use_weights else None,
    )
    with torch.no_grad():
        torch.testing.assert_close(lin(query, context, **kw), full(query, context, **kw), rtol=0, atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"share_kv": True}, {"one_kv_head": True}])
def test_unmasked_forward_is_the_packages(options):
    torch.manual_seed(2)
    lin = LinformerCrossAttention(D, HEADS, k=8, max_context_len=40, **options)
    query, context = torch.randn(2, 30, D), torch.randn(2, 25, D)  # shorter than max: sliced rows
    with torch.no_grad():
        torch.testing.assert_close(lin(query, context), lin.linformer(query, context), rtol=0, atol=1e-5)


def make_variant(name: str) -> torch.nn.Module:
    torch.manual_seed(3)
    if name == "full":
        return FullCrossAttention(D, HEADS)
    if name == "linformer":
        return LinformerCrossAttention(D, HEADS, k=8, max_context_len=64)
    return PooledLinformerCrossAttention(D, HEADS, k=8)


@pytest.mark.parametrize("variant", ["full", "linformer", "pooled"])
@pytest.mark.parametrize("where", ["end", "middle"])
def test_padding_receives_zero_attention(variant, where):
    """Padded tokens' contents cannot change the output, which equals the unpadded run."""
    attn = make_variant(variant)
    torch.manual_seed(4)
    query, real = torch.randn(1, 16, D), torch.randn(1, 10, D)
    pad = torch.randn(1, 5, D) * 100
    if where == "end":
        context, mask = torch.cat([real, pad], 1), torch.tensor([[True] * 10 + [False] * 5])
    else:
        context = torch.cat([real[:, :4], pad, real[:, 4:]], 1)
        mask = torch.tensor([[True] * 4 + [False] * 5 + [True] * 6])
    changed = context.clone()
    changed[~mask] = torch.randn(5, D) * 1e4
    if variant != "full":  # zeroed before the projection: even NaN cannot leak
        changed[0, ~mask[0]] = float("nan")
    weights = torch.rand(1, 15) + 0.5
    with torch.no_grad():
        for w in (None, weights):
            alone = attn(query, real, context_weights=None if w is None else w[mask].view(1, -1))
            padded = attn(query, context, context_mask=mask, context_weights=w)
            other = attn(query, changed, context_mask=mask, context_weights=w)
            torch.testing.assert_close(padded, alone, rtol=0, atol=1e-5)
            torch.testing.assert_close(other, padded, rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["full", "linformer", "pooled"])
def test_uniform_weights_change_nothing_and_others_do(variant):
    attn = make_variant(variant)
    query, context = torch.randn(2, 16, D), torch.randn(2, 10, D)
    with torch.no_grad():
        base = attn(query, context)
        uniform = attn(query, context, context_weights=torch.full((2, 10), 1.7))
        weights = torch.ones(2, 10)
        weights[:, 2] = 50.0
        skewed = attn(query, context, context_weights=weights)
    torch.testing.assert_close(uniform, base, rtol=0, atol=1e-5)
    assert (skewed - base).abs().max() > 1e-3


def test_pooled_is_permutation_invariant_like_full_attention():
    attn = make_variant("pooled")
    query, context = torch.randn(1, 8, D), torch.randn(1, 300, D)
    perm = torch.randperm(300)
    with torch.no_grad():
        torch.testing.assert_close(attn(query, context[:, perm]), attn(query, context), rtol=0, atol=1e-5)


def test_pooling_columns_are_convex():
    attn = make_variant("pooled")
    a = attn.pooling(torch.randn(2, 500, D))
    assert a.shape == (2, 500, 8) and (a >= 0).all()
    torch.testing.assert_close(a.sum(1), torch.ones(2, 8))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dim=32, num_heads=5), "not divisible"),
        (dict(dim=32, num_heads=4, k=128, max_context_len=64), "exceeds max_context_len"),
        (dict(dim=32, num_heads=4, k=0), "positive int"),
        (dict(dim=32, num_heads=4, max_context_len=0, k=1), "positive int"),
        (dict(dim=32, num_heads=4, dropout=1.0), "dropout"),
    ],
)
def test_linformer_construction_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LinformerCrossAttention(**kwargs)


def test_pooled_construction_errors():
    with pytest.raises(ValueError, match="not divisible"):
        PooledLinformerCrossAttention(30, 4)
    with pytest.raises(ValueError, match="positive int"):
        PooledLinformerCrossAttention(32, 4, k=0)


def test_caption_longer_than_max_fails_clearly():
    lin = LinformerCrossAttention(D, HEADS, k=8, max_context_len=64)
    with pytest.raises(ValueError, match="65 tokens exceeds the linformer max_context_len=64"):
        lin(torch.randn(1, 4, D), torch.randn(1, 65, D))


@pytest.mark.parametrize("variant", ["linformer", "pooled"])
def test_bad_mask_and_weights_fail_clearly(variant):
    attn = make_variant(variant)
    query, context = torch.randn(1, 4, D), torch.randn(1, 6, D)
    with pytest.raises(ValueError, match="at least one unmasked"):
        attn(query, context, context_mask=torch.zeros(1, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="strictly positive"):
        attn(query, context, context_weights=torch.zeros(1, 6))


def test_gradients_reach_every_parameter():
    for variant in ("linformer", "pooled"):
        attn = make_variant(variant)
        attn(torch.randn(2, 8, D), torch.randn(2, 30, D)).sum().backward()
        missing = [n for n, p in attn.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        # Rows of E/F past the context length get no gradient, by Linformer's design.
        assert missing == [], (variant, missing)
