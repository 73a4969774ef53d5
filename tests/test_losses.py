"""TACO's loss terms against hand computations (tiny CLIP, random-backbone LPIPS)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from taco_plus.losses import (
    ClipJointLoss,
    LpipsBackboneUnavailableError,
    TacoLoss,
    bpp_from_likelihoods,
    build_lpips,
    clip_contrastive,
)

CAPTIONS = ["a red bus on a street", "two cats asleep on a sofa", "a lighthouse by the sea"]


@pytest.fixture(scope="module")
def lpips_random():
    torch.manual_seed(0)
    return build_lpips("alex", "correct", pretrained=False)


@pytest.fixture(scope="module")
def joint_tiny():
    return ClipJointLoss("taco-tiny-clip", pretrained=None)


def _images(b=3, h=48, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, h, w, generator=g)
    x_hat = (x + 0.1 * torch.randn(b, 3, h, w, generator=g)).clamp(0, 1)
    return x_hat, x


def test_bpp_is_minus_log2_sum_over_pixels():
    y = torch.tensor([[0.5, 0.25], [1.0, 0.125]]).reshape(1, 1, 2, 2)
    z = torch.tensor([0.5]).reshape(1, 1, 1, 1)
    # -log2: y -> 1 + 2 + 0 + 3 = 6 bits, z -> 1 bit; 7 bits over 2 images of 4x4.
    bpp = bpp_from_likelihoods({"y": y, "z": z}, num_pixels=2 * 4 * 4)
    assert bpp.item() == pytest.approx(7 / 32)
    with pytest.raises(ValueError):
        bpp_from_likelihoods({"y": y}, 0)


def test_rate_distortion_terms_and_total():
    x_hat, x = _images()
    lik = {"y": torch.full((3, 4, 3, 3), 0.5), "z": torch.full((3, 2, 1, 1), 0.25)}
    loss = TacoLoss(lmbda=0.01, k_p=0.0, k_j=0.0)
    terms = loss({"x_hat": x_hat, "likelihoods": lik}, x)
    bits = 3 * 4 * 9 * 1 + 3 * 2 * 2
    assert terms["bpp"].item() == pytest.approx(bits / (3 * 48 * 40))
    mse = ((x_hat - x) ** 2).mean()
    assert terms["mse"].item() == pytest.approx(mse.item())
    assert terms["loss"].item() == pytest.approx(bits / (3 * 48 * 40) + 0.01 * 255**2 * mse.item(), rel=1e-6)
    assert "lpips" not in terms and "joint" not in terms


def test_zero_coefficient_drops_module_and_missing_module_is_an_error(lpips_random):
    assert TacoLoss(0.01, k_p=0.0, k_j=0.0, lpips=lpips_random).lpips is None
    with pytest.raises(ValueError, match="LPIPS"):
        TacoLoss(0.01, k_p=3.5, k_j=0.0)
    with pytest.raises(ValueError, match="joint"):
        TacoLoss(0.01, k_p=0.0, k_j=0.0025)
    with pytest.raises(ValueError, match="lmbda"):
        TacoLoss(-1.0, k_p=0.0, k_j=0.0)


def test_lpips_conventions_match_the_package(lpips_random):
    import lpips as lpips_pkg

    x_hat, x = _images()
    metric: lpips_pkg.LPIPS = lpips_random.metric
    per_image = lpips_random(x_hat, x)
    assert per_image.shape == (3,)
    assert torch.allclose(per_image, metric(x_hat, x, normalize=True).flatten())
    reference = build_lpips("alex", "reference", pretrained=False)
    reference.metric.load_state_dict(metric.state_dict())
    ref = reference(x_hat, x)
    assert torch.allclose(ref, metric(x_hat, x).flatten())
    assert not torch.allclose(ref, per_image)  # the two ranges really differ
    assert "RANDOM" in lpips_random.describe()
    lpips_random.train()  # stays a metric: no dropout
    assert not lpips_random.metric.training
    assert torch.equal(lpips_random(x_hat, x), per_image)


def test_lpips_without_backbone_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(LpipsBackboneUnavailableError) as err:
        build_lpips("alex")
    assert str(tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth") in str(err.value)
    with pytest.raises(ValueError):
        build_lpips("alex", convention="wrong", pretrained=False)


def test_taco_loss_sums_weighted_terms(lpips_random, joint_tiny):
    x_hat, x = _images()
    lik = {"y": torch.full((3, 4, 3, 3), 0.3), "z": torch.full((3, 2, 1, 1), 0.6)}
    loss = TacoLoss(lmbda=0.004, k_p=3.5, k_j=0.0025, lpips=lpips_random, joint=joint_tiny)
    terms = loss({"x_hat": x_hat, "likelihoods": lik}, x, CAPTIONS)
    expected = (
        terms["bpp"] + 0.004 * 255**2 * terms["mse"] + 3.5 * terms["lpips"] + 0.0025 * terms["joint"]
    )
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["lpips"].item() == pytest.approx(lpips_random(x_hat, x).mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="captions"):
        loss({"x_hat": x_hat, "likelihoods": lik}, x)


def test_joint_loss_matches_direct_formula(joint_tiny):
    import open_clip

    x_hat, x = _images(h=64, w=96)
    clip = joint_tiny.clip
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)

    def embed(img):
        # Shorter side to 224 (64 -> 224, 96 -> 336), centre crop 224, CLIP normalisation.
        img = F.interpolate(img, size=(224, 336), mode="bilinear", align_corners=False, antialias=True)
        img = img[:, :, :, 56:280]
        return F.normalize(clip.encode_image((img - mean) / std), dim=-1)

    tokens = open_clip.get_tokenizer("taco-tiny-clip")(CAPTIONS, context_length=38)
    tokens = torch.cat([tokens, torch.zeros(3, 77 - 38, dtype=tokens.dtype)], dim=1)
    t = F.normalize(clip.encode_text(tokens), dim=-1)
    e_hat, e = embed(x_hat), embed(x)
    logits = math.exp(2.6592) * t @ e_hat.t()
    labels = torch.arange(3)
    contrastive = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    distance = torch.sqrt(((e_hat - e) ** 2).sum())  # whole batch, not squared, not averaged

    out = joint_tiny(x_hat, x, CAPTIONS)
    assert out["contrastive"].item() == pytest.approx(contrastive.item(), rel=1e-4)
    assert out["embedding_distance"].item() == pytest.approx(distance.item(), rel=1e-4)
    assert out["joint"].item() == pytest.approx(contrastive.item() + 40.0 * distance.item(), rel=1e-4)


def test_joint_loss_gradient_reaches_x_hat_only(joint_tiny):
    x_hat, x = _images(h=32, w=32)
    x_hat.requires_grad_(True)
    x.requires_grad_(True)
    joint_tiny(x_hat, x, CAPTIONS)["joint"].backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert x.grad is None  # the target embedding is a constant
    assert all(p.grad is None for p in joint_tiny.clip.parameters())


def test_clip_contrastive_is_log_b_for_identical_embeddings():
    e = F.normalize(torch.ones(4, 8), dim=-1)
    # All logits equal: cross-entropy of a uniform softmax over 4 classes.
    assert clip_contrastive(e, e, 14.3).item() == pytest.approx(math.log(4), rel=1e-6)
    with pytest.raises(ValueError):
        ClipJointLoss("taco-tiny-clip", pretrained=None, context_length=100)


# ---------------------------------------------------------------- global batch under DDP
GLOBAL_CAPTIONS = CAPTIONS + [" ".join(["a very long caption about a harbour"] * 12)]


def _joint_setup():
    """The same loss, 'codec' (one conv) and global batch of 4 in every process."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(4, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    return ClipJointLoss("taco-tiny-clip", pretrained=None), net, x


def _joint_terms(loss, net, x, captions):
    out = loss((x + 0.1 * net(x)).clamp(0, 1), x, captions)
    out["joint"].backward()
    return {"terms": {k: v.detach() for k, v in out.items()}, "grads": [p.grad.clone() for p in net.parameters()]}


def _ddp_rank(rank: int, world: int, store: str, setup=None) -> dict:
    """One rank of a gloo group: its half of the global batch through a DDP-wrapped conv."""
    import datetime

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    try:
        loss, net, x = setup or _joint_setup()
        part = slice(rank * 2, rank * 2 + 2)
        return _joint_terms(loss, DistributedDataParallel(net), x[part], GLOBAL_CAPTIONS[part])
    finally:
        dist.destroy_process_group()


def _text_features() -> torch.Tensor:
    from taco_plus.text import ClipTextEncoder

    return ClipTextEncoder("taco-tiny-clip", None, max_tokens=38)(CAPTIONS).tokens


def _ddp_child(rank: int, world: int, store: str, out: str) -> None:
    # Also the tiny text tower's features in a fresh interpreter: the same seed must give the
    # same untrained CLIP in every process (DDP ranks, evaluation in another process).
    torch.save({**_ddp_rank(rank, world, store), "text_features": _text_features()}, out)


@pytest.mark.slow  # two interpreters importing torch and open_clip
def test_joint_loss_over_two_processes_equals_one_process(tmp_path):
    """2 gloo processes with 2 images each give the same loss and the same (DDP-averaged)
    gradients as 1 process with all 4: the embeddings are gathered with gradients.
    This process is rank 0 (one interpreter start less), a spawned one rank 1, which also
    computes the tiny text tower's features (identical across processes)."""
    import torch.multiprocessing as mp

    single = _joint_terms(*_joint_setup(), GLOBAL_CAPTIONS)
    store, out = str(tmp_path / "store"), str(tmp_path / "rank1.pt")
    child = mp.get_context("spawn").Process(target=_ddp_child, args=(1, 2, store, out))
    child.start()
    try:
        ranks = [_ddp_rank(0, 2, store)]
    finally:
        child.join(timeout=180)
    assert child.exitcode == 0
    ranks.append(torch.load(out, weights_only=True))
    assert torch.equal(ranks[1].pop("text_features"), _text_features())
    for ranked in ranks:
        for name, value in single["terms"].items():
            torch.testing.assert_close(ranked["terms"][name], value, rtol=1e-5, atol=0)
        for ours, theirs in zip(ranked["grads"], single["grads"]):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-8)


def test_joint_loss_cut_is_counted_logged_and_77_for_long_captions(joint_tiny, caplog):
    from taco_plus.schemas import compose
    from taco_plus.text import bpe_ids

    long = GLOBAL_CAPTIONS[-1]
    n = len(bpe_ids(long))
    assert n > 75
    caplog.set_level("INFO", logger="taco_plus.losses.joint")
    short = ClipJointLoss(clip_model=joint_tiny.clip, context_length=38)
    t38 = short.text_embedding(["a cat", long])
    assert (short.captions_seen, short.captions_cut, short.pieces_cut) == (2, 1, n - 36)
    assert "joint loss: 1 of 2 captions cut to 38 tokens so far" in caplog.text
    full = ClipJointLoss(clip_model=joint_tiny.clip, context_length=77)
    t77 = full.text_embedding(["a cat", long])
    assert full.pieces_cut == n - 75
    torch.testing.assert_close(t77[0], t38[0])  # a short caption is not cut either way
    assert not torch.allclose(t77[1], t38[1])  # pieces 37..75 now reach the embedding
    # TACO's baseline keeps the reference's 38; the long-caption run uses 77.
    assert compose(["experiment=taco_baseline"]).loss.joint.context_length == 38
    assert compose(["experiment=captions_regenerated"]).loss.joint.context_length == 77
