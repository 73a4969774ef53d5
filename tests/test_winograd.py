"""g_a's Winograd (NNPACK) 3x3 convolutions: PyTorch's private call still does what the fast path expects,
same values as nn.Conv2d to float error in inference, the plain convolution wherever NNPACK does not apply
or the private call changed, unchanged state dicts and initial weights."""

from __future__ import annotations

import copy
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from taco_plus.models.winograd import WinogradConv2d, nnpack_works, use_winograd
from tests.test_models import tiny_model

# PyTorch's Linux wheels ship NNPACK: there, a missing NNPACK or a changed private call fails these tests
# (the fast path would be off); elsewhere a build without NNPACK skips them.
needs_nnpack = pytest.mark.skipif(
    sys.platform != "linux" and not torch.backends.nnpack.is_available(), reason="this torch build has no NNPACK"
)


@pytest.fixture(autouse=True)
def fresh_probe():
    nnpack_works.cache_clear()
    yield
    nnpack_works.cache_clear()  # after monkeypatch's undo as well: the next test probes the real torch


def plain(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every WinogradConv2d back to nn.Conv2d."""
    module = copy.deepcopy(module)
    for m in module.modules():
        if type(m) is WinogradConv2d:
            m.__class__ = nn.Conv2d
    return module


def winograd_calls(monkeypatch) -> list[int]:
    nnpack_works()  # probed before counting
    calls, nnpack = [], torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", lambda *a: calls.append(1) or nnpack(*a))
    return calls


@needs_nnpack
@pytest.mark.parametrize("shape", [(1, 24, 17, 30), (2, 96, 32, 48), (1, 3, 1, 1)])
def test_pytorch_private_nnpack_call_is_what_the_fast_path_expects(shape):
    """The call the fast path makes, with its arguments, against nn.Conv2d: this fails when PyTorch renames,
    removes or changes ``torch._nnpack_spatial_convolution`` (or ships no NNPACK)."""
    assert torch.backends.nnpack.is_available(), "this torch has no NNPACK: the encoder's Winograd path is off"
    assert hasattr(torch, "_nnpack_spatial_convolution"), "torch._nnpack_spatial_convolution is gone"
    torch.manual_seed(0)
    conv, x = nn.Conv2d(shape[1], 40, 3, padding=1), torch.randn(shape)
    with torch.no_grad():
        out, ref = torch._nnpack_spatial_convolution(x, conv.weight, conv.bias, conv.padding), conv(x)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        assert nnpack_works()


@pytest.mark.parametrize("broken", [
    lambda x, w, b, padding, stride: F.conv2d(x, w, b, padding=padding),  # another signature
    lambda x, w, b, padding: torch.zeros_like(F.conv2d(x, w, b, padding=padding)),  # other values
    None,  # removed
])
def test_a_changed_private_call_falls_back_to_conv2d_with_a_warning(monkeypatch, broken):
    if broken is None:
        monkeypatch.delattr(torch, "_nnpack_spatial_convolution", raising=False)
    else:
        monkeypatch.setattr(torch, "_nnpack_spatial_convolution", broken, raising=False)
    torch.manual_seed(0)
    conv, x = nn.Conv2d(8, 8, 3, padding=1), torch.randn(1, 8, 12, 12)
    wino = WinogradConv2d(8, 8, 3, padding=1)
    wino.load_state_dict(conv.state_dict())
    with torch.no_grad(), pytest.warns(UserWarning, match="_nnpack_spatial_convolution is missing or changed"):
        assert torch.equal(wino(x), conv(x))
    assert not nnpack_works()


def test_g_a_uses_it_for_its_3x3_convolutions_only():
    model = tiny_model()
    convs = [m for m in model.g_a.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    # 9 in the residual bottlenecks, 12 in the two attention blocks' residual units.
    assert len(convs) == 21 and all(type(m) is WinogradConv2d for m in convs)
    # h_a, h_s, g_s, the context and entropy networks keep oneDNN's kernels (bit-exact decoding).
    assert not any(type(m) is WinogradConv2d for name, m in model.named_modules() if not name.startswith("g_a."))


def test_use_winograd_keeps_parameters_and_draws_no_random_numbers():
    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Sequential(nn.Conv2d(4, 4, 3, padding=1)))

    reference, after = build(), torch.rand(3)
    net = build()
    weights = list(net.parameters())
    assert use_winograd(net) is net and torch.equal(torch.rand(3), after)  # the random stream goes on as without it
    assert [type(m) for m in (net[0], net[1][0])] == [WinogradConv2d] * 2
    assert all(p is q for p, q in zip(net.parameters(), weights, strict=True))
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), reference.parameters(), strict=True))


@needs_nnpack
@pytest.mark.parametrize("shape", [(1, 24, 17, 30), (2, 96, 32, 48)])
def test_inference_matches_conv2d(monkeypatch, shape):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 40, 3, padding=1)
    wino = use_winograd(nn.Sequential(copy.deepcopy(conv)))[0]
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
        monkeypatch.setattr(torch.backends.nnpack, "is_available", lambda: False)  # a build without NNPACK
        nnpack_works.cache_clear()
        assert torch.equal(conv(x), ref(x))
    assert calls == []


def test_state_dict_is_unchanged():
    model = tiny_model()
    state = model.g_a.state_dict()
    reference = plain(model.g_a)
    assert list(reference.state_dict()) == list(state)
    reference.load_state_dict(state, strict=True)
    model.g_a.load_state_dict(reference.state_dict(), strict=True)
