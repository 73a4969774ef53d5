"""PSNR / MS-SSIM on 8-bit values, CLIP score, FID."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from taco_plus.images import to_uint8
from taco_plus.metrics import (
    ClipScore,
    FidAccumulator,
    FidUnavailable,
    fid_weights_path,
    ms_ssim,
    psnr,
    split_patches,
)
from taco_plus.metrics.fid import FID_WEIGHTS_FILE, FID_WEIGHTS_URL


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small convolutions gain nothing from threads; on a shared 2-core machine
    # thread contention makes them many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_psnr_hand_values_on_8bit():
    x = torch.zeros(3, 8, 8)
    assert psnr(x, x + 1 / 255) == pytest.approx(20 * math.log10(255))  # MSE = 1 level²
    # Reconstruction errors under half a level vanish when rounded to 8 bits.
    assert psnr(x, x + 0.4 / 255) == math.inf
    # Out-of-range reconstructions are clamped like a PNG would be: 255 levels off on all pixels.
    assert psnr(x, x + 5.0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(x, torch.zeros(3, 8, 9))


def test_ms_ssim_identity_noise_and_small_images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 192, 200, generator=g)
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert 0.0 < ms_ssim(x, noisy) < 0.99
    assert math.isnan(ms_ssim(x[:, :160], x[:, :160]))  # 5 scales need ≥ 161 px
    assert not math.isnan(ms_ssim(x[:, :161], x[:, :161]))


@pytest.fixture(scope="module")
def clip_score():
    from taco_plus.text import tiny_clip

    return ClipScore(tiny_clip(), name="tiny")


def test_clip_score_range_and_errors(clip_score):
    images = torch.rand(2, 3, 70, 90, generator=torch.Generator().manual_seed(1))
    scores = clip_score(images, ["a red house", "two dogs on a beach"])
    assert scores.shape == (2,) and bool(((scores >= 0) & (scores <= 100)).all())
    assert torch.equal(scores, clip_score(images, ["a red house", "two dogs on a beach"]))
    assert clip_score.preprocess(images).shape == (2, 3, 224, 224)
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        clip_score(images, ["one"])


def test_clip_score_preprocessing_matches_open_clip_pil_pipeline(clip_score):
    # Our tensor preprocessing should agree with open_clip's own PIL transform.
    import open_clip
    from PIL import Image

    x = torch.rand(3, 300, 451, generator=torch.Generator().manual_seed(2))
    array = (x * 255).round().byte().permute(1, 2, 0).numpy()
    transform = open_clip.image_transform(224, is_train=False, mean=clip_score.mean, std=clip_score.std)
    reference = transform(Image.fromarray(array))
    ours = clip_score.preprocess((x * 255).round()[None] / 255)[0]
    assert (ours - reference).abs().mean() < 0.02


def test_clip_score_tokenizes_as_the_model_and_says_when_it_cuts(clip_score, caplog):
    # The codec's text encoder cleans captions as the reference's Hugging Face tokenizer does (no ftfy,
    # no HTML unescaping); the CLIP score must see the same tokens, not open_clip's own cleaning.
    import logging

    import open_clip

    from taco_plus.text.tokenizer import tokenize

    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    caption = "Fish &amp; chips   on a  PLATE"
    ids = torch.tensor([tokenize(caption, 77, pad="zero").ids])
    assert not torch.equal(ids, open_clip.get_tokenizer("taco-tiny-clip")([caption]))  # the two cleanings differ here
    model = clip_score.model
    expected = 100 * torch.cosine_similarity(model.encode_image(clip_score.preprocess(image)), model.encode_text(ids))
    assert clip_score(image, [caption]) == pytest.approx(float(expected.clamp(min=0)), rel=1e-5)
    # A caption longer than CLIP's 77 positions is cut there (its end-of-text kept), counted and logged.
    before, long_caption = clip_score.truncated, " ".join(["a red brick house by the sea"] * 20)
    with caplog.at_level(logging.WARNING, logger="taco_plus.metrics.clip_score"):
        clip_score(image, [long_caption])
    assert clip_score.truncated == before + 1 and "cut to 77 tokens" in caplog.text


def frechet_distance_low_rank(real: np.ndarray, fake: np.ndarray) -> float:
    """Reference FID for fewer samples than dimensions, by a route other than the metric's
    eigenvalues of Σ1Σ2: with A = (X1 − μ1)/√(n1−1), B = (X2 − μ2)/√(n2−1),
    tr (Σ1Σ2)^{1/2} is the sum of the singular values of the small matrix ABᵀ."""
    a = (real - real.mean(0)) / np.sqrt(len(real) - 1)
    b = (fake - fake.mean(0)) / np.sqrt(len(fake) - 1)
    diff = real.mean(0) - fake.mean(0)
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2 * np.linalg.svd(a @ b.T, compute_uv=False).sum())


def test_split_patches():
    x = torch.arange(2 * 3 * 5 * 9, dtype=torch.float32).reshape(2, 3, 5, 9)
    patches = split_patches(x, 4)
    assert patches.shape == (2 * 1 * 2, 3, 4, 4)
    assert torch.equal(patches[1], x[0, :, :4, 4:8]) and torch.equal(patches[2], x[1, :, :4, :4])
    assert split_patches(x, 8) is x  # smaller than a patch: whole image
    # MS-ILLM's FID/256: the grid shifted by p/2 as well, where both sides are at least 1.5·p.
    shifted = split_patches(x, 3, shifted=True)  # 5x9: 1x3 + (from row/col 1) 1x2
    assert shifted.shape[0] == 2 * 3 + 2 * 2 and torch.equal(shifted[6], x[0, :, 1:4, 1:4])
    assert split_patches(x, 4, shifted=True).shape[0] == 4  # 5 < 1.5·4: no shifted grid


def test_fid_256_on_kodak_has_192_patches(kodak_dir):
    from PIL import Image

    sizes = [Image.open(path).size for path in sorted(kodak_dir.glob("kodim*.png"))]
    assert len(sizes) == 24 and {tuple(sorted(s)) for s in sizes} == {(512, 768)}
    counts = [split_patches(torch.zeros(1, 3, h, w), 256, shifted=True).shape[0] for w, h in sizes]
    assert counts == [8] * 24 and sum(counts) == 192  # 6 patches + 2 shifted per image; 144 without the shift
    assert sum(split_patches(torch.zeros(1, 3, h, w), 256).shape[0] for w, h in sizes) == 144


class SmallFeatures(nn.Module):
    """uint8 images in, 6-d features out: a stand-in for the FID Inception's interface."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        assert x.dtype == torch.uint8
        return self.net(x.float() / 255)


def small_fid(patch_size=16) -> FidAccumulator:
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FidAccumulator(FrechetInceptionDistance(feature=SmallFeatures(), input_img_size=(3, 16, 16)), patch_size)


def test_fid_accumulator_patches_8bit_and_resumable_state():
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    x_hat = (x * 0.7 + 0.1).clamp(0, 1)
    same = small_fid()
    same.update(x, x)
    assert same.num_samples == 2 * (2 * 3 + 1 * 2) and same.compute() == pytest.approx(0.0, abs=1e-6)
    # The metric sees the rounded 8-bit patches (not truncated ones) and computes FID on them.
    fid = small_fid()
    seen = []
    fid.metric.inception.register_forward_hook(lambda m, inp, out: seen.append((inp[0].clone(), out.detach())))
    fid.update(x, x_hat)
    assert torch.equal(seen[0][0], to_uint8(split_patches(x, 16, shifted=True)))
    assert torch.equal(seen[1][0], to_uint8(split_patches(x_hat, 16, shifted=True)))
    reference = frechet_distance_low_rank(seen[0][1].double().numpy(), seen[1][1].double().numpy())
    assert fid.compute() == pytest.approx(reference, rel=1e-6) and reference > 1e-4
    # A snapshot restored into a fresh metric continues exactly (a resumed evaluation).
    more = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    fid.update(more, more.flip(-1))
    resumed = small_fid()
    resumed.load_state_dict(small_fid_state_after(x, x_hat))
    resumed.update(more, more.flip(-1))
    assert resumed.compute() == pytest.approx(fid.compute(), rel=1e-12)
    with pytest.raises(FidUnavailable, match="at least 2 samples"):
        small_fid().compute()


def small_fid_state_after(x, x_hat):
    fid = small_fid()
    fid.update(x, x_hat)
    return fid.state_dict()


def test_fid_weights_missing_or_hostile_fail_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / FID_WEIGHTS_FILE
    assert fid_weights_path() == expected and FID_WEIGHTS_FILE.startswith("pt_inception-2015-12-05")
    start = time.perf_counter()
    with pytest.raises(FidUnavailable) as err:
        FidAccumulator.inception()  # no download is attempted
    assert time.perf_counter() - start < 2
    assert str(expected) in str(err.value) and FID_WEIGHTS_URL in str(err.value) and "enabled=false" in str(err.value)
    # A weights file is data: a pickle that would run code is refused before the library reads it.
    marker = tmp_path / "ran"
    torch.save({"x": RunsCode(marker)}, tmp_path / "hostile.pth")
    with pytest.raises(FidUnavailable, match="not a plain weights file"):
        FidAccumulator.inception(tmp_path / "hostile.pth")
    assert not marker.exists()


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.slow
def test_fid_with_a_random_init_fid_inception_file(tmp_path):
    # The FID Inception's architecture with random weights (He-scaled so features stay
    # O(1) through ~90 convolutions) saved as a file: the real loading path, torchmetrics'
    # 2048-d features and its FID, checked against an independent formula.
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    state = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False).state_dict()
    state = {k: v * 6**0.5 if k.endswith("conv.weight") else v for k, v in state.items()}
    torch.save(state, tmp_path / FID_WEIGHTS_FILE)
    fid = FidAccumulator.inception(tmp_path / FID_WEIGHTS_FILE, patch_size=32)
    assert torch.equal(fid.metric.inception.Conv2d_1a_3x3.conv.weight, state["Conv2d_1a_3x3.conv.weight"])
    seen = []
    fid.metric.inception.register_forward_hook(lambda m, inp, out: seen.append(out.detach()))
    x = torch.rand(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    fid.update(x, x.flip(-1) * 0.5)
    assert fid.num_samples == 2 and seen[0].shape == (2, 2048) and seen[0].std() > 1e-3
    reference = frechet_distance_low_rank(seen[0].double().numpy(), seen[1].double().numpy())
    assert fid.compute() == pytest.approx(reference, rel=1e-4) and reference > 0
