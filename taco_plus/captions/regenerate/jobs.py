"""The list of images to caption, and the request body for each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from taco_plus.captions.convert import list_images
from taco_plus.captions.prompts import PromptTemplate
from taco_plus.captions.regenerate.config import RegenerateConfig
from taco_plus.captions.regenerate.images import EncodedImage, encode_image
from taco_plus.captions.regenerate.request import build_chat_request
from taco_plus.captions.sources import CaptionSetSource, captions_fingerprint


class JobError(ValueError):
    """The images or caption set given to a run do not fit together."""


@dataclass(frozen=True)
class Job:
    """One image to caption.

    Args:
        image_id: path relative to the image root (the caption set's key).
        path: the image file.
        original: the image's existing caption (first one), if known.
    """

    image_id: str
    path: Path
    original: Optional[str] = None


def collect_jobs(cfg: RegenerateConfig) -> list[Job]:
    """Images named by ``cfg.captions`` (or every image under ``cfg.image_root``), id-sorted.

    ``cfg.limit`` is not applied here.
    """
    if not cfg.image_root.is_dir():
        raise JobError(f"image folder not found: {cfg.image_root}")
    if cfg.captions is not None:
        source = CaptionSetSource(cfg.captions)
        jobs = [Job(i, cfg.image_root / i, source.captions(i)[0]) for i in sorted(source.ids())]
        missing = [j.image_id for j in jobs if not j.path.is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise JobError(
                f"{len(missing)} images named in {cfg.captions} are not in {cfg.image_root}: {shown}"
            )
    else:
        if cfg.with_original:
            raise JobError("--with-original needs --captions (the set holding the original captions)")
        jobs = [Job(i, cfg.image_root / i) for i in list_images(cfg.image_root)]
    if not jobs:
        raise JobError(f"no images to caption in {cfg.image_root}")
    return jobs  # --limit is applied by the caller, after fingerprinting the originals


def job_request(job: Job, cfg: RegenerateConfig, prompt: PromptTemplate) -> tuple[dict, EncodedImage, str]:
    """The chat-completions body for ``job``, with the encoded image and the prompt text."""
    text = prompt.render(job.original if cfg.with_original else None, cfg.target_words)
    image = encode_image(job.path, cfg.max_side, cfg.jpeg_quality)
    body = build_chat_request(cfg.model, text, image, cfg.detail, cfg.temperature, cfg.max_tokens)
    return body, image, text


def originals_fingerprint(jobs: list[Job]) -> Optional[str]:
    """Fingerprint of the original captions given as context (None without them)."""
    if not any(j.original for j in jobs):
        return None
    return captions_fingerprint({j.image_id: [j.original] for j in jobs if j.original})


def request_signature(cfg: RegenerateConfig, prompt: PromptTemplate, originals: Optional[str]) -> dict:
    """Settings that change the answers; a resumed run must keep them.

    Args:
        cfg: the run settings.
        prompt: the prompt template (its sha256 is part of the signature).
        originals: :func:`originals_fingerprint` when originals are sent, else None.
    """
    return {
        "model": cfg.model,
        "prompt_sha256": prompt.sha256,
        "target_words": cfg.target_words if prompt.uses_target_words() else None,
        "with_original": cfg.with_original,
        "originals_sha256": originals if cfg.with_original else None,
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
        "detail": cfg.detail,
        "max_side": cfg.max_side,
        "jpeg_quality": cfg.jpeg_quality,
        "min_words": cfg.min_words,
    }
