"""PSNR / MS-SSIM on 8-bit values, CLIP score, FID."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from taco_plus.metrics import (
    ClipScore,
    FidAccumulator,
    FidUnavailable,
    InceptionFeatures,
    frechet_distance,
    frechet_distance_from_features,
    ms_ssim,
    psnr,
    split_patches,
)


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

    import open_clip

    return ClipScore(tiny_clip(), open_clip.get_tokenizer("taco-tiny-clip"), name="tiny")


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


def test_frechet_distance_hand_case():
    # Diagonal covariances: FID = |μ1-μ2|² + Σ (√s1 - √s2)².
    mu1, mu2 = np.array([0.0, 1.0]), np.array([1.0, 1.0])
    s1, s2 = np.diag([4.0, 1.0]), np.diag([1.0, 9.0])
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(1.0 + 1.0 + 4.0)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("n", [5, 40])  # fewer and more samples than dimensions
def test_frechet_distance_from_features_matches_covariance_form(n):
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(n, 12)), rng.normal(0.3, 1.5, size=(n + 3, 12))
    expected = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert frechet_distance_from_features(real, fake) == pytest.approx(expected, rel=1e-6)
    # Against scipy's general matrix square root, on full-rank covariances.
    if n > 12:
        from scipy.linalg import sqrtm

        s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
        diff = real.mean(0) - fake.mean(0)
        by_sqrtm = diff @ diff + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
        assert expected == pytest.approx(by_sqrtm, rel=1e-6)


def test_split_patches():
    x = torch.arange(2 * 3 * 5 * 9, dtype=torch.float32).reshape(2, 3, 5, 9)
    patches = split_patches(x, 4)
    assert patches.shape == (2 * 1 * 2, 3, 4, 4)
    assert torch.equal(patches[1], x[0, :, :4, 4:8]) and torch.equal(patches[2], x[1, :, :4, :4])
    assert split_patches(x, 8) is x  # smaller than a patch: whole image


def test_fid_accumulator_with_small_feature_net():
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.rand(4, 3, 32, 32)
    same = FidAccumulator(features, patch_size=16)
    same.update(x, x)
    assert same.num_samples == 16 and same.compute() == pytest.approx(0.0, abs=1e-6)
    other = FidAccumulator(features, patch_size=16)
    other.update(x, (x * 0.3).clamp(0, 1))
    assert other.compute() > 1e-4
    with pytest.raises(FidUnavailable, match="at least 2 samples"):
        FidAccumulator(features, None).compute()


def test_inception_features_without_weights_say_what_to_download(tmp_path):
    with pytest.raises(FidUnavailable, match="inception_v3_google-0cc3c7bd.pth"):
        InceptionFeatures(tmp_path / "missing.pth")


@pytest.mark.slow
def test_inception_features_from_a_local_weights_file(tmp_path):
    # A random-init Inception-v3 saved in torchvision's layout stands in for the real
    # weights file: loading, the 2048-d pool features and the FID path all run.
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    path = tmp_path / "inception.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    features = InceptionFeatures(path)
    x = torch.rand(2, 3, 64, 80)
    assert features(x).shape == (2, 2048)
    fid = FidAccumulator(features, patch_size=None)
    fid.update(x, x)
    assert fid.num_samples == 2 and fid.compute() == pytest.approx(0.0, abs=1e-6)
