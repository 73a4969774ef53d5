"""What is asked about one image and what comes back. The chat-completions body is built
once per image and sent as it is online or written to Batch API files, so both modes ask
the same question; refusals, empty, too-short and malformed answers are rejected here."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from taco_plus.captions.convert import list_images
from taco_plus.captions.prompts import PromptTemplate
from taco_plus.captions.regenerate.config import RegenerateConfig, RegenerateError
from taco_plus.captions.sources import CaptionSetSource, captions_fingerprint

EXIF_ORIENTATION = 0x0112
# Typical opening of a model declining a request ("I'm sorry, I can't help with that.").
_REFUSAL_START = re.compile(
    r"^\W*(i['’]m sorry|i am sorry|sorry\b|i can(?:no|['’])t\b|i can not\b|i['’]m unable|"
    r"i am unable|i['’]m not able|i won['’]t\b|unfortunately,? i\b|as an ai\b)",
    re.IGNORECASE,
)
# Only unambiguous refusals: a caption may legitimately say "I cannot identify the brand".
_REFUSAL_ANYWHERE = re.compile(
    r"\bi (?:can(?:no|['’])t|am unable to|['’]m unable to) (?:help|assist|comply) with\b", re.IGNORECASE
)


class MalformedResponse(ValueError):
    """A response that is not a chat completion (bad JSON, missing fields)."""


@dataclass(frozen=True)
class Job:
    """One image to caption: its id (path relative to the image root), file and original caption."""

    image_id: str
    path: Path
    original: Optional[str] = None


@dataclass
class Answer:
    """What matters in a chat completion; ``usage`` counts are 0 when the server omits them."""

    text: Optional[str]
    refusal: Optional[str] = None
    finish_reason: Optional[str] = None
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    response_id: Optional[str] = None


def collect_jobs(cfg: RegenerateConfig) -> list[Job]:
    """Images named by ``cfg.captions`` (or every image under ``cfg.image_root``), id-sorted."""
    if not cfg.image_root.is_dir():
        raise RegenerateError(f"image folder not found: {cfg.image_root}")
    if cfg.captions is not None:
        source = CaptionSetSource(cfg.captions)
        jobs = [Job(i, cfg.image_root / i, source.captions(i)[0]) for i in sorted(source.ids())]
        missing = [j.image_id for j in jobs if not j.path.is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise RegenerateError(f"{len(missing)} images named in {cfg.captions} are not in {cfg.image_root}: {shown}")
    elif cfg.with_original:
        raise RegenerateError("--with-original needs --captions (the set holding the original captions)")
    else:
        jobs = [Job(i, cfg.image_root / i) for i in list_images(cfg.image_root)]
    if not jobs:
        raise RegenerateError(f"no images to caption in {cfg.image_root}")
    return jobs


def image_data_url(path: Path, max_side: int, jpeg_quality: int) -> tuple[str, tuple[int, int]]:
    """The image as a ``data:image/jpeg;base64,...`` URL and the size the server sees. A JPEG
    that fits (RGB or grey, upright, longest side <= ``max_side``) is sent as its own bytes
    (re-encoding costs ~10 ms and some quality); anything else is turned upright, downscaled
    and encoded."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        if (img.format == "JPEG" and img.mode in ("RGB", "L") and max(img.size) <= max_side
                and img.getexif().get(EXIF_ORIENTATION, 1) == 1):
            data, size = path.read_bytes(), img.size
        else:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=jpeg_quality)
            data, size = buf.getvalue(), img.size
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"), size


def prompt_text(job: Job, cfg: RegenerateConfig, prompt: PromptTemplate) -> str:
    return prompt.render(job.original if cfg.with_original else None, cfg.target_words)


def build_request(job: Job, cfg: RegenerateConfig, prompt: PromptTemplate) -> tuple[dict, tuple[int, int]]:
    """The chat-completions body for ``job`` (one user message: prompt and image) and the
    image size sent. ``max_tokens`` is what gpt-4o, vLLM and Ollama all accept."""
    url, size = image_data_url(job.path, cfg.max_side, cfg.jpeg_quality)
    content = [{"type": "text", "text": prompt_text(job, cfg, prompt)},
               {"type": "image_url", "image_url": {"url": url, "detail": cfg.detail}}]
    return {"model": cfg.model, "messages": [{"role": "user", "content": content}],
            "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}, size


def parse_completion(data: Any) -> Answer:
    """An :class:`Answer` from a decoded chat-completion object, or :class:`MalformedResponse`."""
    try:
        choice = data["choices"][0]
        text, refusal = choice["message"].get("content"), choice["message"].get("refusal")
        if text is not None and not isinstance(text, str):
            raise TypeError("content is not a string")
        usage = data.get("usage") or {}
        counts = {k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")}
        return Answer(text, refusal, choice.get("finish_reason"), counts, data.get("id"))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
        raise MalformedResponse(f"not a chat completion ({type(err).__name__}: {err})") from None


def answer_problem(answer: Answer, min_words: int) -> Optional[str]:
    """Why ``answer`` is not a usable caption, or None if it is."""
    if answer.refusal:
        return f"refusal: {answer.refusal.strip()[:120]}"
    text = (answer.text or "").strip()
    if answer.finish_reason == "content_filter":
        return "answer blocked by the server's content filter"
    if not text:
        return "empty answer"
    if _REFUSAL_START.match(text) or _REFUSAL_ANYWHERE.search(text[:300]):
        return f"refusal: {text[:120]}"
    n_words = len(text.split())
    return f"answer too short ({n_words} words, minimum {min_words})" if n_words < min_words else None


def request_signature(cfg: RegenerateConfig, prompt: PromptTemplate, jobs: list[Job]) -> dict:
    """Settings that change the answers (``jobs``: for the fingerprint of the original captions
    given as context); a resumed run must keep them."""
    originals = {j.image_id: [j.original] for j in jobs if j.original} if cfg.with_original else {}
    return {
        "model": cfg.model,
        "prompt_sha256": prompt.sha256,
        "target_words": cfg.target_words if prompt.uses_target_words() else None,
        "with_original": cfg.with_original,
        "originals_sha256": captions_fingerprint(originals) if originals else None,
        **{k: getattr(cfg, k) for k in ("temperature", "max_tokens", "detail", "max_side", "jpeg_quality",
                                        "min_words")},
    }
