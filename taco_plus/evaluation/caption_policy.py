"""Coding one image: the caption policy (which of its captions the encoder gets), real bitstreams,
the per-image metrics. ``oracle_lpips`` keeps the lowest-LPIPS of every caption's reconstruction, as
TACO's COCO-30k script intends: it needs the original, so it is an ORACLE, labelled in every output
(docs/evaluation.md, "MS-COCO 30k"). Bitstreams: ``<id>.tacoz``, or ``<id>.<k>.tacoz`` per caption.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from taco_plus.codec import TacoCodec
from taco_plus.images import to_uint8
from taco_plus.metrics import ClipScore, ms_ssim, psnr

ORACLE = "oracle_lpips"
POLICIES = ("first", "all", ORACLE)
Coded = tuple[dict[str, Any], Tensor]  # (row of one caption, x_hat (1, 3, H, W))


def _report(policy: str, coded: Sequence[Coded]) -> tuple[dict[str, Any], list[Tensor]]:
    """The image's row and FID samples from its codings: the first one, the means over all of them
    (every reconstruction a sample), or the lowest-LPIPS one (ties: the earlier caption)."""
    if policy == "all":
        rows = [row for row, _ in coded]
        mean = {k: None if any(r[k] is None for r in rows) else math.fsum(r[k] for r in rows) / len(rows)
                for k in rows[0]}
        return {**mean, "caption_index": None}, [x_hat for _, x_hat in coded]
    best = 0 if policy == "first" else min(range(len(coded)), key=lambda k: coded[k][0]["lpips"])
    return {**coded[best][0], "caption_index": best}, [coded[best][1]]


def policy_label(name: str, policy: str) -> str:
    """The results name: an oracle's says so (``"taco-oracle_lpips"``)."""
    return f"{name}-{ORACLE}" if policy == ORACLE and ORACLE not in name else name


def check_policy(policy: str, caption_mode: str, lpips: Optional[nn.Module]) -> None:
    if policy not in POLICIES:
        raise ValueError(f"caption_policy must be one of {POLICIES}, got {policy!r}")
    if policy != "first" and caption_mode != "real":
        raise ValueError(f"caption_policy={policy!r} chooses among real captions: it needs caption_mode='real'")
    if policy == ORACLE and lpips is None:
        raise ValueError("caption_policy='oracle_lpips' chooses by LPIPS: enable the LPIPS metric")


@torch.no_grad()
def measure(x: Tensor, x_hat: Tensor, caption: str, lpips: Optional[nn.Module], clip: Optional[ClipScore],
            ms_ssim_enabled: bool) -> dict[str, Optional[float]]:
    """PSNR, MS-SSIM, LPIPS and CLIP score (None: not computed) of ``x`` (3, H, W) and ``x_hat``
    (1, 3, H, W); every metric sees the 8-bit images a user gets from the PNG."""
    x8, x_hat8 = to_uint8(x[None].cpu()).float() / 255, to_uint8(x_hat.cpu()).float() / 255  # (1, 3, H, W)
    row = {"psnr": psnr(x8, x_hat8), "ms_ssim": ms_ssim(x8, x_hat8) if ms_ssim_enabled else None,
           "lpips": None, "clip_score": None}
    if lpips is not None:
        device = next(lpips.parameters()).device
        row["lpips"] = float(lpips(x_hat8.to(device), x8.to(device)).mean())
    if clip is not None:
        row["clip_score"] = float(clip(x_hat8, [caption])[0])  # always the real caption
    return row


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # time the kernels, not their launch


@torch.no_grad()
def code_image(codec: TacoCodec, x: Tensor, image_id: str, captions: Sequence[str], policy: str,
               bitstreams: Optional[Path], *, encoder_caption: Optional[str] = None, lpips: Optional[nn.Module] = None,
               clip: Optional[ClipScore] = None, ms_ssim_enabled: bool = True) -> tuple[dict[str, Any], list[Tensor], float]:
    """Codes ``x`` (3, H, W) with the captions ``policy`` picks from its real ``captions``: each to a real
    bitstream (a file under ``bitstreams`` when given), decoded from those bytes without text, measured.
    ``encoder_caption`` replaces what the encoder gets (a sensitivity run's); the CLIP score uses the real one.

    Returns the image's ``per_image.csv`` row, the reconstructions that are FID samples, and the largest
    difference between a decoded image and the encoder's prediction of it.
    """
    coded_captions = list(captions)[:1] if policy == "first" else list(captions)
    h, w = x.shape[-2:]
    coded, mismatch = [], 0.0
    for k, caption in enumerate(coded_captions):
        encoded = codec.encode(x, caption if encoder_caption is None else encoder_caption)
        data = encoded.data
        if bitstreams is not None:
            path = bitstreams / f"{image_id}{'' if len(coded_captions) == 1 else f'.{k}'}.tacoz"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            data = path.read_bytes()  # decode what is on disk, and count its size
        _sync(codec.device)
        start = time.perf_counter()
        x_hat = codec.decode(data)  # (1, 3, H, W), no text
        _sync(codec.device)
        dec_ms = 1000 * (time.perf_counter() - start)
        mismatch = max(mismatch, float((x_hat - encoded.x_hat).abs().max()))
        row = measure(x, x_hat, caption, lpips, clip, ms_ssim_enabled)
        row.update(bytes=len(data), bpp=8 * len(data) / (h * w), enc_ms=encoded.encode_ms, dec_ms=dec_ms)
        coded.append((row, x_hat))
    row, fid_images = _report(policy, coded)
    row.update(id=image_id, height=h, width=w, caption_policy=policy, captions=len(coded_captions))
    return row, fid_images, mismatch
