"""Coding one image: the caption policy (which of its captions the encoder gets), real bitstreams (``<id>.tacoz``,
or ``<id>.<k>.tacoz`` per caption), the per-image metrics. ``oracle_lpips`` keeps the lowest-LPIPS caption's
reconstruction (TACO's COCO-30k script): it needs the original, an ORACLE labelled in every output (docs/evaluation.md).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from taco_plus.codec import TacoCodec
from taco_plus.evaluate.workers import Coded, CodingJob, decode_network, encode_network
from taco_plus.images import to_uint8
from taco_plus.losses.lpips import CONVENTIONS
from taco_plus.metrics import ClipScore, ms_ssim, psnr

ORACLE = "oracle_lpips"
POLICIES = ("first", "all", ORACLE)
Encoded = tuple[CodingJob, Tensor, float]  # encode_network's (job, y_hat, ms)


def _report(policy: str, coded: Sequence[tuple[dict[str, Any], Tensor]]) -> tuple[dict[str, Any], list[Tensor]]:
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
    """PSNR, MS-SSIM, LPIPS (the module's convention; and each convention apart, for the project's
    :class:`~taco_plus.losses.lpips.LpipsDistance`) and CLIP score (None: not computed) of ``x`` (3, H, W)
    and ``x_hat`` (1, 3, H, W); every metric sees the 8-bit images a user gets from the PNG."""
    x8, x_hat8 = (to_uint8(v).float() / 255 for v in (x[None].to(x_hat.device), x_hat))  # (1, 3, H, W)
    row = {"psnr": psnr(x8, x_hat8), "ms_ssim": ms_ssim(x8, x_hat8) if ms_ssim_enabled else None,
           "lpips": None, "clip_score": None}
    if lpips is not None:
        device = next(lpips.parameters()).device
        x8, x_hat8 = x8.to(device), x_hat8.to(device)
        row["lpips"] = float(lpips(x_hat8, x8).mean())
        if hasattr(lpips, "metric") and lpips.convention in CONVENTIONS:  # one network, two input ranges
            row.update({f"lpips_{c}": float(lpips.metric(x_hat8, x8, normalize=c == "correct").mean())
                        for c in CONVENTIONS})
    if clip is not None:
        row["clip_score"] = float(clip(x_hat8, [caption])[0])  # always the real caption
    return row


def encode_image(codec: TacoCodec, x: Tensor, image_id: str, captions: Sequence[str], policy: str,
                 bitstreams: Optional[Path], encoder_caption: Optional[str] = None) -> list[Encoded]:
    """The encoder's network passes for the captions ``policy`` picks (``encoder_caption`` replaces what the
    encoder gets: a sensitivity run's); the files go under ``bitstreams`` (None: kept in memory)."""
    coded_captions = list(captions)[:1] if policy == "first" else list(captions)
    encoded = []
    for k, caption in enumerate(coded_captions):
        path = None if bitstreams is None else bitstreams / f"{image_id}{'' if len(coded_captions) == 1 else f'.{k}'}.tacoz"
        path.parent.mkdir(parents=True, exist_ok=True) if path is not None else None
        encoded.append(encode_network(codec, x, caption if encoder_caption is None else encoder_caption, path))
    return encoded


def finish_image(codec: TacoCodec, x: Tensor, image_id: str, captions: Sequence[str], policy: str,
                 encoded: Sequence[Encoded], coded: Sequence[Coded], times: Counter, *,
                 lpips: Optional[nn.Module] = None, clip: Optional[ClipScore] = None,
                 ms_ssim_enabled: bool = True) -> tuple[dict[str, Any], list[Tensor], float]:
    """Decodes each of :func:`encode_image`'s codings (from the worker's bytes; no text) and measures it (CLIP
    score: the real caption); adds network, coding and metric seconds to ``times``. Returns the image's row,
    the FID samples, and the largest difference between a decoded latent and the encoder's."""
    h, w = x.shape[-2:]
    rows, mismatch = [], 0.0
    for (job, y_hat, encode_ms), done, caption in zip(encoded, coded, captions):
        x_hat, diff, decode_ms = decode_network(codec, job, done, y_hat)
        start = time.perf_counter()
        row = measure(x, x_hat, caption, lpips, clip, ms_ssim_enabled)
        times.update(metrics_s=time.perf_counter() - start, network_s=(encode_ms + decode_ms) / 1000,
                     coding_s=(done.encode_ms + done.decode_ms) / 1000)
        mismatch = max(mismatch, diff)
        row.update(bytes=len(done.data), bpp=8 * len(done.data) / (h * w), enc_ms=encode_ms + done.encode_ms,
                   dec_ms=done.decode_ms + decode_ms)
        rows.append((row, x_hat))
    row, fid_images = _report(policy, rows)
    row.update(id=image_id, height=h, width=w, caption_policy=policy, captions=len(rows))
    return row, fid_images, mismatch
