"""Linformer modules: the caption summary against the linformer package, padding, token
weights, the pooled image-side attention, validation."""

from __future__ import annotations

import pytest
import torch

from taco_plus.models.attention import CaptionSummary, FullCrossAttention, PooledLinformerCrossAttention

D, HEADS = 32, 4


def test_summary_then_full_attention_is_the_linformer_package():
    """Attention over CaptionSummary(E) is Linformer attention with E shared by keys and values."""
    linformer = pytest.importorskip("linformer")
    torch.manual_seed(0)
    package = linformer.LinformerSelfAttention(D, seq_len=40, k=8, heads=HEADS, share_kv=True).eval()
    summary = CaptionSummary(D, k=8, max_len=40)
    full = FullCrossAttention(D, HEADS)
    with torch.no_grad():
        summary.proj.copy_(package.proj_k)
        w_q, w_k = package.to_q.weight, package.to_k.weight
        full.in_proj_weight.copy_(torch.cat([w_q, w_k, w_k]))  # share_kv: values = keys
        full.in_proj_bias.zero_()  # the package's maps have no bias
        full.out_proj.load_state_dict(package.to_out.state_dict())
        query, context = torch.randn(2, 30, D), torch.randn(2, 25, D)  # shorter than max: sliced rows
        torch.testing.assert_close(full(query, summary(context)), package(query, context), rtol=0, atol=1e-5)


def make_variant(name: str) -> torch.nn.Module:
    torch.manual_seed(3)
    if name == "full":
        return FullCrossAttention(D, HEADS)
    if name == "summary":  # full attention over the caption's k summaries
        summary, attn = CaptionSummary(D, k=8, max_len=64), FullCrossAttention(D, HEADS)
        return lambda q, c, context_mask=None, context_weights=None: attn(q, summary(c, context_mask, context_weights))
    return PooledLinformerCrossAttention(D, HEADS, k=8)


@pytest.mark.parametrize("variant", ["full", "summary", "pooled"])
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


@pytest.mark.parametrize("variant", ["full", "summary", "pooled"])
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


def test_summary_weights_scale_each_token_share():
    """Token j's projection row is scaled by sqrt(w_j / mean(w)), the mean over the real tokens only:
    attended pads (no mask) are projected like tokens but weigh nothing in mean(w)."""
    summary = CaptionSummary(D, k=8, max_len=64)
    text, weights = torch.randn(1, 10, D), torch.tensor([[1.0, 1.5, 1.0, 1.2, 1.0, 1.0] + [1.0] * 4])
    real = torch.arange(10)[None] < 6  # 4 pads
    relative = (weights / weights[:, :6].mean()).sqrt()
    expected = summary.proj[:10].detach().t() @ (text[0] * relative[0, :, None])
    torch.testing.assert_close(summary(text, weights=weights, real=real)[0], expected, rtol=0, atol=1e-5)
    uniform = torch.full((1, 10), 1.3)
    torch.testing.assert_close(summary(text, weights=uniform, real=real), summary(text), rtol=0, atol=1e-6)


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


def test_construction_errors():
    with pytest.raises(ValueError, match="not divisible"):
        PooledLinformerCrossAttention(30, 4)
    with pytest.raises(ValueError, match="positive int"):
        PooledLinformerCrossAttention(32, 4, k=0)
    with pytest.raises(ValueError, match="dropout"):
        PooledLinformerCrossAttention(32, 4, dropout=1.0)
    with pytest.raises(ValueError, match="k must be a positive int"):
        CaptionSummary(D, k=0, max_len=38)
    with pytest.raises(ValueError, match="max_len must be a positive int"):
        CaptionSummary(D, k=8, max_len=38.0)


def test_caption_longer_than_max_len_fails_clearly():
    with pytest.raises(ValueError, match="caption of 65 tokens exceeds the caption summary's max_len=64"):
        CaptionSummary(D, k=8, max_len=64)(torch.randn(1, 65, D))


@pytest.mark.parametrize("variant", ["summary", "pooled"])
def test_bad_mask_and_weights_fail_clearly(variant):
    attn = make_variant(variant)
    query, context = torch.randn(1, 4, D), torch.randn(1, 6, D)
    with pytest.raises(ValueError, match="at least one unmasked"):
        attn(query, context, context_mask=torch.zeros(1, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="strictly positive"):
        attn(query, context, context_weights=torch.zeros(1, 6))


def test_gradients_reach_every_parameter():
    pooled, summary = make_variant("pooled"), CaptionSummary(D, k=8, max_len=30)
    pooled(torch.randn(2, 8, D), torch.randn(2, 30, D)).sum().backward()
    (summary(torch.randn(2, 30, D)) ** 2).sum().backward()  # rows past a caption's length get none
    for module in (pooled, summary):
        missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert missing == [], (module, missing)
