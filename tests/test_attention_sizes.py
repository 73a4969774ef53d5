"""Adapter blocks with each attention variant at real image sizes and caption lengths.

Image token counts are the real ones (H/4 grid for the first Injector, H/8 for the
Extractor); widths are small to keep the test fast on a CPU.
"""

from __future__ import annotations

import functools

import pytest
import torch

from taco_plus.models.adapter import Extractor, Injector
from taco_plus.models.attention import CaptionSummary, FullCrossAttention, PooledLinformerCrossAttention

N, TEXT_DIM, HEADS = 16, 32, 4
# (H, W) after padding to a multiple of 64: 256 crop, Kodak, CLIC 2048x1365.
SIZES = {"crop256": (256, 256), "kodak": (512, 768), "clic": (1408, 2048)}
VARIANTS = {  # extractor attention; caption projected to k summaries or not
    "full": (FullCrossAttention, None),
    "linformer": (functools.partial(PooledLinformerCrossAttention, k=16), 16),
}


def blocks(variant: str) -> tuple[Injector, Extractor, torch.nn.Module]:
    torch.manual_seed(0)
    extractor_attention, k = VARIANTS[variant]
    injector = Injector(N, TEXT_DIM, HEADS)
    torch.nn.init.normal_(injector.gamma, std=0.5)  # make the attention visible
    summary = torch.nn.Identity() if k is None else CaptionSummary(TEXT_DIM, k, max_len=2464)
    return injector.eval(), Extractor(N, TEXT_DIM, HEADS, extractor_attention).eval(), summary


CASES = [
    # Full attention at 180k image queries x 2,464 text keys takes seconds: slow.
    pytest.param(v, s, t, marks=[pytest.mark.slow] if (v, s, t) == ("full", "clic", 2464) else [])
    for v in VARIANTS
    for s in SIZES
    for t in (1, 2464)
]


@pytest.mark.parametrize("variant, size, tokens", CASES)
def test_adapter_blocks_at_real_sizes(variant, size, tokens):
    h, w = SIZES[size]
    injector, extractor, summary = blocks(variant)
    with torch.no_grad():
        text = summary(torch.randn(1, tokens, TEXT_DIM))  # (1, tokens or k, TEXT_DIM)
        image_h8 = torch.randn(1, N, h // 8, w // 8)  # Extractor keys: 1,024 / 6,144 / 45,056
        new_text = extractor(text, image_h8)
        assert new_text.shape == text.shape and torch.isfinite(new_text).all()
        image_h4 = torch.randn(1, N, h // 4, w // 4)  # first Injector's queries
        out = injector(image_h4, new_text)
        assert out.shape == image_h4.shape and torch.isfinite(out).all()


def test_pooled_extractor_uses_the_same_parameters_at_every_resolution():
    """The content-based projection has no per-position rows: nothing goes untrained."""
    _, extractor, _ = blocks("linformer")
    shapes_before = {n: p.shape for n, p in extractor.named_parameters()}
    text = torch.randn(1, 7, TEXT_DIM)
    base = torch.randn(1, N, 8, 8)
    outs = []
    with torch.no_grad():
        for h, w in SIZES.values():
            # The same content tiled to a larger grid pools to the same summaries.
            image = base.repeat(1, 1, h // 64, w // 64)
            outs.append(extractor(text, image))
    assert {n: p.shape for n, p in extractor.named_parameters()} == shapes_before
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=0, atol=1e-4)


def test_pooled_gradients_from_a_crop_reach_all_parameters():
    _, extractor, _ = blocks("linformer")
    extractor.train()
    extractor(torch.randn(2, 5, TEXT_DIM), torch.randn(2, N, 32, 32)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in extractor.parameters())
