"""g_a's Winograd (NNPACK) 3x3 convolutions: same values as nn.Conv2d to float error in
inference, the plain convolution wherever NNPACK does not apply, unchanged state dicts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from taco_plus.models.layers import WinogradConv2d
from tests.test_models import tiny_model

needs_nnpack = pytest.mark.skipif(
    not getattr(torch, "_nnpack_available", lambda: False)(), reason="this torch build has no NNPACK"
)


def plain(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every WinogradConv2d back to nn.Conv2d."""
    module = copy.deepcopy(module)
    for m in module.modules():
        if type(m) is WinogradConv2d:
            m.__class__ = nn.Conv2d
    return module


def winograd_calls(monkeypatch) -> list[int]:
    calls, nnpack = [], torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", lambda *a: calls.append(1) or nnpack(*a))
    return calls


def test_g_a_uses_it_for_its_3x3_convolutions_only():
    model = tiny_model()
    convs = [m for m in model.g_a.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    # 9 in the residual bottlenecks, 12 in the two attention blocks' residual units.
    assert len(convs) == 21 and all(type(m) is WinogradConv2d for m in convs)
    # h_a, h_s, g_s, the context and entropy networks keep oneDNN's kernels (bit-exact decoding).
    assert not any(type(m) is WinogradConv2d for name, m in model.named_modules() if not name.startswith("g_a."))


@needs_nnpack
@pytest.mark.parametrize("shape", [(1, 24, 17, 30), (2, 96, 32, 48)])
def test_inference_matches_conv2d(monkeypatch, shape):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 40, 3, padding=1)
    wino = copy.deepcopy(conv)
    wino.__class__ = WinogradConv2d
    x = torch.randn(shape)
    calls = winograd_calls(monkeypatch)
    with torch.no_grad():
        torch.testing.assert_close(wino(x), conv(x), rtol=1e-4, atol=1e-4 * conv(x).abs().max().item())
    with torch.inference_mode():
        torch.testing.assert_close(wino(x), conv(x), rtol=1e-4, atol=1e-4 * conv(x).abs().max().item())
    assert len(calls) == 2  # the NNPACK path ran, under no_grad and inference_mode


@needs_nnpack
def test_latent_matches_plain_g_a(monkeypatch):
    model = tiny_model()
    x, text = torch.rand(2, 3, 128, 64), torch.randn(2, 7, 64)
    calls = winograd_calls(monkeypatch)
    with torch.no_grad():
        y, y_ref = model.g_a(x, text), plain(model.g_a)(x, text)
    assert len(calls) == 21
    assert ((y - y_ref).abs().max() / y_ref.abs().max()).item() < 1e-4


def test_training_and_fallbacks_are_the_plain_convolution(monkeypatch):
    """Grad enabled (training), no NNPACK, autocast, float64: nn.Conv2d's own kernels, bit for bit."""
    model = tiny_model()
    model.g_a.train()
    reference = plain(model.g_a)
    x, text = torch.rand(1, 3, 64, 64), torch.randn(1, 5, 64)
    calls = winograd_calls(monkeypatch)
    y, y_ref = model.g_a(x, text), reference(x, text)
    assert torch.equal(y, y_ref)
    y.square().mean().backward()
    y_ref.square().mean().backward()
    for (name, p), q in zip(model.g_a.named_parameters(), reference.parameters()):
        assert p.grad is not None and torch.equal(p.grad, q.grad), name
    conv = next(m for m in model.g_a.modules() if type(m) is WinogradConv2d)
    ref = plain(conv)
    x = torch.randn(1, conv.in_channels, 9, 9)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(conv(x), ref(x), rtol=0, atol=0)
    with torch.no_grad():
        assert torch.equal(conv.double()(x.double()), ref.double()(x.double()))
        conv.float(), ref.float()
        monkeypatch.delattr(torch, "_nnpack_available")
        assert torch.equal(conv(x), ref(x))
    assert calls == []


def test_state_dict_is_unchanged():
    model = tiny_model()
    state = model.g_a.state_dict()
    reference = plain(model.g_a)
    assert list(reference.state_dict()) == list(state)
    reference.load_state_dict(state, strict=True)
    model.g_a.load_state_dict(reference.state_dict(), strict=True)
